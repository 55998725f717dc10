//! `mossfs completions SHELL` and `mossfs man DIR`: shell completions and man pages,
//! generated from the same clap definitions as the parser, so they can never disagree with
//! it. CI generates both and checks them (`bash -n`, `fish -n`, `man -l`).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::Command;
use clap_complete::Shell;

/// Arguments of `mossfs completions`.
#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    pub shell: Shell,
}

/// Arguments of `mossfs man`.
#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// The directory to write the pages to; created if missing.
    #[arg(value_hint = clap::ValueHint::DirPath)]
    pub dir: PathBuf,
}

/// Why the man pages could not be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the man page {}", .path.display())]
pub struct ManError {
    /// The page or its directory.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// Prints the completion script for `args.shell`.
pub fn completions(mut command: Command, args: &CompletionsArgs, out: &mut dyn Write) {
    let name = command.get_name().to_owned();
    clap_complete::generate(args.shell, &mut command, name, out);
}

/// Writes `mossfs.1` and one page per subcommand, nested ones named by their path
/// (`mossfs-state-list.1`), and prints each file written. Hidden commands get none.
pub fn man(
    command: Command,
    args: &ManArgs,
    out: &mut dyn Write,
) -> Result<(), crate::error::CliError> {
    std::fs::create_dir_all(&args.dir).map_err(|source| ManError {
        path: args.dir.clone(),
        source,
    })?;
    let mut command = command;
    command.build();
    write_pages(&command, &args.dir, command.get_name(), out)
}

fn write_pages(
    command: &Command,
    dir: &Path,
    name: &str,
    out: &mut dyn Write,
) -> Result<(), crate::error::CliError> {
    let path = dir.join(format!("{name}.1"));
    let mut page = Vec::new();
    // The page's title is the full name, so `man mossfs-state-list` finds itself.
    let titled = command.clone().name(name.to_owned());
    clap_mangen::Man::new(titled)
        .render(&mut page)
        .and_then(|()| std::fs::write(&path, &page))
        .map_err(|source| ManError {
            path: path.clone(),
            source,
        })?;
    writeln!(out, "{}", path.display())?;
    for sub in command.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        write_pages(sub, dir, &format!("{name}-{}", sub.get_name()), out)?;
    }
    Ok(())
}
