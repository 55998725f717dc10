//! `mossfs`: the command line. This file only parses the arguments and dispatches to one
//! module per command; each command returns `Result<(), CliError>`, and [`error::report`]
//! turns a failure into the one line people see.
//!
//! The binary is the only place in mossfs that prints, parses arguments or picks exit
//! codes (DESIGN.md §2). Commands write to the `out` they are given, so that `demo` can run
//! them in sequence and a closed pipe ends the run quietly.

mod commands;
mod delta;
mod demo;
mod docs;
mod engine;
mod error;
mod extract;
mod inspect;
mod pack;
mod progress;
mod quote;
mod ui;
mod units;
mod version;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::error::CliError;

/// mossfs: a transactional, content-addressed system-root manager for `.stone` packages.
///
/// Global options (`--root/-D`, `--json`, `-v`, `--log`, `-y`) go before or after the
/// subcommand alike; moss's short verbs (`it`, `rm`, `li`, `sf`, ...) work too.
#[derive(Debug, Parser)]
#[command(name = "mossfs", version)]
struct Cli {
    /// Flattened here as well as in each root command, so that it may come first.
    #[command(flatten)]
    root: commands::RootArg,
    #[command(flatten)]
    globals: ui::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show a stone's header, payloads, meta and layout; --check verifies every byte.
    Inspect(inspect::Args),
    /// Build a stone from a directory that plays the role of /usr.
    Pack(Box<pack::Args>),
    /// Unpack stones into a plain directory, refusing anything that would leave it.
    Extract(extract::Args),
    /// Make a delta stone that rebuilds NEW's files from OLD's, one file at a time.
    Delta(Box<delta::Args>),
    /// Pack, inspect and extract a built-in sample tree in a throwaway sandbox.
    Demo(demo::Args),
    /// Install local stones, or packages by name or provider, into a root: record a state and commit it (or --stage it).
    #[command(visible_alias = "it")]
    Install(commands::install::InstallArgs),
    /// Remove packages by name: record a state without them and commit it.
    #[command(visible_alias = "rm")]
    Remove(commands::install::RemoveArgs),
    /// Move every installed package to its best candidate in the repositories, and drop
    /// the packages nothing needs any more.
    #[command(visible_alias = "up")]
    Sync(commands::install::SyncArgs),
    /// Commit a candidate state: blit it to staging and swap /usr atomically.
    Commit(commands::install::CommitArgs),
    /// Inspect and manage recorded states.
    #[command(subcommand)]
    State(commands::state::StateCommand),
    /// List packages.
    #[command(subcommand)]
    List(commands::query::ListCommand),
    /// `list installed`, as moss users type it.
    #[command(name = "li", hide = true)]
    Li(commands::query::ListInstalledArgs),
    /// `list available`, as moss users type it.
    #[command(name = "la", hide = true)]
    La(commands::query::ListAvailableArgs),
    /// `list sync`, as moss users type it.
    #[command(name = "ls", hide = true)]
    Ls(commands::query::ListSyncArgs),
    /// Show an installed package's metadata and, with --files, its files.
    Info(commands::query::InfoArgs),
    /// Tell which package ships a path.
    Owner(commands::query::OwnerArgs),
    /// List the installed paths that contain PATTERN, with their packages.
    #[command(visible_alias = "sf")]
    SearchFile(commands::search_file::SearchFileArgs),
    /// Re-hash every asset and check the active tree; --repair mends what is found.
    Verify(commands::verify::VerifyArgs),
    /// Remove packages, trees, assets and cached stones that no state references.
    Gc(commands::gc::GcArgs),
    /// Serve any state read-only through FUSE: the active one, an old one, or a candidate.
    Mount(commands::mount::MountArgs),
    /// Unmount a mossfs mount, even one whose server died.
    Umount(commands::mount::UmountArgs),
    /// Run system triggers again, or one command in the trigger container.
    #[command(subcommand)]
    Triggers(commands::triggers::TriggersCommand),
    /// Print the version; --full adds the commit, compiler, target and features.
    Version(version::Args),
    /// Print a shell completion script: `source <(mossfs completions bash)`.
    Completions(docs::CompletionsArgs),
    /// Write man pages (mossfs.1 and one per subcommand) to a directory.
    Man(docs::ManArgs),
    /// Publish a repository: index the stones under DIR into a (signed) stone.index.
    #[command(visible_alias = "ix")]
    Index(commands::repo::IndexArgs),
    /// Make an Ed25519 key pair for signing repository indexes.
    Keygen(commands::repo::KeygenArgs),
    /// Add, list, remove, enable, disable and update repositories.
    #[command(subcommand)]
    Repo(commands::repo::RepoCommand),
    /// Search installed and available packages by name and summary, or by provider.
    #[command(visible_alias = "sr")]
    Search(commands::repo::SearchArgs),
    /// Download stones from the repositories into the stone cache (or -o DIR).
    #[command(visible_alias = "fe")]
    Fetch(commands::repo::FetchArgs),
}

