//! A repository used from publishing to install.

use std::fs;

use crate::common::{self, file, meta, text};
use crate::fixture::*;

#[test]
fn published_served_updated_fetched_and_installed() {
    let repo = Repo::new();
    repo.stone("hello", "1.0", 1, b"old hello\n");
    let newer = repo.stone("hello", "1.1", 2, b"new hello\n");
    repo.stone("zlib", "1.3", 1, b"zlib bytes\n");
    let published = repo.publish(&[]);
    assert!(published.starts_with("indexed 2 packages"), "{published}");
    assert!(published.contains("left out") && published.contains("hello-1.0-1.stone"));
    let Some(nginx) = serve(&repo, "") else {
        return;
    };
    repo.add("main", &nginx.url("stone.index"), 10);
    let update = repo.root.ok(&["repo", "update"]);
    assert!(update.starts_with("main: updated to version"), "{update}");
    assert!(update.contains(", 2 packages"), "{update}");
    assert_eq!(repo.available(), ["hello [main]", "zlib [main]"]);
    let list = repo.root.ok(&["list", "available"]);
    assert!(
        list.contains("hello 1.1-2 [main]  hello for the tests"),
        "{list}"
    );

    let found = repo.root.ok(&["search", "zli"]);
    assert_eq!(found.lines().count(), 1, "{found}");
    assert!(found.starts_with("zlib 1.3-1 [main]"));
    let by_provider = repo.root.ok(&["search", "hello", "--provides=name"]);
    assert!(by_provider.starts_with("hello "), "{by_provider}");
    assert!(
        repo.root
            .ok(&["search", "hello", "--provides=binary"])
            .is_empty()
    );

    let size = fs::metadata(&newer).unwrap().len();
    let info = repo.root.ok(&["info", "hello"]);
    assert!(
        info.contains("1.1-2 (build 1) from main (priority 10)"),
        "{info}"
    );
    assert!(info.contains(&format!("download {size} B")), "{info}");
    assert!(info.contains(&sha256(&newer)), "{info}");
    // Offered but not installed: the JSON document is the name and the offers.
    let doc: serde_json::Value =
        serde_json::from_str(&repo.root.ok(&["info", "hello", "--json"])).unwrap();
    assert_eq!(doc["name"], "hello", "{doc}");
    assert!(doc.get("id").is_none(), "not installed: {doc}");
    assert_eq!(
        doc["available"][0]["sha256"],
        sha256(&newer).as_str(),
        "{doc}"
    );
    assert_eq!(doc["available"][0]["size"], size, "{doc}");

    // Into the cache, named by package id, byte for byte the published stone.
    let fetched = repo.root.ok(&["fetch", "hello", "zlib"]);
    assert!(fetched.contains("fetched 2 packages"), "{fetched}");
    let cached = repo
        .root
        .moss()
        .join(format!("cache/{}.stone", sha256(&newer)));
    assert_eq!(fs::read(&cached).unwrap(), fs::read(&newer).unwrap());
    assert_eq!(repo.cache_files().len(), 2, "{:?}", repo.cache_files());

    // Into a folder, then installed with the local-stone install.
    let out = repo.root.scratch("fetched");
    repo.root
        .ok(&["fetch", "hello", "-o", out.to_str().unwrap()]);
    let stone = out.join("hello-1.1-2.stone");
    assert_eq!(sha256(&stone), sha256(&newer));
    assert!(
        !out.join(".partial").exists(),
        "an emptied partial folder is removed"
    );
    repo.root.install(&[&stone]);
    assert_eq!(
        fs::read(repo.root.usr().join("share/hello/data")).unwrap(),
        b"new hello\n"
    );
    let installed_info = repo.root.ok(&["info", "hello"]);
    assert!(
        installed_info.starts_with("name          hello"),
        "{installed_info}"
    );
    assert!(installed_info.contains("available:"), "{installed_info}");
    let doc: serde_json::Value =
        serde_json::from_str(&repo.root.ok(&["info", "hello", "--json"])).unwrap();
    assert_eq!(doc["id"], sha256(&newer).as_str(), "installed: {doc}");
    assert_eq!(doc["available"][0]["repository"], "main", "{doc}");
    let all = repo.root.ok(&["search", "hello"]);
    assert!(
        all.contains("[installed]") && all.contains("[main]"),
        "{all}"
    );

    let listing = repo.root.ok(&["repo", "list"]);
    assert!(
        listing.starts_with("main priority 10 enabled signed http://127.0.0.1:"),
        "{listing}"
    );
}

