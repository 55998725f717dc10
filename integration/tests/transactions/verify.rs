//! `verify` finds a damaged asset and damaged paths, and `verify --repair` mends them.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;

use crate::common::{self, TestRoot, assert_tree_matches, file, meta, statuses};
use mossfs_format::AssetHash;

#[test]
fn verify_finds_damage_and_repair_mends_it() {
    let root = TestRoot::new();
    let corrupt = b"this asset will be damaged in the store".to_vec();
    let stone = root.stone(
        &meta("victim", "1"),
        vec![
            file("share/victim/corrupt", corrupt.clone()),
            file(
                "share/victim/replaced",
                b"this file will be replaced".to_vec(),
            ),
            file(
                "share/victim/chmodded",
                b"this file will be chmodded".to_vec(),
            ),
            file("share/victim/intact", b"this one is left alone".to_vec()),
        ],
    );
    root.install(&[&stone]);
    let hash = AssetHash::of(&corrupt);
    let asset = root.asset_file(hash);

    // Damage in place: the file in usr is a hardlink to the asset and is damaged too.
    let mut writer = OpenOptions::new().write(true).open(&asset).unwrap();
    writer.write_all(b"T").unwrap();
    drop(writer);
    assert_eq!(
        fs::read(root.usr().join("share/victim/corrupt")).unwrap()[0],
        b'T'
    );
    let replaced = root.usr().join("share/victim/replaced");
    fs::remove_file(&replaced).unwrap();
    fs::write(&replaced, b"something else entirely...").unwrap();
    fs::set_permissions(
        root.usr().join("share/victim/chmodded"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();

    let output = root.run(&["verify"]);
    let error = common::error_line(&output);
    assert_eq!(
        error,
        "error: verify found 1 damaged asset and 2 damaged paths; run 'mossfs verify --repair'"
    );
    // Sentences, not Rust values (issue 7, defect 14).
    let report = common::text(&output.stdout);
    assert!(
        report.contains(&format!(
            "asset {hash} is damaged: {} holds other bytes (they hash to ",
            asset.display()
        )),
        "{report}"
    );
    assert!(
        report.contains(
            "usr/share/victim/replaced holds other bytes than its package ships (they hash to "
        ),
        "{report}"
    );
    assert!(
        report.contains("usr/share/victim/chmodded has mode 600, but its package ships mode 644"),
        "{report}"
    );
    assert!(
        !report.contains('{') && !report.contains("AssetHash"),
        "{report}"
    );
    assert!(!report.contains("intact"), "{report}");

    let out = root.ok(&["verify", "--repair"]);
    assert!(
        out.contains(&format!("repaired asset {hash} from package ")),
        "{out}"
    );
    assert!(out.contains("state 1 active (repair): "), "{out}");
    assert_tree_matches(&root.usr(), &[&stone]);
    assert_eq!(fs::read(&asset).unwrap(), corrupt);
    let out = root.ok(&["verify"]);
    assert!(out.ends_with(" of state 1: no damage\n"), "{out}");
    assert_eq!(root.state_id_file().as_deref(), Some("1"));
    assert_eq!(statuses(&root.states()), [(1, "active")]);
}
