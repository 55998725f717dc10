//! The container's root, built step by step inside "init", each step failing alone with
//! its own name (as youki's `rootfs/mount.rs` and bubblewrap do).

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;

use rustix::fs::Mode;
use rustix::mount::{MountFlags, MountPropagationFlags, UnmountFlags};

use super::helper::Spec;

/// Devices bound into the container's `/dev`.
const DEVICES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];

/// Root links made inside the container, as on a managed root.
const ROOT_LINKS: [(&str, &str); 4] = [
    ("bin", "usr/bin"),
    ("sbin", "usr/sbin"),
    ("lib", "usr/lib"),
    ("lib64", "usr/lib"),
];

pub(super) fn build_root(spec: &Spec) -> Result<(), String> {
    let iso = &spec.isolation;
    let at = |rel: &str| iso.join(rel);
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(step("make the mount tree private"))?;
    rustix::mount::mount(
        "mossfs",
        iso,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        Some(c"mode=0755,size=4m"),
    )
    .map_err(step("mount the root tmpfs"))?;
    for dir in ["usr", "etc", "proc", "tmp", "dev"] {
        rustix::fs::mkdir(at(dir), Mode::from_raw_mode(0o755))
            .map_err(step("create a root folder"))?;
    }
    for (name, target) in ROOT_LINKS {
        rustix::fs::symlink(target, at(name)).map_err(step("create a root link"))?;
    }
    match spec.usr_mode.as_str() {
        "overlay" => {
            let [lower, upper, work] = &spec.usr;
            let mut data = OsString::from("lowerdir=");
            data.push(lower);
            data.push(",upperdir=");
            data.push(upper);
            data.push(",workdir=");
            data.push(work);
            data.push(",redirect_dir=off,index=off,metacopy=off,xino=off");
            let data = std::ffi::CString::new(data.as_bytes())
                .map_err(|_| "setup mount the /usr overlay: a path holds a NUL byte".to_owned())?;
            rustix::mount::mount(
                "overlay",
                at("usr"),
                "overlay",
                MountFlags::empty(),
                Some(data.as_c_str()),
            )
            .map_err(step("mount the /usr overlay"))?;
        }
        _ => {
            rustix::mount::mount_bind(&spec.usr[0], at("usr")).map_err(step("bind /usr"))?;
            rustix::mount::mount_remount(
                at("usr"),
                MountFlags::BIND | MountFlags::RDONLY | MountFlags::NODEV,
                "",
            )
            .map_err(step("make /usr read-only"))?;
        }
    }
    if spec.etc.is_dir() {
        rustix::mount::mount_bind(&spec.etc, at("etc")).map_err(step("bind /etc"))?;
        if !spec.etc_writable {
            rustix::mount::mount_remount(
                at("etc"),
                MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
                "",
            )
            .map_err(step("make /etc read-only"))?;
        }
    }
    rustix::mount::mount(
        "proc",
        at("proc"),
        "proc",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        None,
    )
    .map_err(step("mount /proc"))?;
    for rel in ["proc/sys", "proc/sysrq-trigger"] {
        // A kernel without magic SysRq has no sysrq-trigger.
        if !at(rel).exists() {
            continue;
        }
        rustix::mount::mount_bind(at(rel), at(rel)).map_err(step("bind /proc/sys"))?;
        rustix::mount::mount_remount(
            at(rel),
            MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
            "",
        )
        .map_err(step("make /proc/sys read-only"))?;
    }
    rustix::mount::mount(
        "tmpfs",
        at("tmp"),
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        Some(c"mode=1777"),
    )
    .map_err(step("mount /tmp"))?;
    rustix::mount::mount(
        "tmpfs",
        at("dev"),
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NOEXEC,
        Some(c"mode=0755,size=64k"),
    )
    .map_err(step("mount /dev"))?;
    for dev in DEVICES {
        let target = at(&format!("dev/{dev}"));
        File::create(&target).map_err(|e| format!("setup create /dev/{dev}: {e}"))?;
        rustix::mount::mount_bind(format!("/dev/{dev}"), &target).map_err(step("bind a device"))?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        rustix::fs::symlink(target, at(&format!("dev/{name}")))
            .map_err(step("create a /dev link"))?;
    }
    rustix::system::sethostname(b"mossfs-trigger").map_err(step("set the host name"))?;
    rustix::process::chdir(iso).map_err(step("enter the new root"))?;
    rustix::process::pivot_root(".", ".").map_err(step("pivot_root"))?;
    rustix::mount::unmount(".", UnmountFlags::DETACH).map_err(step("detach the host root"))?;
    rustix::process::chdir("/").map_err(step("enter /"))?;
    rustix::mount::mount_remount(
        "/",
        MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV,
        "",
    )
    .map_err(step("make the root read-only"))?;
    Ok(())
}

/// Capabilities the trigger must not have: each could undo or see past the container.
pub(super) fn drop_capabilities() -> rustix::io::Result<()> {
    use rustix::thread::CapabilitySet as C;
    for cap in [
        C::SYS_ADMIN,
        C::MKNOD,
        C::SYS_MODULE,
        C::SYS_RAWIO,
        C::SYS_PTRACE,
        C::SYS_TIME,
        C::SYS_BOOT,
        C::NET_ADMIN,
    ] {
        rustix::thread::remove_capability_from_bounding_set(cap)?;
    }
    Ok(())
}

/// Names a failed step for the status line.
fn step(what: &str) -> impl Fn(rustix::io::Errno) -> String + '_ {
    move |e| format!("setup {what}: {e}")
}
