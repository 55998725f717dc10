//! Round trips: whatever the [`Writer`] writes, the [`Reader`] gives back exactly, record for
//! record and byte for byte. Random packages come from proptest; one fixed package is
//! written at several zstd levels, on the calling thread and with zstd workers.

use std::collections::{BTreeSet, HashMap};
use std::io::{Cursor, Read};

use mossfs_format::{
    AssetHash, EntryKind, FileType, IndexEntry, LayoutEntry, Meta, MetaRecord, MetaTag, MetaValue,
    PayloadKind, Reader, RelPath, Relation, RelationKind, Writer, WriterOptions, layout_index,
    read,
};
use proptest::collection::{btree_set, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

// ---------------------------------------------------------------------------------------
// A package: meta, layout and the bytes of every asset.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Package {
    meta: Meta,
    layout: Vec<LayoutEntry>,
    /// Distinct assets in first-use order, the order the content is written in.
    assets: Vec<(AssetHash, Vec<u8>)>,
}

impl Package {
    fn index(&self) -> Vec<IndexEntry> {
        layout_index(self.assets.iter().map(|(h, b)| (*h, b.len() as u64)))
    }

    fn write(&self, options: WriterOptions) -> Vec<u8> {
        let index = self.index();
        let source: HashMap<AssetHash, Vec<u8>> = self.assets.iter().cloned().collect();
        let mut writer =
            Writer::new(Cursor::new(Vec::new()), FileType::Binary, options).expect("writer");
        writer.add_meta(&self.meta.to_records()).expect("meta");
        writer.add_layout(&self.layout).expect("layout");
        writer.add_index(&index).expect("index");
        writer.add_content(&index, &source).expect("content");
        writer.finish().expect("finish").into_inner()
    }

    /// Reads `bytes` back through the streaming API and compares everything with `self`.
    fn check(&self, bytes: &[u8]) -> Result<(), TestCaseError> {
        let records = self.meta.to_records();
        let index = self.index();
        let mut reader = Reader::new(bytes).map_err(fail)?;
        let stone = reader.read_metadata().map_err(fail)?;
        let table: Vec<_> = stone
            .payloads
            .iter()
            .map(|p| (p.header.kind, p.header.records))
            .collect();
        prop_assert_eq!(
            table,
            vec![
                (PayloadKind::Meta, records.len() as u32),
                (PayloadKind::Layout, self.layout.len() as u32),
                (PayloadKind::Index, index.len() as u32),
                (PayloadKind::Content, 0),
            ]
        );
        prop_assert_eq!(&stone.meta, &records);
        prop_assert_eq!(&stone.typed_meta().map_err(fail)?, &self.meta);
        prop_assert_eq!(&stone.layout, &self.layout);
        prop_assert_eq!(&stone.index, &index);
        prop_assert_eq!(
            stone.content.map(|c| c.header.plain_size),
            Some(self.assets.iter().map(|(_, b)| b.len() as u64).sum())
        );

        let mut content = reader.content(&stone).map_err(fail)?.expect("content");
        let mut streamed = Vec::new();
        while let Some(mut asset) = content.next_asset().map_err(fail)? {
            let entry = asset.entry();
            let mut bytes = Vec::new();
            asset.read_to_end(&mut bytes).map_err(fail)?;
            asset.finish().map_err(fail)?;
            streamed.push((entry.digest, bytes));
        }
        content.finish().map_err(fail)?;
        reader.finish().map_err(fail)?;
        prop_assert_eq!(&streamed, &self.assets);

        // The one-call verifier agrees.
        prop_assert_eq!(
            read::verify(bytes).map_err(fail)?.layout,
            self.layout.clone()
        );
        Ok(())
    }
}

fn fail(err: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(err.to_string())
}

// ---------------------------------------------------------------------------------------
// Strategies.
// ---------------------------------------------------------------------------------------

/// Any text a meta string can hold: everything but NUL, which terminates strings on disk.
fn text() -> impl Strategy<Value = String> {
    "[^\\x00]{0,24}"
}

fn relation() -> impl Strategy<Value = Relation> {
    // Every byte: the nine named kinds and unknown ones alike.
    (any::<u8>(), "[^\\x00]{1,24}").prop_map(|(kind, target)| Relation {
        kind: RelationKind::from_byte(kind),
        target,
    })
}