#[test]
fn priorities_decide_and_disabled_or_removed_repositories_are_forgotten() {
    let high = Repo::new();
    let low_dir = high.root.scratch("low");
    high.stone("tool", "2.0", 2, b"from high\n");
    high.publish(&[]);
    // A second repository: same package, lower priority, a higher release.
    let low = Repo {
        root: crate::common::TestRoot::new(),
        served: low_dir.clone(),
        key: high.key.clone(),
        public: high.public.clone(),
    };
    low.stone("tool", "3.0", 3, b"from low\n");
    low.stone("extra", "1", 1, b"extra\n");
    low.publish(&[]);
    let Some(a) = serve(&high, "") else { return };
    let Some(b) = serve(&low, "") else { return };
    high.add("zz-high", &a.url("stone.index"), 50);
    high.add("aa-low", &b.url("stone.index"), 5);
    high.root.ok(&["repo", "update"]);
    // Priority beats release; the list shows the best repository first.
    assert_eq!(
        high.available(),
        ["extra [aa-low]", "tool [zz-high]", "tool [aa-low]"]
    );
    let order: Vec<String> = high
        .root
        .ok(&["repo", "list"])
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect();
    assert_eq!(order, ["zz-high", "aa-low"]);
    let out = high.root.scratch("o1");
    // A name given twice is fetched once.
    let fetched = high
        .root
        .ok(&["fetch", "tool", "tool", "-o", out.to_str().unwrap()]);
    assert!(fetched.contains("fetched 1 package,"), "{fetched}");
    assert!(out.join("tool-2.0-2.stone").is_file());

    high.root.ok(&["repo", "disable", "zz-high"]);
    assert_eq!(high.available(), ["extra [aa-low]", "tool [aa-low]"]);
    assert!(
        high.root
            .ok(&["repo", "list"])
            .contains("zz-high priority 50 disabled")
    );
    // A disabled repository is not refreshed by a plain update, nor by name.
    high.root.ok(&["repo", "update"]);
    let err = high.fail(&["repo", "update", "zz-high"]);
    assert!(
        err.contains("is disabled; run 'mossfs repo enable zz-high' first"),
        "{err}"
    );
    assert_eq!(high.available(), ["extra [aa-low]", "tool [aa-low]"]);
    high.root.ok(&["repo", "enable", "zz-high"]);
    high.root.ok(&["repo", "update"]);
    assert_eq!(high.available().len(), 3);

    high.root.ok(&["repo", "remove", "aa-low"]);
    assert_eq!(high.available(), ["tool [zz-high]"]);
    assert!(!high.root.path().join("etc/moss/repo.d/aa-low.kdl").exists());
    assert!(!high.root.moss().join("repo/aa-low").exists());
    let err = high.fail(&["fetch", "extra"]);
    assert!(err.contains("no enabled repository offers extra"), "{err}");
    let err = high.fail(&["repo", "remove", "aa-low"]);
    assert!(err.contains("no repository named aa-low"), "{err}");
}

