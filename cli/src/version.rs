//! `mossfs version [--full]`: which mossfs this is, for bug reports and scripts.

use std::io::{self, Write};

use serde::Serialize;

/// Arguments of `mossfs version`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Also print the commit, the compiler, the target and the features compiled in.
    #[arg(long)]
    pub full: bool,
}

/// Everything `version --full` says, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct Version {
    /// The crate version.
    pub version: &'static str,
    /// The git commit it was built from (`-modified` when the tree had changes).
    pub commit: &'static str,
    /// `rustc --version` of the compiler.
    pub rustc: &'static str,
    /// The target triple.
    pub target: &'static str,
    /// The cargo profile (`debug` or `release`).
    pub profile: &'static str,
    /// What this build can do.
    pub features: Vec<&'static str>,
}

/// What this build can do, decided at compile time.
fn features() -> Vec<&'static str> {
    let mut features = vec![
        // Stones of format version 1, with zstd content (windows up to 2^31).
        "stone-v1",
        "zstd",
        // Every state mountable through FUSE; reads passed through to the store when the
        // kernel offers it.
        "fuse",
        "fuse-passthrough",
        // Commits swap /usr with renameat2(RENAME_EXCHANGE).
        "renameat2-exchange",
    ];
    if cfg!(debug_assertions) {
        features.push("debug-assertions");
    }
    features
}

/// The facts of this build.
pub fn current() -> Version {
    Version {
        version: env!("CARGO_PKG_VERSION"),
        commit: env!("MOSSFS_COMMIT"),
        rustc: env!("MOSSFS_RUSTC"),
        target: env!("MOSSFS_TARGET"),
        profile: env!("MOSSFS_PROFILE"),
        features: features(),
    }
}

/// Runs the command.
pub fn run(args: &Args, out: &mut dyn Write) -> io::Result<()> {
    let v = current();
    if crate::ui::json() {
        return crate::ui::print_json(out, &v);
    }
    if !args.full {
        return writeln!(out, "mossfs {} ({})", v.version, v.commit);
    }
    writeln!(out, "mossfs {}", v.version)?;
    writeln!(out, "commit    {}", v.commit)?;
    writeln!(out, "compiler  {}", v.rustc)?;
    writeln!(out, "target    {} ({})", v.target, v.profile)?;
    writeln!(out, "features  {}", v.features.join(" "))
}
