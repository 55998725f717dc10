//! The repository commands (DESIGN.md §8): `index` and `keygen` for publishers; `repo`,
//! `list available`, `search`, `fetch` and the available half of `info` for clients. Each
//! parses, asks `mossfs-repo`, and prints; trust decisions live in that crate.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use mossfs_db::{Available, AvailableQuery, Db, Query};
use mossfs_format::PackageId;
use mossfs_repo::config::{self, Repo, Source};
use mossfs_repo::fetch::{self, Job};
use mossfs_repo::refresh::{self, Outcome};
use mossfs_repo::transport::{self, Transport};
use mossfs_repo::{RepoError, keys, publish};

use super::{RootArg, report_recovery};
use crate::engine::Root;
use crate::error::CliError;
use crate::progress::{Bar, Unit};
use crate::quote;
use crate::units::bytes as human;

type Result<T = ()> = std::result::Result<T, CliError>;

impl From<mossfs_db::DbError> for CliError {
    fn from(e: mossfs_db::DbError) -> Self {
        CliError::Repo(RepoError::Db(e))
    }
}

/// Arguments of `mossfs index`.
#[derive(clap::Args, Debug)]
pub struct IndexArgs {
    /// The folder whose stones (found recursively) make the repository.
    pub dir: PathBuf,
    /// Where to write stone.index and its checksum file (default: DIR). With --history, the
    /// repository's base folder.
    #[arg(short = 'o', long = "output-dir", value_name = "OUT")]
    pub out: Option<PathBuf>,
    /// Publish as an immutable history ID under OUT/CHANNEL/, listed in its
    /// moss-root-index.json (upstream uses unix timestamps as ids).
    #[arg(long, value_name = "ID")]
    pub history: Option<String>,
    /// The channel of a history.
    #[arg(long, default_value = "main", requires = "history")]
    pub channel: String,
    /// The architecture folder of a history.
    #[arg(long, default_value = "x86_64", requires = "history")]
    pub arch: String,
    /// Point this stream at the new history (e.g. unstable).
    #[arg(long, requires = "history")]
    pub stream: Option<String>,
    /// Sign the checksum files with this secret key (from `mossfs keygen`).
    #[arg(long, value_name = "KEY")]
    pub sign: Option<PathBuf>,
    /// Days until the checksum files expire; clients refuse an expired one (0 publishes
    /// one that has expired already, to try clients against it).
    #[arg(long, default_value_t = 30, value_name = "DAYS")]
    pub expires: u64,
    /// Also make a delta to each package from each of up to N earlier releases of it
    /// found in DIR, into OUT/deltas/, and list them in the index.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub deltas: usize,
}

/// Arguments of `mossfs keygen`.
#[derive(clap::Args, Debug)]
pub struct KeygenArgs {
    /// Writes NAME.key (secret, mode 0600) and NAME.pub.
    pub name: PathBuf,
}

/// `mossfs repo ...`.
#[derive(clap::Subcommand, Debug)]
pub enum RepoCommand {
    /// Add a repository: URI is a stone.index, or a root-index base with --version.
    #[command(visible_alias = "ar")]
    Add {
        /// Its name.
        name: String,
        /// A stone.index URI (file://, http://, https://), or a base URI with --version.
        uri: String,
        /// Higher wins; equal priorities go by name.
        #[arg(long, default_value_t = 0)]
        priority: u64,
        /// The Ed25519 public key (hex, or a .pub file) its checksum files must carry.
        #[arg(long, value_name = "PUBKEY")]
        key: Option<String>,
        /// A description.
        #[arg(long, default_value = "")]
        comment: String,
        /// With a root index: the channel.
        #[arg(long, default_value = "main")]
        channel: String,
        /// With a root index: stream/NAME, tag/NAME or history/ID.
        #[arg(long)]
        version: Option<String>,
        /// With a root index: the architecture.
        #[arg(long, default_value = "x86_64")]
        arch: String,
        #[command(flatten)]
        root: RootArg,
    },
    /// List the repositories, in priority order, with what the last update saw.
    #[command(visible_alias = "lr")]
    List {
        #[command(flatten)]
        root: RootArg,
    },
    /// Remove a repository and forget what it offered.
    #[command(visible_alias = "rr")]
    Remove {
        /// Its name.
        name: String,
        #[command(flatten)]
        root: RootArg,
    },
    /// Use a repository again.
    #[command(visible_alias = "er")]
    Enable {
        /// Its name.
        name: String,
        #[command(flatten)]
        root: RootArg,
    },
    /// Stop using a repository; what it offered is forgotten.
    #[command(visible_alias = "dr")]
    Disable {
        /// Its name.
        name: String,
        #[command(flatten)]
        root: RootArg,
    },
    /// Refresh every enabled repository, or one.
    #[command(visible_alias = "ur")]
    Update {
        /// Only this one.
        name: Option<String>,
        #[command(flatten)]
        root: RootArg,
    },
}

