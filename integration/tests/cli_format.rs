//! End-to-end tests of `mossfs inspect | pack | extract` (issue 2, sections 4 and 5),
//! running the real binary on upstream's sample stones and on fresh temporary trees.
//!
//! Every test gets its own temporary directory. Outcomes are checked, not just exit codes:
//! the JSON facts of the sample stones, the extracted tree entry by entry, the exact error
//! line, and that nothing was written outside the extraction directory.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{Cursor, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use mossfs_format::{
    AssetHash, EntryKind, FileType, LayoutEntry, Meta, RelPath, Writer, WriterOptions, layout_index,
};
use mossfs_integration::mossfs;
use serde_json::Value;

const STONES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/testdata/stones");
const BASH: &str = "bash-completion-2.11-1-1-x86_64.stone";
const PIZZA: &str = "italian-pizza-1-1-1-x86_64.stone";
const PINEAPPLE: &str = "pineapple-1-1-1-x86_64.stone";

fn sample(name: &str) -> PathBuf {
    Path::new(STONES).join(name)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("mossfs prints UTF-8")
}

/// Runs `command`, which must succeed; its stdout.
fn ok(command: &mut Command) -> String {
    let output = command.output().expect("mossfs runs");
    assert!(
        output.status.success(),
        "mossfs failed: {}",
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Runs `command`, which must fail with exactly one `error:` line on stderr; that line.
fn one_error_line(command: &mut Command) -> String {
    let output = command.output().expect("mossfs runs");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = text(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains(" { "),
        "{stderr}"
    );
    lines[0].to_owned()
}

fn inspect_json(paths: &[&Path]) -> Vec<Value> {
    let out = ok(mossfs().args(["inspect", "--json"]).args(paths));
    match serde_json::from_str(&out).expect("inspect --json prints JSON") {
        Value::Array(stones) => stones,
        other => panic!("expected an array, got {other}"),
    }
}

/// `[(kind, stored, plain, records)]` of a stone object.
fn payloads(stone: &Value) -> Vec<(String, u64, u64, u64)> {
    stone["payloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["kind"].as_str().unwrap().to_owned(),
                p["stored_size"].as_u64().unwrap(),
                p["plain_size"].as_u64().unwrap(),
                p["records"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn meta(stone: &Value, tag: &str) -> Vec<Value> {
    stone["meta"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["tag"] == tag)
        .map(|r| r["value"].clone())
        .collect()
}

#[test]
fn inspect_json_gives_the_facts_of_the_sample_stones() {
    let stones = inspect_json(&[&sample(BASH), &sample(PIZZA), &sample(PINEAPPLE)]);
    assert_eq!(stones.len(), 3);
    let [bash, pizza, pineapple] = &stones[..] else {
        unreachable!()
    };
    let p = |kind: &str, stored, plain, records| (kind.to_owned(), stored, plain, records);
    assert_eq!(
        payloads(bash),
        [
            p("meta", 307, 522, 11),
            p("layout", 13_792, 64_731, 745),
            p("index", 9_070, 15_168, 474),
            p("content", 145_535, 872_279, 474),
        ]
    );
    let empty_file = [
        p("layout", 71, 76, 1),
        p("index", 32, 32, 1),
        p("content", 9, 0, 0),
    ];
    assert_eq!(payloads(pizza)[0], p("meta", 171, 256, 11));
    assert_eq!(payloads(pizza)[1..], empty_file);
    assert_eq!(payloads(pineapple)[0], p("meta", 158, 215, 10));
    assert_eq!(payloads(pineapple)[2..], empty_file[1..]);

    let layout = bash["layout"].as_array().unwrap();
    assert_eq!(layout.len(), 745);
    let count = |kind: &str| layout.iter().filter(|e| e["type"] == kind).count();
    assert_eq!(
        (count("regular"), count("symlink"), count("directory")),
        (474, 271, 0)
    );
    let seven_za = layout
        .iter()
        .find(|e| e["path"] == "share/bash-completion/completions/7za")
        .expect("the 7za symlink is listed");
    assert_eq!(seven_za["type"], "symlink");
    assert_eq!(seven_za["target"], "7z");
    assert_eq!(seven_za["mode"], 0o120777);
    assert_eq!(bash["index"].as_array().unwrap().len(), 474);
    assert_eq!(bash["header"]["payloads"], 4);
    assert_eq!(bash["header"]["file_type"], "binary");

    assert_eq!(meta(bash, "name"), ["bash-completion"]);
    assert_eq!(meta(bash, "version"), ["2.11"]);
    assert_eq!(meta(bash, "release"), [1]);
    assert_eq!(meta(bash, "build-release"), [1]);
    assert_eq!(meta(bash, "license"), ["GPL-2.0-or-later"]);
    assert_eq!(meta(bash, "provides"), ["cmake(bash-completion)"]);
    assert!(meta(bash, "depends").is_empty());
    assert_eq!(meta(pizza, "conflicts"), ["name(pineapple)"]);
    assert_eq!(
        pineapple["layout"][0]["path"], "share/defaults/pienapple",
        "upstream's spelling"
    );
    assert_eq!(
        pizza["layout"][0]["hash"],
        "99aa06d3014798d86001c324468d497f"
    );
}

#[test]
fn inspect_text_shows_payloads_meta_and_layout_lines() {
    let out = ok(mossfs().arg("inspect").arg(sample(BASH)));
    assert!(
        out.contains("header: stone v1, binary archive, 4 payloads"),
        "{out}"
    );
    assert!(
        out.contains("content     zstd              145535       872279      474"),
        "{out}"
    );
    assert!(
        out.contains("  provides: cmake(bash-completion)\n"),
        "{out}"
    );
    assert!(out.contains("layout: 745 entries\n"), "{out}");
    assert!(
        out.contains("  symlink   120777 0:0 share/bash-completion/completions/7za -> 7z\n"),
        "{out}"
    );
    assert!(!out.contains("check:"), "no check without --check");
}

#[test]
fn inspect_check_passes_on_every_sample_stone() {
    let out = ok(mossfs()
        .args(["inspect", "--check"])
        .arg(sample(BASH))
        .arg(sample(PIZZA))
        .arg(sample(PINEAPPLE)));
    assert_eq!(out.matches("check: ok").count(), 3, "{out}");
    assert!(out.contains("474 asset digests verified"), "{out}");
}

/// A copy of bash-completion with one byte flipped at `offset`.
fn corrupt_copy(dir: &Path, offset: u64) -> PathBuf {
    let mut bytes = fs::read(sample(BASH)).unwrap();
    bytes[offset as usize] ^= 0x55;
    let path = dir.join("damaged.stone");
    fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn inspect_check_names_the_file_and_payload_of_a_corrupt_copy() {
    let dir = tempfile::tempdir().unwrap();
    let stone = &inspect_json(&[&sample(BASH)])[0];
    let offset_of = |kind: &str| {
        stone["payloads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["kind"] == kind)
            .unwrap()["offset"]
            .as_u64()
            .unwrap()
    };

    // Deep inside the content: only --check reads that far.
    let damaged = corrupt_copy(dir.path(), offset_of("content") + 32 + 60_000);
    ok(mossfs().arg("inspect").arg(&damaged));
    let line = one_error_line(mossfs().args(["inspect", "--check"]).arg(&damaged));
    assert!(line.contains(&damaged.display().to_string()), "{line}");
    assert!(line.contains("content payload"), "{line}");
    assert!(line.ends_with("fetch or build it again"), "{line}");

    // In the layout, the plain read already notices, and says which payload.
    let damaged = corrupt_copy(dir.path(), offset_of("layout") + 32 + 100);
    let line = one_error_line(mossfs().args(["inspect", "--check"]).arg(&damaged));
    let expected = format!(
        "error: {} failed the check: layout payload at offset {}: checksum mismatch",
        damaged.display(),
        offset_of("layout")
    );
    assert!(line.starts_with(&expected), "{line}");
}

/// What a tree looks like, entry by entry: type, mode, owner, and bytes or link text.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (String, u32, u32, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for item in fs::read_dir(&dir).unwrap() {
            let path = item.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let (kind, data) = if meta.is_symlink() {
                let target = fs::read_link(&path).unwrap();
                ("symlink", target.into_os_string().into_encoded_bytes())
            } else if meta.is_dir() {
                stack.push(path.clone());
                ("dir", Vec::new())
            } else {
                ("file", fs::read(&path).unwrap())
            };
            let rel = path.strip_prefix(root).unwrap().to_owned();
            out.insert(
                rel,
                (kind.to_owned(), meta.mode(), meta.uid(), meta.gid(), data),
            );
        }
    }
    out
}

/// A tree with everything `pack` must handle.
fn sample_tree(root: &Path) {
    let write = |path: &str, bytes: &[u8], mode: u32| {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    };
    write("bin/tool", b"#!/bin/sh\necho tool\n", 0o755);
    write("share/tool/a.txt", b"duplicate bytes\n", 0o644);
    write("share/tool/copy/a.txt", b"duplicate bytes\n", 0o600);
    write("share/tool/empty", b"", 0o644);
    write("share/tool/also-empty", b"", 0o444);
    write("lib/tool/big.bin", &vec![7u8; 300_000], 0o644);
    symlink("tool", root.join("bin/tool-alias")).unwrap();
    symlink("../../share/tool/a.txt", root.join("lib/tool/link")).unwrap();
    fs::create_dir_all(root.join("share/tool/plugins")).unwrap();
    fs::create_dir_all(root.join("lib/tool/private")).unwrap();
    write("lib/tool/private/key", b"k", 0o600);
    fs::set_permissions(
        root.join("lib/tool/private"),
        fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    // Directories the walk creates must be 0755 whatever the umask, so that only the
    // odd one above needs a layout record.
    for dir in [
        "bin",
        "share",
        "share/tool",
        "share/tool/copy",
        "lib",
        "lib/tool",
    ] {
        fs::set_permissions(root.join(dir), fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::set_permissions(
        root.join("share/tool/plugins"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
}

#[test]
fn pack_then_extract_reproduces_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    sample_tree(&tree);
    let meta_file = dir.path().join("tool.meta");
    fs::write(
        &meta_file,
        "# the tool package\nname = tool\nversion = 0.9\nlicense = MIT\nlicense = Zlib\n\
         depends = soname(libc.so.6(x86_64))\nprovides = binary(tool)\n",
    )
    .unwrap();
    let stone = dir.path().join("out/tool.stone");
    fs::create_dir(dir.path().join("out")).unwrap();
    let packed = ok(mossfs()
        .arg("pack")
        .arg(&tree)
        .arg("-o")
        .arg(&stone)
        .arg("--meta")
        .arg(&meta_file)
        .args(["--version", "1.0", "--level", "3"]));
    assert!(packed.starts_with("packed tool-1.0-1 into "), "{packed}");
    assert!(
        packed.contains(": 11 entries, 5 unique files, "),
        "{packed}"
    );
    let leftovers: Vec<_> = fs::read_dir(dir.path().join("out")).unwrap().collect();
    assert_eq!(
        leftovers.len(),
        1,
        "no temporary file is left beside the stone"
    );

    let checked = ok(mossfs().args(["inspect", "--check"]).arg(&stone));
    assert!(checked.contains("check: ok"), "{checked}");
    let json = &inspect_json(&[&stone])[0];
    assert_eq!(
        meta(json, "version"),
        ["1.0"],
        "the flag overrides the file"
    );
    assert_eq!(meta(json, "license"), ["MIT", "Zlib"]);
    assert_eq!(meta(json, "depends"), ["soname(libc.so.6(x86_64))"]);
    assert_eq!(meta(json, "provides"), ["binary(tool)"]);
    let paths: Vec<&str> = json["layout"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "bin/tool",
            "bin/tool-alias",
            "lib/tool/big.bin",
            "lib/tool/link",
            "lib/tool/private",
            "lib/tool/private/key",
            "share/tool/a.txt",
            "share/tool/also-empty",
            "share/tool/copy/a.txt",
            "share/tool/empty",
            "share/tool/plugins",
        ],
        "sorted; directories only where empty or not 0755"
    );
    let index = json["index"].as_array().unwrap();
    assert_eq!(index[0]["end"], 300_000, "largest first");
    assert_eq!(
        index.last().unwrap()["digest"],
        AssetHash::EMPTY.to_string(),
        "the empty file last"
    );

    let extracted = dir.path().join("extracted");
    let out = ok(mossfs()
        .arg("extract")
        .arg(&stone)
        .arg("-o")
        .arg(&extracted));
    assert!(out.starts_with("extracted tool into "), "{out}");
    let (want, got) = (snapshot(&tree), snapshot(&extracted));
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (path, entry) in &want {
        assert_eq!(&got[path], entry, "{}", path.display());
    }
}

/// A stone written directly with the format's writer, bypassing `pack`'s checks.
fn handmade_stone(path: &Path, name: &str, layout: &[LayoutEntry], assets: &[&[u8]]) {
    let meta = Meta {
        name: name.into(),
        version: "1".into(),
        ..Meta::default()
    };
    let bytes: HashMap<AssetHash, Vec<u8>> = assets
        .iter()
        .map(|a| (AssetHash::of(a), a.to_vec()))
        .collect();
    let index = layout_index(assets.iter().map(|a| (AssetHash::of(a), a.len() as u64)));
    let options = WriterOptions {
        level: 3,
        threads: 0,
    };
    let mut writer = Writer::new(Cursor::new(Vec::new()), FileType::Binary, options).unwrap();
    writer.add_meta(&meta.to_records()).unwrap();
    writer.add_layout(layout).unwrap();
    writer.add_index(&index).unwrap();
    writer.add_content(&index, &bytes).unwrap();
    fs::write(path, writer.finish().unwrap().into_inner()).unwrap();
}

fn entry(path: &str, kind: EntryKind, mode: u32) -> LayoutEntry {
    LayoutEntry {
        uid: 0,
        gid: 0,
        mode: kind.mode_bits() | mode,
        tag: 0,
        kind,
        path: RelPath::new(path).unwrap(),
    }
}

#[test]
fn extract_refuses_a_file_beneath_a_shipped_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let payload: &[u8] = b"root::0:0:root:/root:/bin/sh\n";
    let link = EntryKind::Symlink(outside.as_os_str().as_encoded_bytes().to_vec());

    // One stone: the plan sees the symlink above the file before anything is written.
    let evil = dir.path().join("evil.stone");
    handmade_stone(
        &evil,
        "evil",
        &[
            entry("a", link.clone(), 0o777),
            entry(
                "a/passwd",
                EntryKind::Regular(AssetHash::of(payload)),
                0o644,
            ),
        ],
        &[payload],
    );
    let target = dir.path().join("target");
    let line = one_error_line(mossfs().arg("extract").arg(&evil).arg("-o").arg(&target));
    assert_eq!(
        line,
        format!(
            "error: cannot extract {}: package evil: `a/passwd` lies beneath `a`, which the \
             layout makes a symlink; refusing to write through it; the stone is broken or \
             hostile; nothing was written outside the directory",
            evil.display()
        )
    );
    assert_eq!(fs::read_dir(&target).unwrap().count(), 0);
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);

    // Two stones: the second finds the first one's symlink on disk and will not follow it.
    let first = dir.path().join("first.stone");
    let second = dir.path().join("second.stone");
    handmade_stone(&first, "first", &[entry("a", link, 0o777)], &[]);
    handmade_stone(
        &second,
        "second",
        &[entry(
            "a/passwd",
            EntryKind::Regular(AssetHash::of(payload)),
            0o644,
        )],
        &[payload],
    );
    let line = one_error_line(
        mossfs()
            .arg("extract")
            .arg(&first)
            .arg(&second)
            .arg("-o")
            .arg(&target),
    );
    assert!(
        line.starts_with(&format!(
            "error: cannot extract {}: {} is a symlink; refusing to follow it",
            second.display(),
            target.join("a").display()
        )),
        "{line}"
    );
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    assert!(fs::symlink_metadata(target.join("a")).unwrap().is_symlink());
}

#[test]
fn user_errors_are_one_line_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.stone");
    let line = one_error_line(mossfs().arg("inspect").arg(&missing));
    assert!(
        line.starts_with(&format!("error: cannot open {}: ", missing.display())),
        "{line}"
    );
    assert!(line.ends_with("; check the path"), "{line}");

    let not_a_stone = dir.path().join("notes.txt");
    fs::write(&not_a_stone, "hello, this is text").unwrap();
    let line = one_error_line(mossfs().arg("inspect").arg(&not_a_stone));
    assert!(line.contains("not a stone archive"), "{line}");
    assert!(line.ends_with("is it a .stone file?"), "{line}");

    // An empty file is named as such, by inspect and by install alike; a directory is
    // not called damaged.
    let empty = dir.path().join("empty.stone");
    fs::write(&empty, "").unwrap();
    let root = dir.path().join("root");
    let inspect = vec!["inspect".as_ref(), empty.as_os_str()];
    let install = vec![
        "install".as_ref(),
        empty.as_os_str(),
        "--root".as_ref(),
        root.as_os_str(),
    ];
    for args in [inspect, install] {
        let line = one_error_line(mossfs().args(args));
        assert!(
            line.contains("the file is empty, not a stone archive"),
            "{line}"
        );
        assert!(line.ends_with("; is it a .stone file?"), "{line}");
    }
    let line = one_error_line(mossfs().arg("inspect").arg(dir.path()));
    assert!(
        line.ends_with("; give the path of a .stone file, not of a directory"),
        "{line}"
    );
    let line = one_error_line(
        mossfs()
            .arg("install")
            .arg(sample(PINEAPPLE))
            .arg("--root")
            .arg(&empty),
    );
    assert!(line.ends_with("empty.stone: not a directory"), "{line}");

    let tree = dir.path().join("tree");
    fs::create_dir(&tree).unwrap();
    let out = dir.path().join("x.stone");
    let line = one_error_line(mossfs().arg("pack").arg(&tree).arg("-o").arg(&out));
    assert_eq!(
        line,
        "error: the package has no name; pass --name NAME, or put `name = NAME` in the --meta file"
    );
    assert!(!out.exists());

    // A version must stay on its line: a newline in it is refused, not packed.
    let line = one_error_line(mossfs().arg("pack").arg(&tree).arg("-o").arg(&out).args([
        "--name",
        "x",
        "--version",
        "1\n2",
    ]));
    assert_eq!(
        line,
        "error: the version \"1\\n2\" is refused: a version is 1 to 255 bytes with no `/`, whitespace or control characters"
    );
    assert!(!out.exists());

    let meta_file = dir.path().join("bad.meta");
    fs::write(&meta_file, "name = x\nversoin = 1\n").unwrap();
    let line = one_error_line(
        mossfs()
            .arg("pack")
            .arg(&tree)
            .arg("-o")
            .arg(&out)
            .arg("--meta")
            .arg(&meta_file),
    );
    assert!(
        line.starts_with(&format!(
            "error: {}:2: unknown key `versoin`",
            meta_file.display()
        )),
        "{line}"
    );

    // Extracting twice into one directory never overwrites.
    let target = dir.path().join("target");
    let extract = || {
        let mut command = mossfs();
        command
            .arg("extract")
            .arg(sample(PIZZA))
            .arg("-o")
            .arg(&target);
        command
    };
    ok(&mut extract());
    let line = one_error_line(&mut extract());
    assert!(line.contains("already exists"), "{line}");
    assert!(line.ends_with("nothing is ever overwritten"), "{line}");
}

#[test]
fn a_closed_pipe_ends_the_run_quietly() {
    let mut child = mossfs()
        .args(["inspect", "--json"])
        .arg(sample(BASH))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The pipe is closed here, long before the ~200 KB of JSON are written.
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(text(&output.stderr), "");
}
