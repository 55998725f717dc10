//! `mossfs owner` answers for paths reached through symlinked directories, as a person
//! types them: `/usr/lib64/libx.so` when a package ships `lib64 -> lib`.

mod common;

use common::{TestRoot, file, link, meta};

#[test]
fn owner_follows_symlinked_directories_but_not_a_final_symlink() {
    let root = TestRoot::new();
    let base = root.stone(
        &meta("base", "1"),
        vec![link("lib64", "lib"), file("lib/ld.so", "ld")],
    );
    let libx = root.stone(
        &meta("libx", "1"),
        vec![
            file("lib64/libx.so", "x"),
            link("share/x/lib", "../../lib64"),
        ],
    );
    root.install(&[&base, &libx]);

    let out = root.ok(&["owner", "/usr/lib64/libx.so"]);
    assert_eq!(out.trim(), "/usr/lib/libx.so is owned by libx-1-1");
    // A chain of two links, one relative and climbing.
    let out = root.ok(&["owner", "/usr/share/x/lib/ld.so"]);
    assert_eq!(out.trim(), "/usr/lib/ld.so is owned by base-1-1");
    // The link itself, not what it points to.
    let out = root.ok(&["owner", "usr/lib64"]);
    assert_eq!(out.trim(), "/usr/lib64 is owned by base-1-1");
    let err = root.fail(&["owner", "/usr/lib64/nope"]);
    assert!(err.contains("no package ships /usr/lib64/nope"), "{err}");
}