/// Arguments of `mossfs search`.
#[derive(clap::Args, Debug)]
pub struct SearchArgs {
    /// Matched against names and summaries (or providers, with --provides).
    pub keyword: String,
    /// Match providers instead, e.g. `--provides` or `--provides=binary`.
    #[arg(long, num_args = 0..=1, default_missing_value = "", value_name = "KIND")]
    pub provides: Option<String>,
    #[command(flatten)]
    pub root: RootArg,
}

/// Arguments of `mossfs fetch`.
#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// Package names.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Download into this folder instead of the stone cache.
    #[arg(short = 'o', long = "output-dir", value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Downloads at once.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    #[command(flatten)]
    pub root: RootArg,
}

/// Runs `mossfs index`.
pub fn index(args: &IndexArgs, out: &mut dyn Write) -> Result {
    let started = Instant::now();
    let key = args.sign.as_deref().map(keys::read_secret).transpose()?;
    let options = publish::Options {
        key,
        expires_in: args.expires.saturating_mul(86_400),
        history: args.history.as_ref().map(|id| publish::History {
            id: id.clone(),
            channel: args.channel.clone(),
            arch: args.arch.clone(),
            stream: args.stream.clone(),
        }),
        deltas: args.deltas,
        delta_options: mossfs_store::make_delta::Options::default(),
    };
    let dest = args.out.clone().unwrap_or_else(|| args.dir.clone());
    let report = publish::index(&args.dir, &dest, &options)?;
    writeln!(
        out,
        "indexed {} into {} ({}, version {}{}) in {}ms",
        crate::units::count(report.packages, "package"),
        report.index.display(),
        human(report.index_size),
        report.version,
        if args.sign.is_some() {
            ", signed"
        } else {
            ", unsigned"
        },
        started.elapsed().as_millis()
    )?;
    for path in &report.superseded {
        writeln!(
            out,
            "left out {}: a higher release is indexed",
            path.display()
        )?;
    }
    for path in &report.not_packages {
        writeln!(
            out,
            "left out {}: a delta or other stone, not a package",
            path.display()
        )?;
    }
    for delta in &report.deltas {
        writeln!(
            out,
            "delta {} {} -> {}: {}, {:.1}% of the full stone ({}){}",
            quote::text(&delta.name),
            quote::text(&delta.from_version),
            quote::text(&delta.to_version),
            human(delta.size),
            100.0 * delta.size as f64 / delta.full_size.max(1) as f64,
            human(delta.full_size),
            if delta.reused {
                ", kept from before"
            } else {
                ""
            }
        )?;
    }
    for why in &report.skipped_deltas {
        writeln!(out, "{}", quote::text(why))?;
    }
    if let Some(root) = &report.root_index {
        writeln!(out, "listed history in {}", root.display())?;
    }
    Ok(())
}

/// Runs `mossfs keygen`.
pub fn keygen(args: &KeygenArgs, out: &mut dyn Write) -> Result {
    let with = |ext: &str| {
        let mut name = args.name.clone().into_os_string();
        name.push(ext);
        PathBuf::from(name)
    };
    let (secret, public) = (with(".key"), with(".pub"));
    let key = keys::generate(&secret, &public)?;
    writeln!(
        out,
        "wrote {} (secret) and {} (public key {})",
        secret.display(),
        public.display(),
        mossfs_repo::hex(key.as_bytes())
    )?;
    Ok(())
}

fn find(root: &Path, name: &str) -> Result<Repo> {
    let id = config::make_id(name);
    config::load(root)?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| RepoError::UnknownRepo(name.to_owned()).into())
}

