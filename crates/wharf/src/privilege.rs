//! Giving up root: started as root, `wharf serve` binds its listeners, then switches to the
//! unprivileged `run_as` user (default `nobody`) for the rest of its life — before the runtime
//! starts any thread, so that the switch holds for the whole process.

use wharf_server::ConfigError;

/// What became of the process's privileges.
pub enum Outcome {
    /// It was not root: nothing to give up.
    NotRoot,
    /// `allow_root`: it stays root.
    StayedRoot,
    Switched {
        user: String,
        uid: u32,
        gid: u32,
    },
}

/// The name of the user with `uid`, from `/etc/passwd`.
pub fn name_of(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        let (user, _, id) = (f.next()?, f.next()?, f.next()?);
        (id.parse::<u32>().ok()? == uid).then(|| user.to_string())
    })
}

/// Makes `path` private to `owner` when this process is root (a file the server will use as
/// that user: its key, its database); otherwise it stays the caller's. Mode 0600 for a file,
/// 0700 for a directory, either way.
pub fn make_private(path: &std::path::Path, owner: &str) -> Result<(), String> {
    use rustix::fs::{Mode, OFlags};
    let fail = |e: rustix::io::Errno| format!("{}: {e}", path.display());
    // Through a descriptor, never following a symbolic link: as root, a link planted where
    // the file goes must not hand another file over.
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(fail)?;
    let st = rustix::fs::fstat(&fd).map_err(fail)?;
    let dir = rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory;
    let mode = if dir { 0o700 } else { 0o600 };
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(fail)?;
    if rustix::process::geteuid().is_root() {
        let (uid, gid) = lookup(owner).ok_or_else(|| {
            format!("no user `{owner}` in /etc/passwd (name the server's run_as user with --owner)")
        })?;
        rustix::fs::fchown(
            &fd,
            Some(rustix::process::Uid::from_raw(uid)),
            Some(rustix::process::Gid::from_raw(gid)),
        )
        .map_err(fail)?;
    }
    Ok(())
}

/// Who a file the server will use is given to, when made as root: `asked` (`--owner`), else
/// the owner of the directory it goes into when that is not root (a package's `wharf`, owner
/// of /var/lib/wharf), else `nobody` (the default `run_as`).
pub fn owner_for(dir: &std::path::Path, asked: Option<&str>) -> String {
    use std::os::unix::fs::MetadataExt;
    if let Some(a) = asked {
        return a.to_string();
    }
    std::fs::metadata(dir)
        .ok()
        .filter(|m| m.uid() != 0)
        .and_then(|m| name_of(m.uid()))
        .unwrap_or_else(|| "nobody".to_string())
}

/// A user's uid and gid from `/etc/passwd`.
fn lookup(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        let (user, _, uid, gid) = (f.next()?, f.next()?, f.next()?, f.next()?);
        (user == name).then_some(())?;
        Some((uid.parse().ok()?, gid.parse().ok()?))
    })
}

/// Threads of this process now (`/proc/self/status`).
fn threads() -> Option<u32> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Switches from root to `run_as`, unless the process is not root or `allow_root` is set. An
/// error (no such user, a `run_as` that is root itself, a switch that did not take) is a
/// configuration error: the server does not run.
pub fn drop_root(run_as: &str, allow_root: bool) -> Result<Outcome, ConfigError> {
    if !rustix::process::geteuid().is_root() {
        return Ok(Outcome::NotRoot);
    }
    // Installed setuid root, any local user could pick the options (allow_root, a config):
    // not supported.
    if !rustix::process::getuid().is_root() {
        return Err(ConfigError::new(
            "run_as",
            "wharf runs setuid root here (real user not root): start it as root, or as an unprivileged user with CAP_NET_BIND_SERVICE",
        ));
    }
    if allow_root {
        return Ok(Outcome::StayedRoot);
    }
    let (uid, gid) = lookup(run_as).ok_or_else(|| {
        ConfigError::new(
            "run_as",
            format!("no user `{run_as}` in /etc/passwd (create it, or name another with run_as / --run-as)"),
        )
    })?;
    if uid == 0 {
        return Err(ConfigError::new(
            "run_as",
            format!("`{run_as}` is root; to run as root, set allow_root = true (--allow-root)"),
        ));
    }
    // The raw calls change the calling thread only: with one thread, that is the process.
    if threads() != Some(1) {
        return Err(ConfigError::new(
            "run_as",
            "the process already has several threads; cannot give up root safely",
        ));
    }
    let fail = |what: &str, e: rustix::io::Errno| {
        ConfigError::new(
            "run_as",
            format!("cannot switch to `{run_as}` ({what}): {e}"),
        )
    };
    let g = rustix::process::Gid::from_raw(gid);
    let u = rustix::process::Uid::from_raw(uid);
    rustix::thread::set_thread_groups(&[g]).map_err(|e| fail("groups", e))?;
    rustix::thread::set_thread_res_gid(g, g, g).map_err(|e| fail("gid", e))?;
    rustix::thread::set_thread_res_uid(u, u, u).map_err(|e| fail("uid", e))?;
    // Root must be gone for good: getting it back must fail.
    if rustix::process::geteuid().is_root()
        || rustix::thread::set_thread_res_uid(
            rustix::process::Uid::ROOT,
            rustix::process::Uid::ROOT,
            rustix::process::Uid::ROOT,
        )
        .is_ok()
    {
        return Err(ConfigError::new(
            "run_as",
            "the switch away from root did not hold",
        ));
    }
    Ok(Outcome::Switched {
        user: run_as.to_string(),
        uid,
        gid,
    })
}
