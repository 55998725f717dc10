//! `mossfs`: the command line. This file only parses the arguments and dispatches to one
//! module per command; each command returns `Result<(), CliError>`, and [`error::report`]
//! turns a failure into the one line people see.
//!
//! The binary is the only place in mossfs that prints, parses arguments or picks exit
//! codes (DESIGN.md §2). Commands write to the `out` they are given, so that `demo` can run
//! them in sequence and a closed pipe ends the run quietly.

mod commands;
mod demo;
mod engine;
mod error;
mod extract;
mod inspect;
mod pack;
mod units;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::CliError;

/// mossfs: a transactional, content-addressed system-root manager for `.stone` packages.
#[derive(Debug, Parser)]
#[command(name = "mossfs", version)]
struct Cli {
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
    /// Pack, inspect and extract a built-in sample tree in a throwaway sandbox.
    Demo(demo::Args),
    /// Install local stones into a root: record a state and commit it (or --stage it).
    Install(commands::install::InstallArgs),
    /// Remove packages by name: record a state without them and commit it.
    Remove(commands::install::RemoveArgs),
    /// Commit a candidate state: blit it to staging and swap /usr atomically.
    Commit(commands::install::CommitArgs),
    /// Inspect and manage recorded states.
    #[command(subcommand)]
    State(commands::state::StateCommand),
    /// List packages.
    #[command(subcommand)]
    List(commands::query::ListCommand),
    /// Show an installed package's metadata and, with --files, its files.
    Info(commands::query::InfoArgs),
    /// Tell which package ships a path.
    Owner(commands::query::OwnerArgs),
    /// Re-hash every asset and check the active tree; --repair mends what is found.
    Verify(commands::verify::VerifyArgs),
    /// Remove packages, trees, assets and cached stones that no state references.
    Gc(commands::gc::GcArgs),
    /// Serve any state read-only through FUSE: the active one, an old one, or a candidate.
    Mount(commands::mount::MountArgs),
    /// Unmount a mossfs mount, even one whose server died.
    Umount(commands::mount::UmountArgs),
    /// Publish a repository: index the stones under DIR into a (signed) stone.index.
    Index(commands::repo::IndexArgs),
    /// Make an Ed25519 key pair for signing repository indexes.
    Keygen(commands::repo::KeygenArgs),
    /// Add, list, remove, enable, disable and update repositories.
    #[command(subcommand)]
    Repo(commands::repo::RepoCommand),
    /// Search installed and available packages by name and summary, or by provider.
    Search(commands::repo::SearchArgs),
    /// Download stones from the repositories into the stone cache (or -o DIR).
    Fetch(commands::repo::FetchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = io::BufWriter::new(io::stdout().lock());
    let result = match &cli.command {
        Command::Inspect(args) => inspect::run(args, &mut out),
        Command::Pack(args) => pack::run(args, &mut out),
        Command::Extract(args) => extract::run(args, &mut out),
        Command::Demo(args) => demo::run(args, &mut out),
        Command::Install(args) => {
            commands::install::install(args, &mut out).map_err(CliError::from)
        }
        Command::Remove(args) => commands::install::remove(args, &mut out).map_err(CliError::from),
        Command::Commit(args) => commands::install::commit(args, &mut out).map_err(CliError::from),
        Command::State(command) => commands::state::run(command, &mut out).map_err(CliError::from),
        Command::List(command) => commands::query::list(command, &mut out),
        Command::Info(args) => commands::query::info(args, &mut out),
        Command::Owner(args) => commands::query::owner(args, &mut out).map_err(CliError::from),
        Command::Verify(args) => commands::verify::verify(args, &mut out).map_err(CliError::from),
        Command::Gc(args) => commands::gc::gc(args, &mut out).map_err(CliError::from),
        Command::Mount(args) => commands::mount::mount(args, &mut out).map_err(CliError::from),
        Command::Umount(args) => commands::mount::umount(args, &mut out).map_err(CliError::from),
        Command::Index(args) => commands::repo::index(args, &mut out),
        Command::Keygen(args) => commands::repo::keygen(args, &mut out),
        Command::Repo(command) => commands::repo::repo(command, &mut out),
        Command::Search(args) => commands::repo::search(args, &mut out),
        Command::Fetch(args) => commands::repo::fetch(args, &mut out),
    }
    .and_then(|()| out.flush().map_err(CliError::Output));
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