/// Runs `mossfs repo ...`.
pub fn repo(command: &RepoCommand, out: &mut dyn Write) -> Result {
    match command {
        RepoCommand::Add {
            name,
            uri,
            priority,
            key,
            comment,
            channel,
            version,
            arch,
            root,
        } => {
            let id = config::make_id(name);
            // An empty name would be the hidden file `.kdl`, which no command then finds.
            if id.is_empty() || id.chars().count() > config::MAX_REPO_NAME {
                let shown = mossfs_format::meta::shortened(name, config::MAX_REPO_NAME);
                return Err(RepoError::BadRepoName(shown).into());
            }
            if config::load(&root.root)?.iter().any(|r| r.id == id) {
                return Err(RepoError::RepoExists(id).into());
            }
            let uri = &checked_uri(uri)?;
            let key = key
                .as_deref()
                .map(|k| keys::parse_public(k).map(|k| mossfs_repo::hex(k.as_bytes())))
                .transpose()?;
            let source = match version {
                None => Source::Direct { uri: uri.clone() },
                Some(version) => Source::Root {
                    base_uri: uri.clone(),
                    channel: channel.clone(),
                    version: version.clone(),
                    arch: arch.clone(),
                },
            };
            let repo = Repo {
                id: id.clone(),
                description: comment.clone(),
                priority: *priority,
                active: true,
                source,
                key,
                origin: PathBuf::new(),
            };
            let path = config::save(&root.root, &repo)?;
            writeln!(
                out,
                "added repository {id} (priority {priority}) in {}; run 'mossfs repo update' to use it",
                path.display()
            )?;
        }
        RepoCommand::List { root } => {
            let repos = config::load(&root.root)?;
            let db = open_db_read(&root.root)?;
            let snapshot = db.as_ref().map(Db::read).transpose()?;
            let seen_of = |repo: &Repo| -> Result<Option<mossfs_db::RepoSeen>> {
                match &snapshot {
                    Some(snapshot) => Ok(snapshot.repo_seen(&repo.id)?),
                    None => Ok(None),
                }
            };
            if crate::ui::json() {
                let mut rows = Vec::with_capacity(repos.len());
                for repo in &repos {
                    rows.push(RepoDoc::new(repo, seen_of(repo)?));
                }
                crate::ui::print_json(out, &rows)?;
                return Ok(());
            }
            for repo in repos {
                let seen = seen_of(&repo)?;
                let uri = match &repo.source {
                    Source::Direct { uri } => uri.clone(),
                    Source::Root {
                        base_uri,
                        channel,
                        version,
                        arch,
                    } => format!("{base_uri} ({channel} {version} {arch})"),
                };
                let trust = if repo.key.is_some() {
                    "signed"
                } else {
                    "unsigned"
                };
                let state = if repo.active { "enabled" } else { "disabled" };
                let seen = match seen {
                    Some(s) => format!(
                        "version {}, expires {}",
                        s.version,
                        refresh::utc_date(s.expires)
                    ),
                    None => "never updated".into(),
                };
                writeln!(
                    out,
                    "{} priority {} {state} {trust} {}  [{seen}]",
                    quote::text(&repo.id),
                    repo.priority,
                    quote::text(&uri)
                )?;
            }
        }
        RepoCommand::Remove { name, root } => {
            let repo = find(&root.root, name)?;
            if !repo.origin.starts_with(root.root.join(config::ADMIN_DIR)) {
                return Err(RepoError::Config {
                    path: repo.origin,
                    reason: format!(
                        "repository {} is a vendor default; use 'mossfs repo disable {}' instead",
                        repo.id, repo.id
                    ),
                }
                .into());
            }
            if let Some(opened) = open_write_if_root(&root.root)? {
                refresh::forget(&root.root, &opened.db, &repo.id)?;
            }
            remove_file(&repo.origin)?;
            writeln!(out, "removed repository {}", repo.id)?;
        }
        RepoCommand::Enable { name, root } | RepoCommand::Disable { name, root } => {
            let active = matches!(command, RepoCommand::Enable { .. });
            let mut repo = find(&root.root, name)?;
            repo.active = active;
            if !active && let Some(opened) = open_write_if_root(&root.root)? {
                refresh::forget(&root.root, &opened.db, &repo.id)?;
            }
            config::save(&root.root, &repo)?;
            writeln!(
                out,
                "{} repository {}{}",
                if active { "enabled" } else { "disabled" },
                repo.id,
                if active {
                    "; run 'mossfs repo update' to use it"
                } else {
                    ""
                }
            )?;
        }
        RepoCommand::Update { name, root } => {
            let repos: Vec<Repo> = match name {
                Some(name) => {
                    let repo = find(&root.root, name)?;
                    if !repo.active {
                        return Err(RepoError::Config {
                            path: repo.origin,
                            reason: format!(
                                "repository {} is disabled; run 'mossfs repo enable {}' first",
                                repo.id, repo.id
                            ),
                        }
                        .into());
                    }
                    vec![repo]
                }
                None => config::load(&root.root)?
                    .into_iter()
                    .filter(|r| r.active)
                    .collect(),
            };
            if repos.is_empty() {
                writeln!(
                    out,
                    "no enabled repository to update; add one with 'mossfs repo add NAME URI'"
                )?;
                return Ok(());
            }
            // The repositories are configured in this root, so an update may make its
            // database, as a first install does.
            let opened = Root::create(&root.root)?;
            report_recovery(&opened);
            let transport = Transport::new(transport::default_idle());
            for repo in repos {
                let started = Instant::now();
                let outcome = refresh::refresh(&root.root, &opened.db, &repo, &transport)?;
                crate::ui::step(&format!("update {}", repo.id));
                match outcome {
                    Outcome::Unchanged { version } => writeln!(
                        out,
                        "{}: up to date (version {version})",
                        quote::text(&repo.id)
                    )?,
                    Outcome::Updated { version, packages } => writeln!(
                        out,
                        "{}: updated to version {version}, {}, in {}ms",
                        quote::text(&repo.id),
                        crate::units::count(packages, "package"),
                        started.elapsed().as_millis()
                    )?,
                }
            }
        }
    }
    Ok(())
}

