//! The one-line summary of a state change stays one line whatever the number of packages;
//! `state show` keeps the full list.

use crate::common::{TestRoot, file, meta};

#[test]
fn installing_81_packages_summarizes_in_one_short_line() {
    let root = TestRoot::new();
    let stones: Vec<_> = (0..81)
        .map(|i| {
            let name = format!("pkg{i:02}");
            root.stone(
                &meta(&name, "1"),
                vec![file(&format!("bin/{name}"), name.clone())],
            )
        })
        .collect();
    let mut args = vec!["install".to_owned()];
    args.extend(stones.iter().map(|s| s.display().to_string()));
    let out = root.ok(&args);
    let summary = "install 81 packages (pkg00, pkg01, pkg02, … and 78 more)";
    assert!(
        out.starts_with(&format!("state 1 active ({summary}): ")),
        "{out}"
    );
    assert_eq!(out.lines().count(), 1);
    // The summary is bounded, whatever the count; the line adds the commit's figures.
    assert!(summary.chars().count() <= 64);
    assert!(out.trim_end().chars().count() < 132, "{out}");
    assert_eq!(root.states()[0].summary, summary);
    let listing = root.ok(&["state", "list"]);
    assert!(
        listing.lines().all(|l| l.chars().count() < 140),
        "{listing}"
    );
    // The full list stays in `state show`.
    let show = root.ok(&["state", "show", "1"]);
    assert!(show.contains("packages (81):"), "{show}");
    for i in 0..81 {
        assert!(
            show.contains(&format!("    pkg{i:02}-1-1\n")),
            "pkg{i:02}: {show}"
        );
    }
    // A removal of several names is short too.
    let out = root.ok(&["rm", "pkg10", "pkg11", "pkg12", "pkg13"]);
    assert!(
        out.starts_with("state 2 active (remove 4 packages (pkg10, pkg11, pkg12, … and 1 more)): "),
        "{out}"
    );
}
