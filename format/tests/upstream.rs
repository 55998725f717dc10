//! Upstream's own sample stones (`shared/testdata/stones`) decode to exactly the facts
//! recorded in `shared/testdata/README.md`.

use std::collections::HashSet;
use std::path::PathBuf;

use mossfs_format::{
    AssetHash, Compression, EntryKind, FileType, Meta, PayloadKind, Reader, Relation, RelationKind,
    read,
};
use sha2::{Digest, Sha256};

fn stone(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/stones")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// (kind, stored, plain, records) for each payload, in file order.
fn payload_table(bytes: &[u8]) -> Vec<(PayloadKind, u64, u64, u32)> {
    let mut reader = Reader::new(bytes).unwrap();
    let stone = reader.read_metadata().unwrap();
    stone
        .payloads
        .iter()
        .map(|p| {
            (
                p.header.kind,
                p.header.stored_size,
                p.header.plain_size,
                p.header.records,
            )
        })
        .collect()
}

#[test]
fn bash_completion_decodes_exactly() {
    let bytes = stone("bash-completion-2.11-1-1-x86_64.stone");
    assert_eq!(
        sha256(&bytes),
        "13e2bce256b183ee0c721bd6cc438be8dcebf95850c8d851801e4ce000195d94"
    );
    assert_eq!(
        payload_table(&bytes),
        vec![
            (PayloadKind::Meta, 307, 522, 11),
            (PayloadKind::Layout, 13_792, 64_731, 745),
            (PayloadKind::Index, 9_070, 15_168, 474),
            (PayloadKind::Content, 145_535, 872_279, 474),
        ]
    );

    let stone = read::verify(bytes.as_slice()).unwrap();
    assert_eq!(stone.header.unwrap().file_type, FileType::Binary);
    assert!(
        stone
            .payloads
            .iter()
            .all(|p| p.header.compression == Compression::Zstd)
    );

    assert_eq!(stone.meta.len(), 11);
    let meta = Meta::from_records(&stone.meta).unwrap();
    assert_eq!(meta.name, "bash-completion");
    assert_eq!(meta.version, "2.11");
    assert_eq!(meta.release, 1);
    assert_eq!(meta.build_release, 1);
    assert_eq!(meta.architecture, "x86_64");
    assert_eq!(meta.licenses, vec!["GPL-2.0-or-later".to_owned()]);
    assert_eq!(meta.homepage, "https://github.com/scop/bash-completion");
    assert_eq!(
        meta.provides,
        vec![Relation {
            kind: RelationKind::CMake,
            target: "bash-completion".into()
        }]
    );
    assert_eq!(meta.provides[0].to_string(), "cmake(bash-completion)");
    assert!(meta.depends.is_empty());

    assert_eq!(stone.layout.len(), 745);
    let regular = stone
        .layout
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::Regular(_)))
        .count();
    let symlinks = stone
        .layout
        .iter()
        .filter(|e| matches!(e.kind, EntryKind::Symlink(_)))
        .count();
    let dirs = stone
        .layout
        .iter()
        .filter(|e| e.kind == EntryKind::Directory)
        .count();
    assert_eq!((regular, symlinks, dirs), (474, 271, 0));

    let sevenza = stone
        .layout
        .iter()
        .find(|e| e.path.as_bytes() == b"share/bash-completion/completions/7za")
        .expect("7za is in the layout");
    assert_eq!(sevenza.kind, EntryKind::Symlink(b"7z".to_vec()));
    assert_eq!(sevenza.mode, 0o120777);

    // 474 unique blobs, contiguous from 0 to 872,279.
    assert_eq!(stone.index.len(), 474);
    let unique: HashSet<_> = stone.index.iter().map(|e| e.digest).collect();
    assert_eq!(unique.len(), 474);
    let mut ranges: Vec<_> = stone.index.iter().map(|e| (e.start, e.end)).collect();
    ranges.sort();
    assert_eq!(ranges.first().unwrap().0, 0);
    assert_eq!(ranges.last().unwrap().1, 872_279);
    assert!(ranges.windows(2).all(|w| w[0].1 == w[1].0));
    // Every regular file's hash is in the index.
    stone.check_structure().unwrap();
}

/// The README gives pineapple's layout "as italian-pizza", but its path is four bytes
/// shorter, so its layout payload is too: the plain size is always 32 fixed bytes, the
/// 16-byte hash and the path. `layout_stored` is the one figure that is not derived.
fn assert_tiny_stone(
    file: &str,
    sha: &str,
    meta_sizes: (u64, u64, u32),
    layout_stored: u64,
    path: &str,
) -> Meta {
    let bytes = stone(file);
    assert_eq!(sha256(&bytes), sha);
    assert_eq!(
        payload_table(&bytes),
        vec![
            (PayloadKind::Meta, meta_sizes.0, meta_sizes.1, meta_sizes.2),
            (
                PayloadKind::Layout,
                layout_stored,
                32 + 16 + path.len() as u64,
                1
            ),
            (PayloadKind::Index, 32, 32, 1),
            (PayloadKind::Content, 9, 0, 0),
        ]
    );
    let stone = read::verify(bytes.as_slice()).unwrap();
    assert_eq!(stone.layout.len(), 1);
    assert_eq!(stone.layout[0].kind, EntryKind::Regular(AssetHash::EMPTY));
    assert_eq!(stone.layout[0].path.as_bytes(), path.as_bytes());
    assert_eq!(stone.index.len(), 1);
    assert_eq!((stone.index[0].start, stone.index[0].end), (0, 0));
    assert_eq!(
        stone.index[0].digest.to_string(),
        "99aa06d3014798d86001c324468d497f"
    );
    Meta::from_records(&stone.meta).unwrap()
}

#[test]
fn italian_pizza_decodes_exactly() {
    let meta = assert_tiny_stone(
        "italian-pizza-1-1-1-x86_64.stone",
        "b58e019a60692199a97c3c78e21ae96f9d3a876008abf2ffabe9cdca97113a7f",
        (171, 256, 11),
        71,
        "share/defaults/italian-pizza",
    );
    assert_eq!(meta.name, "italian-pizza");
    assert_eq!(meta.conflicts, vec![Relation::name("pineapple")]);
}

#[test]
fn pineapple_decodes_exactly() {
    let meta = assert_tiny_stone(
        "pineapple-1-1-1-x86_64.stone",
        "1c8681fda365a0dbb05e598db311e4c951fed2c65e070273940d85541c02ab07",
        (158, 215, 10),
        67,
        "share/defaults/pienapple",
    );
    assert_eq!(meta.name, "pineapple");
    assert!(meta.conflicts.is_empty());
}

#[test]
fn streamed_assets_hash_to_their_names() {
    let bytes = stone("bash-completion-2.11-1-1-x86_64.stone");
    let mut reader = Reader::new(bytes.as_slice()).unwrap();
    let stone = reader.read_metadata().unwrap();
    let mut content = reader.content(&stone).unwrap().unwrap();
    let mut total = 0u64;
    let mut count = 0;
    while let Some(mut asset) = content.next_asset().unwrap() {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut asset, &mut buf).unwrap();
        assert_eq!(AssetHash::of(&buf), asset.entry().digest);
        total += buf.len() as u64;
        count += 1;
        asset.finish().unwrap();
    }
    content.finish().unwrap();
    reader.finish().unwrap();
    assert_eq!((count, total), (474, 872_279));
}
