//! The database on a real LMDB environment in a temporary directory.

use mossfs_db::{
    Conflict, Db, DbError, DirEntry, Node, NodeKind, PackageRecord, Query, Selection, State,
    StateId, Status, tree,
};
use mossfs_format::{
    AssetHash, EntryKind, IndexEntry, LayoutEntry, Meta, PackageId, RelPath, Relation,
};

fn record(name: &str, byte: u8) -> PackageRecord {
    PackageRecord {
        id: PackageId([byte; 32]),
        meta: Meta {
            name: name.into(),
            version: "1.0".into(),
            release: 1,
            provides: vec![Relation::parse("binary(tool)").unwrap()],
            ..Meta::default()
        },
        stone_size: 1234,
        unpacked: false,
    }
}

fn file_entry(path: &str, bytes: &[u8]) -> LayoutEntry {
    LayoutEntry {
        uid: 0,
        gid: 0,
        mode: 0o100644,
        tag: 0,
        kind: EntryKind::Regular(AssetHash::of(bytes)),
        path: RelPath::new(path).unwrap(),
    }
}

#[test]
fn packages_layouts_and_providers_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let a = record("a", 1);
    let b = record("b", 2);
    let layout = vec![file_entry("bin/tool", b"x")];
    let index = vec![IndexEntry {
        start: 0,
        end: 1,
        digest: AssetHash::of(b"x"),
    }];
    let mut txn = db.write().unwrap();
    txn.put_package(&a, &layout, &index).unwrap();
    txn.put_package(&b, &[], &[]).unwrap();
    txn.commit().unwrap();

    let snap = db.read().unwrap();
    assert_eq!(snap.package(&a.id).unwrap(), Some(a.clone()));
    assert_eq!(snap.layout(&a.id).unwrap(), layout);
    assert_eq!(snap.index(&a.id).unwrap(), index);
    assert_eq!(snap.providers("binary(tool)").unwrap(), vec![a.id, b.id]);
    assert_eq!(snap.providers("name(a)").unwrap(), vec![a.id]);
    assert_eq!(snap.packages().unwrap().len(), 2);
    drop(snap);

    let mut txn = db.write().unwrap();
    txn.set_unpacked(&a.id, true).unwrap();
    txn.remove_package(&b.id).unwrap();
    txn.commit().unwrap();
    let snap = db.read().unwrap();
    assert!(snap.package(&a.id).unwrap().unwrap().unpacked);
    assert_eq!(snap.package(&b.id).unwrap(), None);
    assert_eq!(snap.providers("binary(tool)").unwrap(), vec![a.id]);
    assert!(matches!(snap.layout(&b.id), Err(DbError::NoPackage(_))));
}