/// Records with tags and primitive kinds the reader does not know, kept verbatim.
fn unknown_record() -> impl Strategy<Value = MetaRecord> {
    (21u16.., 12u8.., vec(any::<u8>(), 0..16)).prop_map(|(tag, kind, bytes)| MetaRecord {
        tag: MetaTag::Unknown(tag),
        value: MetaValue::Unknown { kind, bytes },
    })
}

fn meta() -> impl Strategy<Value = Meta> {
    let identity = (
        "[a-z][a-z0-9+._-]{0,20}",
        "[0-9a-z.+~-]{0,12}",
        any::<u64>(),
        any::<u64>(),
        "[a-z0-9_]{0,10}",
    );
    let texts = (text(), text(), text(), text());
    let lists = (
        vec(text(), 0..3),
        vec(relation(), 0..4),
        vec(relation(), 0..4),
        vec(relation(), 0..3),
        vec(relation(), 0..3),
    );
    let repository = (
        option::of(text()),
        option::of("[0-9a-f]{64}"),
        option::of(any::<u64>()),
        vec(unknown_record(), 0..3),
    );
    (identity, texts, lists, repository).prop_map(
        |(
            (name, version, release, build_release, architecture),
            (summary, description, homepage, source_id),
            (licenses, depends, provides, conflicts, build_depends),
            (uri, hash, size, extra),
        )| Meta {
            name,
            version,
            release,
            build_release,
            architecture,
            summary,
            description,
            homepage,
            source_id,
            licenses,
            depends,
            provides,
            conflicts,
            build_depends,
            uri,
            hash,
            size,
            extra,
        },
    )
}

/// One path component: any bytes but NUL and `/`, never `.` or `..`. Mostly readable.
fn component() -> impl Strategy<Value = Vec<u8>> {
    let readable = "[a-zA-Z0-9._+-]{1,12}".prop_map(String::into_bytes);
    let raw = vec(1u8..=255, 1..8).prop_map(|bytes| {
        bytes
            .into_iter()
            .map(|b| if b == b'/' { b'_' } else { b })
            .collect()
    });
    prop_oneof![3 => readable, 1 => raw].prop_filter("not . or ..", |c: &Vec<u8>| {
        c.as_slice() != b"." && c.as_slice() != b".."
    })
}

fn path() -> impl Strategy<Value = RelPath> {
    vec(component(), 1..5).prop_map(|parts| RelPath::new(parts.join(&b'/')).expect("valid"))
}

/// Asset contents: the empty file, runs that compress well, and noise.
fn contents() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => Just(Vec::new()),
        2 => (any::<u8>(), 1usize..4096).prop_map(|(b, n)| vec![b; n]),
        3 => vec(any::<u8>(), 1..2048),
    ]
}

/// What one layout entry is, before the pool of contents is known.
#[derive(Debug, Clone)]
enum Shape {
    Regular(usize),
    Symlink(Vec<u8>),
    Directory,
    Other(u8),
}

fn shape() -> impl Strategy<Value = Shape> {
    prop_oneof![
        6 => any::<usize>().prop_map(Shape::Regular),
        3 => vec(1u8..=255, 1..64).prop_map(Shape::Symlink),
        2 => Just(Shape::Directory),
        1 => (4u8..=7).prop_map(Shape::Other),
    ]
}

fn package() -> impl Strategy<Value = Package> {
    let entries = btree_set(path(), 0..24).prop_flat_map(|paths: BTreeSet<RelPath>| {
        let n = paths.len();
        let attributes = vec(
            (
                shape(),
                0u32..=0o7777,
                any::<u32>(),
                any::<u32>(),
                any::<u32>(),
            ),
            n,
        );
        (Just(paths), attributes)
    });
    (meta(), vec(contents(), 1..6), entries).prop_map(|(meta, pool, (paths, attributes))| {
        let mut assets: Vec<(AssetHash, Vec<u8>)> = Vec::new();
        let layout = paths
            .into_iter()
            .zip(attributes)
            .map(|(path, (shape, permissions, uid, gid, tag))| {
                let kind = match shape {
                    Shape::Regular(pick) => {
                        let bytes = &pool[pick % pool.len()];
                        let hash = AssetHash::of(bytes);
                        if !assets.iter().any(|(h, _)| *h == hash) {
                            assets.push((hash, bytes.clone()));
                        }
                        EntryKind::Regular(hash)
                    }
                    Shape::Symlink(target) => EntryKind::Symlink(target),
                    Shape::Directory => EntryKind::Directory,
                    Shape::Other(4) => EntryKind::CharDevice,
                    Shape::Other(5) => EntryKind::BlockDevice,
                    Shape::Other(6) => EntryKind::Fifo,
                    Shape::Other(_) => EntryKind::Socket,
                };
                LayoutEntry {
                    uid,
                    gid,
                    mode: kind.mode_bits() | permissions,
                    tag,
                    kind,
                    path,
                }
            })
            .collect();
        Package {
            meta,
            layout,
            assets,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        // Integration tests have no lib.rs for proptest to find; name the file outright.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/roundtrip.proptest-regressions"
        )))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_packages_round_trip(package in package(), level in 1i32..=5) {
        let bytes = package.write(WriterOptions { level, threads: 0 });
        package.check(&bytes)?;
    }
}