/// The URI `repo add` records: its scheme in lower case, and for http(s) a host and, if
/// any, a port that can be reached. What `repo update` would only refuse later is refused
/// here, while the person is still typing.
fn checked_uri(uri: &str) -> Result<String> {
    let bad = |reason: &str| -> crate::error::CliError {
        RepoError::BadUri {
            uri: uri.to_owned(),
            reason: reason.to_owned(),
        }
        .into()
    };
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(bad("use file:///ABSOLUTE/PATH, http:// or https://"));
    };
    let scheme = scheme.to_ascii_lowercase();
    match scheme.as_str() {
        "file" if rest.starts_with('/') => {}
        "http" | "https" => {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
            let (host, port) = match authority.strip_prefix('[') {
                Some(v6) => match v6.split_once(']') {
                    Some((host, after)) => (host, after.strip_prefix(':')),
                    None => return Err(bad("the IPv6 address has no closing ']'")),
                },
                None => match authority.rsplit_once(':') {
                    Some((host, port)) => (host, Some(port)),
                    None => (authority, None),
                },
            };
            if host.is_empty() {
                return Err(bad("it names no host"));
            }
            if port.is_some_and(|p| p.parse::<u16>().map_or(true, |p| p == 0)) {
                return Err(bad("its port is not a number from 1 to 65535"));
            }
        }
        _ => return Err(bad("use file:///ABSOLUTE/PATH, http:// or https://")),
    }
    Ok(format!("{scheme}://{rest}"))
}

fn remove_file(path: &Path) -> Result {
    std::fs::remove_file(path).map_err(|source| {
        RepoError::Io {
            path: path.to_owned(),
            source,
        }
        .into()
    })
}

/// The root opened for reading, if it has a database; reading never creates one.
fn open_read_if_root(root: &Path) -> Result<Option<Root>> {
    if !root.join(".moss/db").is_dir() {
        return Ok(None);
    }
    let root = Root::open_read(root)?;
    report_recovery(&root);
    Ok(Some(root))
}

/// The root opened for writing, if it has a database: with none, there is nothing a
/// repository offered to forget.
fn open_write_if_root(root: &Path) -> Result<Option<Root>> {
    if !root.join(".moss/db").is_dir() {
        return Ok(None);
    }
    let root = Root::open_write(root)?;
    report_recovery(&root);
    Ok(Some(root))
}

/// The database of a root, if it has one; reading never creates it.
fn open_db_read(root: &Path) -> Result<Option<Db>> {
    Ok(open_read_if_root(root)?.map(|root| root.db))
}

