//! The real `mossfs` binary, for end-to-end tests and benchmarks.
//!
//! Cargo sets `CARGO_BIN_EXE_<name>` only in the package that defines the binary, and
//! `cargo test -p mossfs-integration` does not build other packages' binaries. So the first
//! call to [`mossfs_bin`] runs `cargo build -p mossfs-cli --bin mossfs` once per process,
//! with the profile and target directory of the running test or bench executable (found
//! from its own path, `<target>/<profile>/deps/<name>-<hash>`), and returns
//! `<target>/<profile>/mossfs`. Cargo releases its build lock before it runs tests, so the
//! nested build does not wait on the outer one; when the binary is fresh it costs a
//! fraction of a second. `cargo test --target <triple>` layouts are not supported.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The path of a freshly built `mossfs`, built on first use.
pub fn mossfs_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(build).clone()
}

/// A `Command` for the real binary.
pub fn mossfs() -> Command {
    Command::new(mossfs_bin())
}

fn build() -> PathBuf {
    let exe = std::env::current_exe().expect("the running executable has a path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executables live in <target>/<profile>/deps");
    let target_dir = profile_dir
        .parent()
        .expect("a profile directory lives in the target directory");
    let profile = profile_dir
        .file_name()
        .and_then(|name| name.to_str())
        .expect("profile directories have UTF-8 names");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "--quiet",
            "--package",
            "mossfs-cli",
            "--bin",
            "mossfs",
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    match profile {
        "debug" => {}
        // `cargo bench` builds with the bench profile, which inherits release and shares
        // its directory.
        "release" => {
            command.arg("--release");
        }
        custom => {
            command.args(["--profile", custom]);
        }
    }
    let status = command.status().expect("cargo can be run");
    assert!(status.success(), "building mossfs failed: {status}");
    profile_dir.join("mossfs")
}