impl Command {
    /// Whether the command has a `--json` document (README.md "Output for scripts").
    fn speaks_json(&self) -> bool {
        !matches!(
            self,
            Command::Pack(_)
                | Command::Extract(_)
                | Command::Delta(_)
                | Command::Demo(_)
                | Command::Verify(_)
                | Command::Gc(_)
                | Command::Mount(_)
                | Command::Umount(_)
                | Command::Triggers(_)
                | Command::Completions(_)
                | Command::Man(_)
                | Command::Index(_)
                | Command::Keygen(_)
                | Command::Repo(commands::repo::RepoCommand::Add { .. })
                | Command::Repo(commands::repo::RepoCommand::Remove { .. })
                | Command::Repo(commands::repo::RepoCommand::Enable { .. })
                | Command::Repo(commands::repo::RepoCommand::Disable { .. })
                | Command::Repo(commands::repo::RepoCommand::Update { .. })
                | Command::Fetch(_)
        )
    }

    /// The command with moss's two-word shorthands spelled out (`li` is `list installed`,
    /// `la` is `list available`),
    /// so that each command has one form from here on.
    fn canonical(self) -> Command {
        match self {
            Command::Li(args) => Command::List(commands::query::ListCommand::Installed(args)),
            Command::La(args) => Command::List(commands::query::ListCommand::Available(args)),
            Command::Ls(args) => Command::List(commands::query::ListCommand::Sync(args)),
            other => other,
        }
    }
}

fn main() -> ExitCode {
    // The trigger container's helpers are this binary, started again (DESIGN.md §10).
    if let Some(code) = mossfs_triggers::helper_main() {
        return code;
    }
    ui::start_clock();
    let cli = Cli::parse();
    ui::set(cli.globals.clone());
    let command = cli.command.canonical();
    let mut out = io::BufWriter::new(io::stdout().lock());
    if cli.globals.json && !command.speaks_json() {
        // Text on stdout would break the promise of --json; clap's usage error exits 2.
        Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                "this command has no --json output; see 'Output for scripts' in README.md",
            )
            .exit();
    }
    let result = ui::init_logging()
        .map_err(CliError::from)
        .and_then(|()| run(&command, &mut out))
        .and_then(|()| out.flush().map_err(CliError::Output));
    ui::finish();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.is_broken_pipe() => ExitCode::SUCCESS,
        Err(err) => {
            // Whatever was printed before the failure still belongs on screen.
            let _ = out.flush();
            let _ = writeln!(io::stderr(), "{}", error::report(&err));
            ExitCode::FAILURE
        }
    }
}

/// Runs the command that `words` spell, as typed after `mossfs`: how the demo runs the
/// commands it shows, through the same parser and dispatch as a person's.
fn run_words(words: &[&std::ffi::OsStr], out: &mut dyn Write) -> Result<(), CliError> {
    let argv = std::iter::once(std::ffi::OsStr::new("mossfs")).chain(words.iter().copied());
    let cli = Cli::try_parse_from(argv).map_err(|e| CliError::DemoCommand(e.to_string()))?;
    run(&cli.command.canonical(), out)
}