#[test]
fn states_trees_and_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let owner = Some(PackageId([1; 32]));
    let file = Node {
        mode: 0o100755,
        uid: 0,
        gid: 0,
        owner,
        kind: NodeKind::Regular {
            asset: AssetHash::of(b"x"),
            size: 1,
        },
    };
    let mut txn = db.write().unwrap();
    let bin = txn
        .put_tree(&tree::encode(&[DirEntry {
            name: b"tool".to_vec(),
            node: file.clone(),
        }]))
        .unwrap();
    let dir_node = Node {
        mode: 0o040755,
        uid: 0,
        gid: 0,
        owner: None,
        kind: NodeKind::Directory(bin),
    };
    let root = txn
        .put_tree(&tree::encode(&[DirEntry {
            name: b"bin".to_vec(),
            node: dir_node,
        }]))
        .unwrap();
    // Storing an identical object again gives the same hash and no new object.
    assert_eq!(
        txn.put_tree(&tree::encode(&[DirEntry {
            name: b"tool".to_vec(),
            node: file.clone()
        }]))
        .unwrap(),
        bin
    );
    let id = txn.next_state_id().unwrap();
    assert_eq!(id, StateId(1));
    let state = State {
        id,
        created: 42,
        summary: "install a".into(),
        status: Status::Candidate,
        parent: None,
        selections: vec![Selection {
            package: PackageId([1; 32]),
            explicit: true,
            reason: mossfs_db::Reason::Unknown,
        }],
        root,
        entries: 2,
        conflicts: vec![Conflict {
            path: b"bin/tool".to_vec(),
            contenders: vec![file.clone(), file.clone()],
        }],
        generated: vec![mossfs_db::Generated {
            path: b"lib/ld.so.cache".to_vec(),
            trigger: "ldconfig".into(),
        }],
    };
    txn.put_state(&state).unwrap();
    txn.set_active(Some(id)).unwrap();
    txn.commit().unwrap();

    let snap = db.read().unwrap();
    assert_eq!(snap.state(id).unwrap(), state);
    assert_eq!(snap.active().unwrap(), Some(id));
    assert_eq!(snap.tree_hashes().unwrap().len(), 2);
    let found = snap
        .lookup(root, &RelPath::new("bin/tool").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(found.node, file);
    assert_eq!(
        snap.lookup(root, &RelPath::new("bin/nope").unwrap())
            .unwrap(),
        None
    );
    assert_eq!(
        snap.lookup(root, &RelPath::new("bin/tool/x").unwrap())
            .unwrap(),
        None
    );
    assert!(matches!(
        snap.state(StateId(9)),
        Err(DbError::NoState(StateId(9)))
    ));
    drop(snap);

    let mut txn = db.write().unwrap();
    assert_eq!(txn.next_state_id().unwrap(), StateId(2));
    assert!(txn.remove_state(id).unwrap());
    txn.commit().unwrap();
    assert!(db.read().unwrap().states().unwrap().is_empty());
}

#[test]
fn a_snapshot_does_not_see_later_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let snap = db.read().unwrap();
    let mut txn = db.write().unwrap();
    txn.put_package(&record("a", 1), &[], &[]).unwrap();
    txn.commit().unwrap();
    assert!(snap.packages().unwrap().is_empty());
    assert_eq!(db.read().unwrap().packages().unwrap().len(), 1);
}

#[test]
fn a_newer_schema_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path()).unwrap();
        // Pretend a future mossfs wrote this database.
        let env = db;
        let mut txn = env.write().unwrap();
        txn.set_schema_for_test(mossfs_db::SCHEMA_VERSION + 1)
            .unwrap();
        txn.commit().unwrap();
    }
    let err = Db::open(dir.path()).err().expect("must refuse");
    assert!(
        matches!(err, DbError::NewerSchema { found, .. } if found == mossfs_db::SCHEMA_VERSION + 1)
    );
    assert!(err.to_string().contains("use a newer mossfs"), "{err}");
}

#[test]
fn an_older_schema_is_moved_up_by_a_writer_and_left_alone_by_a_reader() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path()).unwrap();
        let mut txn = db.write().unwrap();
        // A database from before states kept reasons.
        txn.set_schema_for_test(1).unwrap();
        txn.commit().unwrap();
    }
    {
        let db = Db::open_read(dir.path()).unwrap();
        assert_eq!(db.read().unwrap().meta_u64("schema").unwrap(), Some(1));
    }
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(
        db.read().unwrap().meta_u64("schema").unwrap(),
        Some(mossfs_db::SCHEMA_VERSION)
    );
}

#[test]
fn a_read_only_open_creates_nothing_writes_nothing_and_sees_every_state() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("db");
    assert!(matches!(Db::open_read(&missing), Err(DbError::Open { .. })));
    assert!(!missing.exists(), "a reader created the database folder");
    {
        let db = Db::open(&missing).unwrap();
        let mut txn = db.write().unwrap();
        let root = txn.put_tree(&tree::encode(&[])).unwrap();
        let id = txn.next_state_id().unwrap();
        txn.put_state(&State {
            id,
            created: 7,
            summary: "install a".into(),
            status: Status::InFlight,
            parent: None,
            selections: Vec::new(),
            root,
            entries: 0,
            conflicts: Vec::new(),
            generated: Vec::new(),
        })
        .unwrap();
        txn.commit().unwrap();
    }
    let db = Db::open_read(&missing).unwrap();
    let states = db.read().unwrap().states().unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].status, Status::InFlight);
    assert!(matches!(db.write().err(), Some(DbError::ReadOnly { .. })));
}