#[test]
fn file_transport_and_root_index_histories() {
    let repo = Repo::new();
    // The base holds the pool and the channel, so every URI stays inside it.
    let base = repo.served.clone();
    repo.stone("hello", "1", 1, b"one\n");
    let first = repo.publish(&[
        "-o",
        base.to_str().unwrap(),
        "--history",
        "1000",
        "--stream",
        "unstable",
    ]);
    assert!(first.contains("listed history"), "{first}");
    let history_index = base.join("main/history/1000/x86_64/stone.index");
    assert!(history_index.is_file());
    let root_index: serde_json::Value =
        serde_json::from_slice(&fs::read(base.join("main/moss-root-index.json")).unwrap()).unwrap();
    assert_eq!(root_index["history"]["1000"]["format"], "v0");
    assert_eq!(root_index["streams"]["unstable"]["history"], "1000");
    let uri = format!("file://{}", base.display());
    repo.root.ok(&[
        "repo",
        "add",
        "rolling",
        &uri,
        "--version",
        "stream/unstable",
        "--key",
        repo.public.to_str().unwrap(),
    ]);
    let kdl = fs::read_to_string(repo.root.path().join("etc/moss/repo.d/rolling.kdl")).unwrap();
    assert!(
        kdl.contains("base-uri") && kdl.contains("version \"stream/unstable\""),
        "{kdl}"
    );
    repo.root.ok(&["repo", "update"]);
    let info = repo.root.ok(&["info", "hello"]);
    assert!(info.contains("1-1 (build 1) from rolling"), "{info}");
    assert!(
        info.contains(&format!("file://{}/pool/hello-1-1.stone", base.display())),
        "{info}"
    );

    // A history is immutable: publishing the same id again is refused and changes nothing.
    let before = fs::read(&history_index).unwrap();
    let err = fail_bare(&[
        "index".as_ref(),
        repo.served.as_os_str(),
        "-o".as_ref(),
        base.as_os_str(),
        "--history".as_ref(),
        "1000".as_ref(),
    ]);
    assert!(err.contains("history 1000 is already published"), "{err}");
    assert_eq!(fs::read(&history_index).unwrap(), before);

    // A new history moves the stream; the old one stays as it was.
    repo.stone("hello", "2", 2, b"two\n");
    repo.publish(&[
        "-o",
        base.to_str().unwrap(),
        "--history",
        "2000",
        "--stream",
        "unstable",
    ]);
    assert_eq!(fs::read(&history_index).unwrap(), before);
    repo.root.ok(&["repo", "update"]);
    assert!(
        repo.root
            .ok(&["info", "hello"])
            .contains("2-2 (build 1) from rolling")
    );
    // The stones resolve below the repository base, through file://.
    let out = repo.root.scratch("o");
    repo.root
        .ok(&["fetch", "hello", "-o", out.to_str().unwrap()]);
    assert_eq!(
        sha256(&out.join("hello-2-2.stone")),
        sha256(&base.join("pool/hello-2-2.stone"))
    );
}