/// Prints `mossfs list available`.
pub fn list_available(root: &RootArg, out: &mut dyn Write) -> Result {
    let available = match open_db_read(&root.root)? {
        Some(db) => db.read()?.all_available()?,
        None => Vec::new(),
    };
    if crate::ui::json() {
        let rows: Vec<AvailableDoc> = available.iter().map(AvailableDoc::new).collect();
        crate::ui::print_json(out, &rows)?;
        return Ok(());
    }
    for item in available {
        row(&item, out)?;
    }
    Ok(())
}

fn row(item: &Available, out: &mut dyn Write) -> Result {
    let meta = &item.meta;
    writeln!(
        out,
        "{} {}-{} [{}]  {}",
        quote::text(&meta.name),
        quote::text(&meta.version),
        meta.release,
        quote::text(&item.repo),
        quote::text(&meta.summary)
    )?;
    Ok(())
}

/// Runs `mossfs search`.
pub fn search(args: &SearchArgs, out: &mut dyn Write) -> Result {
    let Some(root) = open_read_if_root(&args.root.root)? else {
        if crate::ui::json() {
            crate::ui::print_json(out, &SearchDoc::default())?;
        }
        return Ok(());
    };
    let snapshot = root.db.read()?;
    let keyword = args.keyword.to_lowercase();
    let matches = |meta: &mossfs_format::Meta| match &args.provides {
        None => {
            meta.name.to_lowercase().contains(&keyword)
                || meta.summary.to_lowercase().contains(&keyword)
        }
        Some(kind) => meta.all_provides().any(|p| {
            (kind.is_empty() || p.to_string().starts_with(&format!("{kind}(")))
                && p.target.to_lowercase().contains(&keyword)
        }),
    };
    let mut selections = Vec::new();
    if let Some(active) = root.live_state(&snapshot)? {
        selections = snapshot.state(active)?.selections;
    }
    if crate::ui::json() {
        let mut document = SearchDoc::default();
        for s in &selections {
            if let Some(record) = snapshot.package(&s.package)?
                && matches(&record.meta)
            {
                document
                    .installed
                    .push(super::documents::Package::new(&record, s.explicit));
            }
        }
        document.installed.sort_by(|a, b| a.name.cmp(&b.name));
        for item in snapshot.all_available()? {
            if matches(&item.meta) {
                document.available.push(AvailableDoc::new(&item));
            }
        }
        crate::ui::print_json(out, &document)?;
        return Ok(());
    }
    for id in selections.iter().map(|s| s.package) {
        if let Some(record) = snapshot.package(&id)?
            && matches(&record.meta)
        {
            let meta = &record.meta;
            writeln!(
                out,
                "{} {}-{} [installed]  {}",
                quote::text(&meta.name),
                quote::text(&meta.version),
                meta.release,
                quote::text(&meta.summary)
            )?;
        }
    }
    for item in snapshot.all_available()? {
        if matches(&item.meta) {
            row(&item, out)?;
        }
    }
    Ok(())
}

/// Prints the repositories that offer `name` (for `mossfs info`); false if none does.
pub fn print_available(db: &Db, name: &str, out: &mut dyn Write) -> Result<bool> {
    let offers = db.read()?.available(name)?;
    for (i, item) in offers.iter().enumerate() {
        let meta = &item.meta;
        if i == 0 {
            writeln!(out, "available:")?;
        }
        writeln!(
            out,
            "  {}-{} (build {}) from {} (priority {}), download {}",
            quote::text(&meta.version),
            meta.release,
            meta.build_release,
            quote::text(&item.repo),
            item.priority,
            human(meta.size.unwrap_or(0))
        )?;
        if i == 0 {
            writeln!(out, "  summary     {}", quote::text(&meta.summary))?;
            writeln!(
                out,
                "  uri         {}",
                quote::text(meta.uri.as_deref().unwrap_or(""))
            )?;
            writeln!(
                out,
                "  sha256      {}",
                quote::text(meta.hash.as_deref().unwrap_or(""))
            )?;
        }
    }
    Ok(!offers.is_empty())
}