// ---------------------------------------------------------------------------------------
// One fixed package, several levels, with and without zstd workers.
// ---------------------------------------------------------------------------------------

/// About 1.3 MB: text that compresses, noise that does not, an empty file and duplicates.
fn fixed_package() -> Package {
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut noise = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    };
    let text: Vec<u8> = (0..40_000)
        .flat_map(|i| format!("line {i}: the quick brown fox\n").into_bytes())
        .collect();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("share/doc/big.txt", text),
        ("lib/libnoise.so.1", noise(300_000)),
        ("bin/tool", noise(20_000)),
        ("share/empty", Vec::new()),
    ];
    let mut assets = Vec::new();
    let mut layout = Vec::new();
    for (path, bytes) in &files {
        let hash = AssetHash::of(bytes);
        assets.push((hash, bytes.clone()));
        layout.push(LayoutEntry {
            uid: 0,
            gid: 0,
            mode: 0o100644,
            tag: 0,
            kind: EntryKind::Regular(hash),
            path: RelPath::new(*path).expect("valid"),
        });
    }
    // Duplicates share an asset; a directory and a symlink carry none.
    layout.push(LayoutEntry {
        path: RelPath::new("share/doc/copy.txt").expect("valid"),
        ..layout[0].clone()
    });
    layout.push(LayoutEntry {
        path: RelPath::new("share/empty2").expect("valid"),
        ..layout[3].clone()
    });
    layout.push(LayoutEntry {
        uid: 0,
        gid: 0,
        mode: 0o040755,
        tag: 0,
        kind: EntryKind::Directory,
        path: RelPath::new("share/doc").expect("valid"),
    });
    layout.push(LayoutEntry {
        uid: 0,
        gid: 0,
        mode: 0o120777,
        tag: 0,
        kind: EntryKind::Symlink(b"libnoise.so.1".to_vec()),
        path: RelPath::new("lib/libnoise.so").expect("valid"),
    });
    Package {
        meta: Meta {
            name: "fixed".into(),
            version: "1.0".into(),
            release: 2,
            build_release: 1,
            architecture: "x86_64".into(),
            licenses: vec!["MPL-2.0".into()],
            depends: vec![Relation::parse("soname(libc.so.6(x86_64))").expect("relation")],
            provides: vec![Relation::parse("soname(libnoise.so.1(x86_64))").expect("relation")],
            ..Meta::default()
        },
        layout,
        assets,
    }
}

#[test]
fn fixed_package_round_trips_at_several_levels_and_thread_counts() {
    let package = fixed_package();
    let plain: u64 = package.assets.iter().map(|(_, b)| b.len() as u64).sum();
    for level in [-3, 1, 3, 9] {
        let mut sizes = Vec::new();
        for threads in [0, 2] {
            let bytes = package.write(WriterOptions { level, threads });
            package
                .check(&bytes)
                .unwrap_or_else(|e| panic!("level {level}, {threads} threads: {e}"));
            let stone = read::verify(bytes.as_slice()).expect("verified above");
            let content = stone.content.expect("content").header;
            assert_eq!(content.plain_size, plain);
            assert!(
                content.stored_size < plain,
                "level {level}, {threads} threads: {} stored for {plain} plain",
                content.stored_size
            );
            sizes.push(bytes.len());
        }
        eprintln!("level {level}: stone sizes {sizes:?} for {plain} plain bytes");
    }
}