#[test]
fn upstream_stones_are_indexed_and_a_stone_lacking_a_field_is_refused() {
    let repo = Repo::new();
    let pool = repo.served.join("pool");
    fs::create_dir_all(&pool).unwrap();
    for name in [common::BASH, common::PIZZA, common::PINEAPPLE] {
        fs::copy(common::sample(name), pool.join(name)).unwrap();
    }
    let out = repo.publish(&[]);
    assert!(out.starts_with("indexed 3 packages"), "{out}");
    // The index reads back with upstream's required fields and tags 14-16 on every entry.
    let bytes = fs::read(repo.served.join("stone.index")).unwrap();
    let mut reader = mossfs_format::Reader::new(&bytes[..]).unwrap();
    assert_eq!(
        reader.header().file_type,
        mossfs_format::FileType::Repository
    );
    let entries = reader.read_index(1 << 24).unwrap();
    assert_eq!(entries.len(), 3);
    for records in &entries {
        assert_eq!(mossfs_format::meta::missing_required(records), None);
        let meta = mossfs_format::Meta::from_records(records).unwrap();
        let uri = meta.uri.clone().unwrap();
        assert!(uri.starts_with("pool/"), "{uri}");
        assert_eq!(meta.hash.unwrap(), sha256(&repo.served.join(&uri)));
        assert_eq!(
            meta.size.unwrap(),
            fs::metadata(repo.served.join(&uri)).unwrap().len()
        );
    }
    // mossfs pack with only a name and a version makes a stone upstream accepts.
    let packed = repo.root.scratch("packed");
    let src = repo.root.scratch("src/share");
    fs::write(src.join("f"), b"x").unwrap();
    let out = run_bare(&[
        "pack".as_ref(),
        repo.root.scratch("src").as_os_str(),
        "-o".as_ref(),
        packed.join("p.stone").as_os_str(),
        "--name".as_ref(),
        "p".as_ref(),
        "--version".as_ref(),
        "1".as_ref(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stone = mossfs_format::Reader::new(fs::File::open(packed.join("p.stone")).unwrap())
        .unwrap()
        .read_metadata()
        .unwrap();
    assert_eq!(mossfs_format::meta::missing_required(&stone.meta), None);
    let meta = stone.typed_meta().unwrap();
    assert_eq!(
        (
            meta.summary.as_str(),
            meta.description.as_str(),
            meta.source_id.as_str()
        ),
        ("p", "p", "p")
    );

    // A stone without a description (as older writers made) is refused, the field named.
    let lacking = repo.root.scratch("lacking");
    let mut m = common::meta("nodesc", "1");
    m.description.clear();
    let records: Vec<_> = m
        .to_records()
        .into_iter()
        .filter(|r| r.tag != mossfs_format::MetaTag::Description)
        .collect();
    let mut writer = mossfs_format::Writer::new(
        fs::File::create(lacking.join("nodesc.stone")).unwrap(),
        mossfs_format::FileType::Binary,
        mossfs_format::WriterOptions::default(),
    )
    .unwrap();
    writer.add_meta(&records).unwrap();
    writer.finish().unwrap();
    let err = fail_bare(&["index".as_ref(), lacking.as_os_str()]);
    assert!(
        err.contains("has no Description") || err.contains("has no description"),
        "{err}"
    );
    assert!(!lacking.join("stone.index").exists());

    // Two stones of one name and release: refused, both named.
    let dup = repo.root.scratch("dup");
    fs::copy(pool.join(common::PIZZA), dup.join("a.stone")).unwrap();
    fs::copy(pool.join(common::PIZZA), dup.join("b.stone")).unwrap();
    let err = fail_bare(&["index".as_ref(), dup.as_os_str()]);
    assert!(
        err.contains("a.stone") && err.contains("b.stone") && err.contains("release"),
        "{err}"
    );
}

/// Makes a CA and a certificate for 127.0.0.1 signed by it; (CA, cert, key) paths.
fn test_ca(
    dir: &std::path::Path,
) -> Option<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)> {
    let openssl = |args: &[&str]| {
        std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
    };
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=mossfs test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    ];
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    for args in steps {
        match openssl(args) {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!("openssl {args:?}: {}", text(&out.stderr)),
            Err(e) => {
                assert!(
                    !mossfs_integration::nginx::in_ci(),
                    "openssl is missing ({e}); CI must run this test"
                );
                eprintln!("skipped: openssl is missing ({e})");
                return None;
            }
        }
    }
    Some((
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    ))
}

#[test]
fn https_with_a_certificate_the_system_trusts() {
    let repo = Repo::new();
    let stone = repo.stone("hello", "1", 1, b"over tls\n");
    repo.publish(&[]);
    let Some((ca, cert, key)) = test_ca(&repo.root.scratch("tls")) else {
        return;
    };
    let tls = mossfs_integration::nginx::Tls {
        cert: &cert,
        key: &key,
    };
    let Some(nginx) = mossfs_integration::nginx::Nginx::start_tls(&repo.served, "", tls) else {
        return;
    };
    let url = nginx.url("stone.index");
    assert!(url.starts_with("https://127.0.0.1:"));
    repo.add("secure", &url, 1);
    // Not trusted: the system store does not know the test CA.
    let untrusted = repo
        .root
        .command(&["repo", "update"])
        .env("SSL_CERT_FILE", cert.with_file_name("ext.cnf"))
        .output()
        .unwrap();
    let err = crate::common::error_line(&untrusted);
    assert!(err.contains("cannot fetch https://"), "{err}");
    assert!(repo.available().is_empty());
    // Trusted through the system's certificate store (SSL_CERT_FILE names it).
    let out = repo
        .root
        .command(&["repo", "update"])
        .env("SSL_CERT_FILE", &ca)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let dir = repo.root.scratch("got");
    let out = repo
        .root
        .command(&["fetch", "hello", "-o", dir.to_str().unwrap()])
        .env("SSL_CERT_FILE", &ca)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(sha256(&dir.join("hello-1-1.stone")), sha256(&stone));
}

/// `repo list`, `list available` and `search` with `--json` print one document each that
/// holds what the text holds; the commands that change something still have none.
#[test]
fn repo_list_list_available_and_search_as_json() {
    let repo = Repo::new();
    let hello = repo.stone("hello", "1.1", 2, b"hello\n");
    repo.stone("zlib", "1.3", 1, b"zlib bytes\n");
    repo.publish(&[]);

    // Before any update: the repository is configured, nothing is offered yet.
    let uri = format!("file://{}/stone.index", repo.served.display());
    repo.add("main", &uri, 10);
    let list = json(&repo, &["repo", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["id"], "main");
    assert_eq!(list[0]["priority"], 10);
    assert_eq!(list[0]["enabled"], true);
    assert_eq!(list[0]["uri"], uri.as_str());
    assert!(list[0]["root_index"].is_null());
    assert_eq!(list[0]["key"].as_str().unwrap().len(), 64, "{list}");
    assert!(list[0]["last_update"].is_null(), "{list}");
    assert_eq!(json(&repo, &["list", "available"]), serde_json::json!([]));

    repo.root.ok(&["repo", "update"]);
    let list = json(&repo, &["repo", "lr"]);
    let seen = &list[0]["last_update"];
    assert_eq!(seen["signed"], true, "{list}");
    assert!(seen["version"].as_u64().unwrap() > 0, "{list}");
    assert!(
        seen["expires"].as_u64() > seen["refreshed"].as_u64(),
        "{list}"
    );
    assert_eq!(
        seen["index_size"].as_u64().unwrap(),
        fs::metadata(repo.served.join("stone.index")).unwrap().len()
    );

    let available = json(&repo, &["list", "available"]);
    let names: Vec<&str> = available
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hello", "zlib"]);
    let first = &available[0];
    assert_eq!(first["version"], "1.1");
    assert_eq!(first["release"], 2);
    assert_eq!(first["repository"], "main");
    assert_eq!(first["priority"], 10);
    assert_eq!(first["summary"], "hello for the tests");
    assert_eq!(first["sha256"], sha256(&hello).as_str());
    assert_eq!(first["size"], fs::metadata(&hello).unwrap().len());
    assert!(
        first["uri"]
            .as_str()
            .unwrap()
            .ends_with("/pool/hello-1.1-2.stone"),
        "{first}"
    );
    assert_eq!(json(&repo, &["la"]), available);

    // Installed from the repository's own stone: found in both halves.
    repo.root.ok(&["install", hello.to_str().unwrap()]);
    let found = json(&repo, &["search", "hel"]);
    let installed = found["installed"].as_array().unwrap();
    assert_eq!(installed.len(), 1, "{found}");
    assert_eq!(installed[0]["name"], "hello");
    assert_eq!(installed[0]["id"], sha256(&hello).as_str());
    assert_eq!(installed[0]["explicit"], true);
    assert_eq!(found["available"], serde_json::json!([first]));
    let none = json(&repo, &["sr", "nothing-like-it"]);
    assert_eq!(none, serde_json::json!({"installed": [], "available": []}));

    for command in [
        &["repo", "update"][..],
        &["fetch", "hello"],
        &["repo", "disable", "main"],
    ] {
        let mut args = vec!["--json"];
        args.extend(command);
        let output = repo.root.run(&args);
        assert_eq!(output.status.code(), Some(2), "{command:?}");
        assert_eq!(text(&output.stdout), "");
        assert!(text(&output.stderr).contains("this command has no --json output"));
    }
    // Nothing of that ran: the repository is still enabled.
    assert_eq!(json(&repo, &["repo", "list"])[0]["enabled"], true);
}

/// Runs with `--json` and parses stdout as exactly one JSON document.
fn json(repo: &Repo, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend(args);
    let out = repo.root.ok(&all);
    let mut stream = serde_json::Deserializer::from_str(&out).into_iter::<serde_json::Value>();
    let document = stream
        .next()
        .unwrap_or_else(|| panic!("{args:?}: no document"))
        .unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"));
    assert!(stream.next().is_none(), "{args:?}: more than one: {out}");
    document
}

/// `install NAME` solves over the repositories, downloads what the solve chose (the
/// package and the library it needs, nothing else), and records the library as pulled
/// in; the downloads are in the cache under their ids, byte for byte what was published.
#[test]
fn install_by_name_fetches_what_the_solve_chose() {
    use mossfs_format::Relation;
    let repo = Repo::new();
    let pool = repo.served.join("pool");
    fs::create_dir_all(&pool).unwrap();
    let publish = |name: &str, m: &mossfs_format::Meta| {
        let built = repo.root.stone(
            m,
            vec![file(
                &format!("share/{name}/data"),
                name.as_bytes().to_vec(),
            )],
        );
        let dest = pool.join(format!("{name}.stone"));
        fs::copy(&built, &dest).unwrap();
        dest
    };
    let soname = Relation::parse("soname(libx.so.1(x86_64))").unwrap();
    let mut libx = meta("libx", "1");
    libx.provides = vec![soname.clone()];
    let libx = publish("libx", &libx);
    let mut app = meta("app", "1");
    app.depends = vec![soname];
    let app = publish("app", &app);
    publish("unrelated", &meta("unrelated", "1"));
    repo.publish(&[]);
    repo.add(
        "main",
        &format!("file://{}/stone.index", repo.served.display()),
        10,
    );
    repo.root.ok(&["repo", "update"]);

    // A dry run plans from the offer and downloads nothing.
    let planned = repo.root.ok(&["install", "--dry-run", "app"]);
    assert!(
        planned.contains("install 2 packages (app, libx)"),
        "{planned}"
    );
    assert!(repo.cache_files().is_empty(), "{:?}", repo.cache_files());

    let done = repo.root.ok(&["install", "app"]);
    assert!(done.contains("install 2 packages (app, libx)"), "{done}");
    assert_eq!(
        fs::read(repo.root.usr().join("share/libx/data")).unwrap(),
        b"libx"
    );
    assert!(!repo.root.usr().join("share/unrelated").exists());
    let cached = repo
        .root
        .moss()
        .join(format!("cache/{}.stone", sha256(&app)));
    assert_eq!(fs::read(&cached).unwrap(), fs::read(&app).unwrap());
    assert!(
        repo.root
            .moss()
            .join(format!("cache/{}.stone", sha256(&libx)))
            .exists()
    );
    // libx is there because app needs it: `list installed --explicit` leaves it out.
    let explicit = repo.root.ok(&["list", "installed", "--explicit"]);
    assert!(
        explicit.contains("app") && !explicit.contains("libx"),
        "{explicit}"
    );
    // And removing app takes libx with it, as an orphan.
    let removed = repo.root.ok(&["remove", "app"]);
    assert!(
        removed.contains("remove 2 packages (app, libx)"),
        "{removed}"
    );

    // A name no repository offers is refused with the solver's explanation, and nothing changes.
    let states = repo.root.ok(&["state", "list"]);
    let err = repo.root.fail(&["install", "nosuch"]);
    assert!(err.contains("nosuch"), "{err}");
    let stderr = crate::common::text(&repo.root.run(&["install", "nosuch"]).stderr);
    assert!(
        stderr.contains(
            "hint: if a repository should offer what has no candidates, run 'mossfs repo update'"
        ),
        "{err}"
    );
    assert_eq!(repo.root.ok(&["state", "list"]), states);
}

/// `sync` moves every package to its best candidate: up when a repository offers a newer
/// release, back down when a repository of higher priority offers an older one, and up
/// again when that repository is removed. `list sync` shows the move and changes nothing.
#[test]
fn sync_moves_up_back_down_and_up_again() {
    let repo = Repo::new();
    let old = repo.stone("tool", "1", 1, b"tool 1\n");
    repo.publish(&[]);
    let main_uri = format!("file://{}/stone.index", repo.served.display());
    repo.add("main", &main_uri, 10);
    repo.root.ok(&["repo", "update"]);
    repo.root.ok(&["install", "tool"]);
    let data = repo.root.usr().join("share/tool/data");
    assert_eq!(fs::read(&data).unwrap(), b"tool 1\n");

    // A newer release is published: `list sync` shows the upgrade, `sync -u` makes it.
    repo.stone("tool", "2", 2, b"tool 2\n");
    fs::remove_file(&old).unwrap();
    repo.publish(&[]);
    repo.root.ok(&["repo", "update"]);
    let states = repo.root.ok(&["state", "list"]);
    let shown = repo.root.ok(&["list", "sync"]);
    assert!(shown.contains("upgrade tool 1-1 -> 2-2"), "{shown}");
    assert_eq!(
        repo.root.ok(&["state", "list"]),
        states,
        "list sync changed something"
    );
    let synced = repo.root.ok(&["up", "--update"]);
    assert!(synced.contains("upgrade tool-2-2"), "{synced}");
    assert_eq!(fs::read(&data).unwrap(), b"tool 2\n");
    assert!(
        repo.root.ok(&["sync"]).contains("nothing to change"),
        "a second sync changes nothing"
    );

    // A repository of higher priority offers only release 1: sync moves back to it.
    let pinned = repo.root.scratch("pinned");
    let mut m = meta("tool", "1");
    m.release = 1;
    let stone = repo
        .root
        .stone(&m, vec![file("share/tool/data", b"tool 1\n".to_vec())]);
    fs::copy(&stone, pinned.join("tool-1-1.stone")).unwrap();
    repo.root.ok(&[
        "index".as_ref(),
        pinned.as_os_str(),
        "--sign".as_ref(),
        repo.key.as_os_str(),
    ]);
    repo.add(
        "pinned",
        &format!("file://{}/stone.index", pinned.display()),
        20,
    );
    repo.root.ok(&["repo", "update"]);
    let back = repo.root.ok(&["sync"]);
    assert!(back.contains("downgrade tool-1-1"), "{back}");
    assert_eq!(fs::read(&data).unwrap(), b"tool 1\n");

    // The pinned repository goes: sync moves up to what main offers.
    repo.root.ok(&["repo", "remove", "pinned"]);
    let up = repo.root.ok(&["sync"]);
    assert!(up.contains("upgrade tool-2-2"), "{up}");
    assert_eq!(fs::read(&data).unwrap(), b"tool 2\n");
}