/// Runs `mossfs fetch`.
pub fn fetch(args: &FetchArgs, out: &mut dyn Write) -> Result {
    let root = Root::open_write(&args.root.root)?;
    report_recovery(&root);
    let snapshot = root.db.read()?;
    let mut jobs: Vec<Job> = Vec::new();
    for name in &args.names {
        if jobs.iter().any(|j| j.name == *name) {
            continue;
        }
        let best = snapshot
            .available(name)?
            .into_iter()
            .next()
            .ok_or_else(|| RepoError::NotAvailable(name.clone()))?;
        jobs.push(job_for(&root, best.meta, args.out.as_deref())?);
    }
    drop(snapshot);
    let started = Instant::now();
    let total: u64 = jobs.iter().map(|j| j.size).sum();
    let paths = download(&jobs, args.jobs)?;
    for (job, path) in jobs.iter().zip(&paths) {
        writeln!(
            out,
            "fetched {} ({}) to {}",
            quote::text(&job.name),
            human(job.size),
            quote::name(path.as_os_str().as_bytes())
        )?;
    }
    let secs = started.elapsed().as_secs_f64().max(1e-6);
    writeln!(
        out,
        "fetched {}, {} in {:.2}s ({}/s)",
        crate::units::count(jobs.len(), "package"),
        human(total),
        secs,
        human((total as f64 / secs) as u64)
    )?;
    Ok(())
}

/// The download of an available package: into `dir` under its file name, or, without
/// one, into the stone cache under its id (its sha256), where an install finds it.
pub fn job_for(
    root: &Root,
    meta: mossfs_format::Meta,
    dir: Option<&Path>,
) -> std::result::Result<Job, RepoError> {
    let name = meta.name.clone();
    let (Some(uri), Some(sha256), Some(size)) = (meta.uri, meta.hash, meta.size) else {
        return Err(RepoError::NotAvailable(name));
    };
    let dest = match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|source| RepoError::Io {
                path: dir.to_owned(),
                source,
            })?;
            let file = uri.rsplit('/').next().unwrap_or(name.as_str());
            dir.join(file)
        }
        None => {
            let bytes = mossfs_repo::unhex(&sha256)
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| RepoError::NotAvailable(name.clone()))?;
            root.store.cached_path(&PackageId(bytes))
        }
    };
    Ok(Job {
        name,
        uri,
        sha256,
        size,
        dest,
    })
}

/// Downloads `jobs`, `parallel` at a time, with bars on a terminal: where each one is,
/// in order. Every failure is shown; the first one is the caller's error.
pub fn download(jobs: &[Job], parallel: usize) -> std::result::Result<Vec<PathBuf>, RepoError> {
    let transport = Transport::new(transport::default_idle());
    let options = fetch::Options {
        parallel: parallel.max(1),
        ..fetch::Options::default()
    };
    let meter = Meter::new(jobs);
    let report = |p: fetch::Progress| meter.update(p);
    let results = fetch::fetch_all(jobs, &transport, &options, &report);
    drop(meter);
    crate::ui::step("download");
    let mut paths = Vec::with_capacity(jobs.len());
    let mut errors = Vec::new();
    for result in results {
        match result {
            Ok(path) => paths.push(path),
            Err(e) => errors.push(e),
        }
    }
    let mut errors = errors.into_iter();
    if let Some(first) = errors.next() {
        for other in errors {
            eprintln!("{}", crate::error::report(&CliError::from(other)));
        }
        return Err(first);
    }
    Ok(paths)
}

/// The download bars: the bytes of every package in total, with the rate and time left,
/// over one bar per package in flight. Hidden, and never touched, when bars are off.
pub(crate) struct Meter<'j> {
    jobs: &'j [Job],
    total: Bar,
    /// Per job: the bytes held, and its bar while it downloads.
    lines: Mutex<Vec<(u64, Option<Bar>)>>,
}