/// Runs one command, writing its output to `out`.
fn run(command: &Command, out: &mut dyn Write) -> Result<(), CliError> {
    match command {
        Command::Inspect(args) => inspect::run(args, out),
        Command::Pack(args) => pack::run(args, out),
        Command::Extract(args) => extract::run(args, out),
        Command::Delta(args) => delta::run(args, out),
        Command::Demo(args) => demo::run(args, out),
        Command::Install(args) => commands::install::install(args, out).map_err(CliError::from),
        Command::Remove(args) => commands::install::remove(args, out).map_err(CliError::from),
        Command::Sync(args) => {
            if args.update && !args.change.dry_run {
                commands::repo::repo(
                    &commands::repo::RepoCommand::Update {
                        name: None,
                        root: args.change.root.clone(),
                    },
                    out,
                )?;
            }
            commands::install::sync(args, out).map_err(CliError::from)
        }
        Command::Commit(args) => commands::install::commit(args, out).map_err(CliError::from),
        Command::State(command) => commands::state::run(command, out).map_err(CliError::from),
        Command::List(command) => commands::query::list(command, out),
        Command::Info(args) => commands::query::info(args, out),
        Command::Owner(args) => commands::query::owner(args, out).map_err(CliError::from),
        Command::SearchFile(args) => {
            commands::search_file::search_file(args, out).map_err(CliError::from)
        }
        Command::Verify(args) => commands::verify::verify(args, out).map_err(CliError::from),
        Command::Gc(args) => commands::gc::gc(args, out).map_err(CliError::from),
        Command::Mount(args) => commands::mount::mount(args, out).map_err(CliError::from),
        Command::Umount(args) => commands::mount::umount(args, out).map_err(CliError::from),
        Command::Triggers(command) => commands::triggers::run(command, out).map_err(CliError::from),
        Command::Version(args) => version::run(args, out).map_err(CliError::from),
        Command::Completions(args) => {
            docs::completions(Cli::command(), args, out);
            Ok(())
        }
        Command::Man(args) => docs::man(Cli::command(), args, out),
        Command::Index(args) => commands::repo::index(args, out),
        Command::Keygen(args) => commands::repo::keygen(args, out),
        Command::Repo(command) => commands::repo::repo(command, out),
        Command::Search(args) => commands::repo::search(args, out),
        Command::Fetch(args) => commands::repo::fetch(args, out),
        Command::Li(_) | Command::La(_) | Command::Ls(_) => {
            unreachable!("canonical() spells `li`, `la` and `ls` out")
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::Cli;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn a_trigger_timeout_outside_a_second_to_a_week_is_refused() {
        let words = |t: &'static str| ["mossfs", "triggers", "run", "--trigger-timeout", t];
        for bad in ["0", "604801", "18446744073709551615", "-1"] {
            assert!(Cli::try_parse_from(words(bad)).is_err(), "{bad}");
        }
        for good in ["1", "604800"] {
            assert!(Cli::try_parse_from(words(good)).is_ok(), "{good}");
        }
    }

    /// Parses `words` (without the program name) and returns the root, the global flags and
    /// the canonical command, as text that two equivalent command lines share.
    fn parse(words: &[&str]) -> String {
        let cli = Cli::try_parse_from(std::iter::once("mossfs").chain(words.iter().copied()))
            .unwrap_or_else(|e| panic!("{words:?} does not parse: {e}"));
        format!(
            "{:?} {:?} {:?}",
            cli.root,
            cli.globals,
            cli.command.canonical()
        )
    }

    /// Every command, with its own arguments, as a list of words.
    const COMMANDS: &[&[&str]] = &[
        &["install", "a.stone", "--stage"],
        &["remove", "nano", "--dry-run"],
        &["commit", "3"],
        &["state", "list"],
        &["state", "active"],
        &["state", "show", "2"],
        &["state", "diff", "1", "2"],
        &["state", "activate", "1"],
        &["state", "prune", "--keep", "2"],
        &["state", "remove", "1", "2"],
        &["list", "installed"],
        &["info", "nano", "--files"],
        &["owner", "/usr/bin/nano"],
        &["search-file", "bin/nano"],
        &["verify"],
        &["gc"],
        &["mount", "--state", "2", "/mnt"],
        &["umount", "/mnt"],
        &["triggers", "run", "--trigger-timeout", "5"],
        &["inspect", "a.stone"],
        &["extract", "a.stone", "-o", "out"],
        &["delta", "a.stone", "b.stone", "-o", "d.stone"],
        &[
            "pack",
            "dir",
            "-o",
            "out.stone",
            "--name",
            "x",
            "--version",
            "1",
        ],
        &["demo"],
        &["version", "--full"],
        &["completions", "fish"],
        &["man", "pages"],
        &["index", "repo", "-o", "out", "--sign", "k.key"],
        &["keygen", "keys/main"],
        &[
            "repo",
            "add",
            "main",
            "file:///srv/stone.index",
            "--priority",
            "3",
        ],
        &["repo", "list"],
        &["repo", "remove", "main"],
        &["repo", "enable", "main"],
        &["repo", "disable", "main"],
        &["repo", "update", "main"],
        &["list", "available"],
        &["search", "nano", "--provides=binary"],
        &["fetch", "nano", "-o", "out", "--jobs", "2"],
    ];

    #[test]
    fn root_is_accepted_before_and_after_every_command_in_every_spelling() {
        for command in COMMANDS {
            let after: Vec<&str> = command.iter().copied().chain(["--root", "/r"]).collect();
            let expected = parse(&after);
            assert!(expected.contains("root: \"/r\""), "{expected}");
            for root in [
                &["--root", "/r"][..],
                &["--root=/r"],
                &["-D", "/r"],
                &["-D/r"],
                &["--directory", "/r"],
                &["--directory=/r"],
            ] {
                let before: Vec<&str> = root.iter().chain(command.iter()).copied().collect();
                assert_eq!(parse(&before), expected, "{before:?}");
                let after: Vec<&str> = command.iter().chain(root.iter()).copied().collect();
                assert_eq!(parse(&after), expected, "{after:?}");
            }
            // Between a nested command's two words, too.
            if command.len() > 1 && matches!(command[0], "state" | "list" | "triggers" | "repo") {
                let mut between = vec![command[0], "-D", "/r"];
                between.extend(&command[1..]);
                assert_eq!(parse(&between), expected, "{between:?}");
            }
        }
    }

    #[test]
    fn global_flags_mean_the_same_before_and_after_the_command() {
        for command in COMMANDS {
            let flags = ["--json", "-v", "-y", "--log", "debug"];
            let before: Vec<&str> = flags.iter().chain(command.iter()).copied().collect();
            let after: Vec<&str> = command.iter().chain(flags.iter()).copied().collect();
            assert_eq!(parse(&before), parse(&after), "{command:?}");
            let long: Vec<&str> = ["--verbose", "--yes-all", "--json", "--log=debug"]
                .iter()
                .chain(command.iter())
                .copied()
                .collect();
            assert_eq!(parse(&long), parse(&after), "{command:?}");
            assert!(parse(&after).contains("json: true, verbose: true"));
        }
    }

    #[test]
    fn moss_short_verbs_are_the_long_ones() {
        for (short, long) in [
            (
                &["it", "a.stone", "b.stone"][..],
                &["install", "a.stone", "b.stone"][..],
            ),
            (&["rm", "nano"], &["remove", "nano"]),
            (&["li"], &["list", "installed"]),
            (&["li", "--explicit"], &["list", "installed", "-e"]),
            (&["list", "li"], &["list", "installed"]),
            (&["sf", "bin/nano"], &["search-file", "bin/nano"]),
            (&["la"], &["list", "available"]),
            (&["list", "la"], &["list", "available"]),
            (&["ls"], &["list", "sync"]),
            (&["list", "ls"], &["list", "sync"]),
            (&["up", "-u"], &["sync", "--update"]),
            (
                &["sr", "nano", "--provides"],
                &["search", "nano", "--provides"],
            ),
            (
                &["fe", "nano", "-o", "out"],
                &["fetch", "nano", "-o", "out"],
            ),
            (
                &["ix", "repo", "--sign", "k.key"],
                &["index", "repo", "--sign", "k.key"],
            ),
            (
                &["repo", "ar", "main", "file:///srv/stone.index"],
                &["repo", "add", "main", "file:///srv/stone.index"],
            ),
            (&["repo", "lr"], &["repo", "list"]),
            (&["repo", "rr", "main"], &["repo", "remove", "main"]),
            (&["repo", "ur"], &["repo", "update"]),
            (&["repo", "ur", "main"], &["repo", "update", "main"]),
            (&["repo", "er", "main"], &["repo", "enable", "main"]),
            (&["repo", "dr", "main"], &["repo", "disable", "main"]),
        ] {
            assert_eq!(parse(short), parse(long), "{short:?}");
            let rooted: Vec<&str> = ["-D", "/r"].iter().chain(short.iter()).copied().collect();
            let long_rooted: Vec<&str> = long
                .iter()
                .chain(["--root", "/r"].iter())
                .copied()
                .collect();
            assert_eq!(parse(&rooted), parse(&long_rooted), "{short:?}");
        }
    }

    #[test]
    fn an_alias_is_not_taken_for_an_argument() {
        // `rm` as a package name stays a package name.
        let text = parse(&["remove", "rm"]);
        assert!(text.contains("names: [\"rm\"]"), "{text}");
        let text = parse(&["info", "li"]);
        assert!(text.contains("name: \"li\""), "{text}");
        let text = parse(&["fetch", "fe", "sr"]);
        assert!(text.contains("names: [\"fe\", \"sr\"]"), "{text}");
        let text = parse(&["repo", "add", "ar", "file:///srv/stone.index"]);
        assert!(text.contains("name: \"ar\""), "{text}");
    }
}