impl<'j> Meter<'j> {
    pub(crate) fn new(jobs: &'j [Job]) -> Meter<'j> {
        Meter {
            jobs,
            total: Bar::new("fetch", jobs.iter().map(|j| j.size).sum(), Unit::Bytes),
            lines: Mutex::new(jobs.iter().map(|_| (0, None)).collect()),
        }
    }

    pub(crate) fn update(&self, p: fetch::Progress) {
        if !crate::progress::enabled() {
            return;
        }
        let Some(i) = self.jobs.iter().position(|j| std::ptr::eq(j, p.job)) else {
            return;
        };
        let mut lines = self
            .lines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (done, line) = &mut lines[i];
        // A retry that starts over reports fewer bytes than before.
        *done = p.done;
        if p.done >= p.job.size {
            *line = None;
        } else {
            line.get_or_insert_with(|| {
                let bar = Bar::new("", p.job.size, Unit::Bytes);
                bar.message(quote::text(&p.job.name).into_owned());
                bar
            })
            .set(p.done);
        }
        self.total.set(lines.iter().map(|(done, _)| done).sum());
    }
}

/// One row of `list available --json`, and of `search --json`'s `available`: a
/// repository's offer of a package.
#[derive(Debug, serde::Serialize)]
pub(crate) struct AvailableDoc {
    name: String,
    version: String,
    release: u64,
    build_release: u64,
    summary: String,
    /// The repository's id.
    repository: String,
    /// Its priority when it was updated; higher wins.
    priority: u64,
    /// Where the stone is downloaded from.
    uri: Option<String>,
    /// The stone's sha256, which is also its package id once fetched.
    sha256: Option<String>,
    /// The stone's size in bytes.
    size: Option<u64>,
}

/// Every repository's offer of the package `name`, best first, as `info --json` shows them.
pub(crate) fn available_docs(db: &Db, name: &str) -> Result<Vec<AvailableDoc>> {
    let offers = db.read()?.available(name)?;
    Ok(offers.iter().map(AvailableDoc::new).collect())
}

impl AvailableDoc {
    fn new(item: &Available) -> AvailableDoc {
        let meta = &item.meta;
        AvailableDoc {
            name: meta.name.clone(),
            version: meta.version.clone(),
            release: meta.release,
            build_release: meta.build_release,
            summary: meta.summary.clone(),
            repository: item.repo.clone(),
            priority: item.priority,
            uri: meta.uri.clone(),
            sha256: meta.hash.clone(),
            size: meta.size,
        }
    }
}

/// `search --json`: the matches among the installed packages and among the offers.
#[derive(Debug, Default, serde::Serialize)]
struct SearchDoc {
    /// As `list installed --json` has them.
    installed: Vec<super::documents::Package>,
    /// As `list available --json` has them.
    available: Vec<AvailableDoc>,
}

/// One row of `repo list --json`.
#[derive(Debug, serde::Serialize)]
struct RepoDoc {
    id: String,
    description: String,
    priority: u64,
    enabled: bool,
    /// The stone.index URI, or the root index's base URI.
    uri: String,
    /// For a repository published with histories: which one it follows.
    root_index: Option<RootIndexDoc>,
    /// The Ed25519 public key (hex) its checksum files must be signed with.
    key: Option<String>,
    /// The file it is configured in.
    config: serde_json::Value,
    /// What the last update accepted; null if it was never updated.
    last_update: Option<SeenDoc>,
}

#[derive(Debug, serde::Serialize)]
struct RootIndexDoc {
    channel: String,
    version: String,
    arch: String,
}

#[derive(Debug, serde::Serialize)]
struct SeenDoc {
    /// The checksum file's version: its publishing time, in seconds.
    version: u64,
    expires: u64,
    expires_utc: String,
    refreshed: u64,
    refreshed_utc: String,
    /// Whether the checksum file was signed by the configured key.
    signed: bool,
    /// The index's size in bytes.
    index_size: u64,
}

impl RepoDoc {
    fn new(repo: &Repo, seen: Option<mossfs_db::RepoSeen>) -> RepoDoc {
        let (uri, root_index) = match &repo.source {
            Source::Direct { uri } => (uri.clone(), None),
            Source::Root {
                base_uri,
                channel,
                version,
                arch,
            } => (
                base_uri.clone(),
                Some(RootIndexDoc {
                    channel: channel.clone(),
                    version: version.clone(),
                    arch: arch.clone(),
                }),
            ),
        };
        let utc = mossfs_repo::utc_time;
        RepoDoc {
            id: repo.id.clone(),
            description: repo.description.clone(),
            priority: repo.priority,
            enabled: repo.active,
            uri,
            root_index,
            key: repo.key.clone(),
            config: quote::json(repo.origin.as_os_str().as_bytes()),
            last_update: seen.map(|s| SeenDoc {
                version: s.version,
                expires: s.expires,
                expires_utc: utc(s.expires),
                refreshed: s.refreshed,
                refreshed_utc: utc(s.refreshed),
                signed: s.signed,
                index_size: s.size,
            }),
        }
    }
}
