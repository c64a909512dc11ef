//! What `wharf serve` checks at start as the user it runs as (after the switch away from root),
//! and what it tells the admin: the server's own files where a client could have reached them,
//! a user database that user cannot write, homes of write-enabled users it cannot write, and
//! the summary of what is served.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use wharf_server::ConfigError;
use wharf_server::config::Settings;
use wharf_server::own_files::OwnFiles;

/// The name of the user this process runs as now.
pub fn current_user() -> String {
    let uid = rustix::process::geteuid().as_raw();
    crate::privilege::name_of(uid).unwrap_or_else(|| format!("uid {uid}"))
}

/// Whether this process may do `access` on `path` (its effective ids).
fn may(path: &Path, access: rustix::fs::Access) -> bool {
    rustix::fs::access(path, access).is_ok()
}

/// ACME's state directory (or, before it exists, the nearest directory above it) must be
/// writable by `user`: else no certificate could ever be kept, which the start says at once.
pub fn check_acme_state(settings: &Settings, user: &str) -> Result<(), ConfigError> {
    let Some(acme) = &settings.acme else {
        return Ok(());
    };
    let mut target = acme.state.as_path();
    while !target.exists() {
        match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => target = p,
            _ => {
                target = Path::new(".");
                break;
            }
        }
    }
    use rustix::fs::Access;
    if may(target, Access::WRITE_OK | Access::EXEC_OK) {
        return Ok(());
    }
    Err(ConfigError::new(
        "acme.state",
        format!(
            "`{}` cannot be written by `{user}`, the user the server runs as: no certificate could be kept (`mkdir -p {} && chown {user} {}`)",
            target.display(),
            acme.state.display(),
            acme.state.display()
        ),
    ))
}

/// The checks that stop the start (exit code 2): a SQLite user database, or the directory it
/// lives in, that `user` (this process) cannot write — SQLite writes its `-wal`/`-journal`
/// beside the file, so the directory must be writable too.
pub fn check_database(settings: &Settings, user: &str) -> Result<(), ConfigError> {
    let Some(db) = settings.sqlite_path() else {
        return Ok(());
    };
    let dir = match db.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    use rustix::fs::Access;
    let file_ok = !db.exists() || may(&db, Access::READ_OK | Access::WRITE_OK);
    let dir_ok = may(&dir, Access::WRITE_OK | Access::EXEC_OK);
    if file_ok && dir_ok {
        return Ok(());
    }
    let what = match (file_ok, dir_ok) {
        (false, true) => format!("`{}`", db.display()),
        (true, false) => format!("its directory `{}`", dir.display()),
        _ => format!("`{}` and its directory", db.display()),
    };
    Err(ConfigError::new(
        "users.db",
        format!(
            "the user database cannot be written by `{user}`, the user the server runs as: {what} (SQLite writes its -wal and -journal files beside the database). Fix: `chown {user} {} {}` (a directory of its own, such as /var/lib/wharf, is best), or set run_as to the database's owner",
            dir.display(),
            db.display()
        ),
    ))
}

/// Warnings said at start: the server's own files inside a served directory, its key or
/// database readable by others, homes of write-enabled users that `user` cannot write.
pub fn warnings(settings: &Settings, own: &OwnFiles, user: &str) -> Vec<String> {
    let mut out = Vec::new();
    if settings.storage.is_none() {
        let mut roots: Vec<PathBuf> = std::iter::once(&settings.root)
            .chain(settings.users.iter().map(|u| &u.home))
            .filter_map(|r| std::fs::canonicalize(r).ok())
            .collect();
        roots.sort();
        roots.dedup();
        for (f, root) in own.inside(&roots) {
            out.push(format!(
                "`{}` ({}) lies inside the served directory `{}`: no command reaches it and no listing shows it, but keep the server's files outside what it serves (e.g. in /etc/wharf or /var/lib/wharf)",
                f.path.display(),
                f.what,
                root.display()
            ));
        }
    }
    let me = rustix::process::geteuid().as_raw();
    let my_group = rustix::process::getegid().as_raw();
    let private = settings
        .tls
        .iter()
        .map(|t| (t.key.clone(), "the TLS private key"))
        .chain(settings.sqlite_path().map(|p| (p, "the user database")));
    for (path, what) in private {
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        // Others, or a group other than the server's own (root:wharf 0640 is fine).
        let group_reads = meta.mode() & 0o040 != 0 && meta.gid() != my_group;
        if meta.mode() & 0o007 != 0 || group_reads {
            out.push(format!(
                "`{}` ({what}) can be read by other users of this machine (mode {:o}): `chmod 600 {}`",
                path.display(),
                meta.mode() & 0o777,
                path.display()
            ));
        } else if meta.uid() != me && me != 0 {
            out.push(format!(
                "`{}` ({what}) belongs to another user than `{user}`, the user the server runs as: `chown {user} {}`",
                path.display(),
                path.display()
            ));
        }
    }
    if settings.storage.is_none() {
        let mut homes: Vec<(String, PathBuf)> = settings
            .users
            .iter()
            .filter(|u| u.permissions.write || u.permissions.mkdir)
            .map(|u| (format!("user `{}`", u.name), u.home.clone()))
            .collect();
        if let Some(a) = settings
            .anonymous
            .as_ref()
            .filter(|a| a.permissions.write || a.permissions.mkdir)
        {
            homes.push(("anonymous".to_string(), a.home.clone()));
        }
        for (who, home) in homes {
            if !may(
                &home,
                rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
            ) {
                out.push(format!(
                    "{who} may upload, but `{}` cannot be written by `{user}`, the user the server runs as: every upload there will fail with 550 (`chown {user} {}`, or give `{user}` write access)",
                    home.display(),
                    home.display()
                ));
            }
        }
    }
    out
}

/// What is served, said once at start after the listeners: whether anyone may write, the
/// passive range, where users come from.
pub fn summary(settings: &Settings) -> Vec<String> {
    let mut out = Vec::new();
    let writers: Vec<&str> = settings
        .users
        .iter()
        .filter(|u| u.permissions.write)
        .map(|u| u.name.as_str())
        .chain(
            settings
                .anonymous
                .iter()
                .filter(|a| a.permissions.write)
                .map(|_| "anonymous"),
        )
        .collect();
    out.push(match (writers.is_empty(), settings.users_db.is_some()) {
        (true, false) => "Access: read-only".to_string(),
        (true, true) => {
            "Access: read-only for the config's users; database users as their rows say".to_string()
        }
        (false, _) => format!("Access: uploads allowed for {}", writers.join(", ")),
    });
    let mut sources = Vec::new();
    if settings.anonymous.is_some() {
        sources.push("anonymous".to_string());
    }
    if !settings.users.is_empty() {
        sources.push(format!(
            "{} from the command line and config file",
            settings.users.len()
        ));
    }
    if let Some(db) = &settings.users_db {
        sources.push(format!(
            "the user database {}",
            wharf_server::userdb::redact(db)
        ));
    }
    if let Some(e) = &settings.auth.external {
        sources.push(match &e.target {
            wharf_server::identity::external::Target::Url(u) => format!("the auth hook {u}"),
            wharf_server::identity::external::Target::Command(c) => {
                format!("the auth hook `{}`", c.join(" "))
            }
        });
    }
    if let Some(l) = &settings.auth.ldap {
        sources.push(format!(
            "LDAP {}{}",
            l.url,
            if l.starttls { " (StartTLS)" } else { "" }
        ));
    }
    if !settings.auth.order.is_empty() {
        let order: Vec<&str> = settings.auth.order.iter().map(|k| k.name()).collect();
        sources.push(format!("asked in the order {}", order.join(", ")));
    }
    out.push(format!(
        "Users: {}",
        if sources.is_empty() {
            "none (nobody can log in)".to_string()
        } else {
            sources.join("; ")
        }
    ));
    let passive = match &settings.passive.ports {
        Some(r) => format!("ports {}-{}", r.start(), r.end()),
        None => "ports the kernel's ephemeral range offers".to_string(),
    };
    let announced = match &settings.passive.address {
        wharf_server::config::PassiveAddress::Local => String::new(),
        other => format!(", announced as {}", other.shown()),
    };
    out.push(format!(
        "Passive mode: {passive}{announced}, at most {} open per client address",
        settings.passive.max_per_address
    ));
    out.extend(hosts(settings));
    out
}

/// A line per virtual host: its names, and its certificate with the names it covers and when
/// it expires.
fn hosts(settings: &Settings) -> Vec<String> {
    use wharf_proto::x509::date;
    settings
        .hosts
        .iter()
        .map(|h| {
            let file = match (&h.cert, &settings.acme) {
                (Some((cert, _)), _) => Some(cert.clone()),
                (None, Some(a)) if h.acme => {
                    Some(wharf_server::acme::cert_files(&a.state, h.id()).0)
                }
                _ => None,
            };
            let validity = file.as_deref().and_then(wharf_server::acme::validity);
            let cert = match (h.acme, validity) {
                (true, Some((_, until))) => format!("ACME, expires {}", date(until)),
                (true, None) => "ACME, ordered now".to_string(),
                (false, Some((_, until))) => format!("its own, expires {}", date(until)),
                (false, None) if h.cert.is_some() => "its own (unreadable)".to_string(),
                (false, None) => "the default".to_string(),
            };
            format!(
                "Host {}: {} (root {}); certificate: {cert}",
                h.id(),
                h.names.join(", "),
                h.root.display()
            )
        })
        .collect()
}

/// The client command shown at start: a user when anonymous is off, and under required TLS
/// the certificate to trust (never a hint to skip the check).
pub fn example(settings: &Settings, first: &str) -> String {
    let mut cmd = String::from("curl");
    if let Some(t) = settings
        .tls
        .as_ref()
        .filter(|t| t.mode == wharf_server::tls::TlsMode::Required)
    {
        cmd.push_str(&format!(" --ssl-reqd --cacert {}", t.cert.display()));
    }
    if settings.anonymous.is_none() {
        let user = settings.users.first().map_or("USER", |u| u.name.as_str());
        cmd.push_str(&format!(" -u {user}"));
    }
    cmd.push_str(&format!(" ftp://{first}/"));
    cmd
}

/// The homes must be readable by `user`, the user the server runs as.
pub fn check_homes(settings: &Settings, user: &str) -> Result<(), ConfigError> {
    if settings.storage.is_some() {
        return Ok(());
    }
    let mut homes = vec![("root", settings.root.clone())];
    homes.extend(settings.users.iter().map(|u| ("user", u.home.clone())));
    for (what, home) in homes {
        if let Err(e) = std::fs::read_dir(&home) {
            return Err(ConfigError::new(
                "run_as",
                format!(
                    "`{}` ({what} home) cannot be read as `{user}`: {e} (give `{user}` read and search rights on it and the directories above, set run_as to a user who can, or allow_root)",
                    home.display()
                ),
            ));
        }
    }
    Ok(())
}

/// `wharf serve --check`: the start-up checks that bind no port, as the user the server runs
/// as, then what would be served; exit code 0, or 2 with the error (`fail`).
pub fn check_only(
    settings: &Settings,
    fail: impl Fn(&ConfigError) -> std::process::ExitCode,
) -> std::process::ExitCode {
    let user = match crate::privilege::drop_root(&settings.run_as, settings.allow_root) {
        Ok(crate::privilege::Outcome::Switched { user, .. }) => user,
        Ok(_) => current_user(),
        Err(e) => return fail(&e),
    };
    let checked = check_homes(settings, &user)
        .and_then(|()| check_database(settings, &user))
        .and_then(|()| check_acme_state(settings, &user))
        .and_then(|()| check_files(settings, &user));
    if let Err(e) = checked {
        return fail(&e);
    }
    let own = OwnFiles::new(settings.own_files());
    for w in warnings(settings, &own, &user) {
        eprintln!("wharf: warning: {w}");
    }
    for line in describe(settings, &user) {
        println!("{line}");
    }
    std::process::ExitCode::SUCCESS
}

/// What a start reads or writes beyond the homes and the database, checked as `user` without
/// making anything: the certificates (loaded, as a reload would), the transfer log (it or
/// its directory writable).
fn check_files(settings: &Settings, user: &str) -> Result<(), ConfigError> {
    if let Some(t) = &settings.tls {
        wharf_server::tls::Tls::new(
            t.mode,
            &t.cert,
            &t.key,
            t.require_session_reuse,
            t.require_close_notify,
        )
        .map_err(|m| ConfigError::new(t.cert_field, m))?
        .set_host_certs(&settings.host_certs())
        .map_err(|m| ConfigError::new("host.cert", m))?;
    }
    if let Some((cert, key)) = settings.admin.as_ref().and_then(|a| a.tls.as_ref()) {
        wharf_server::tls::https_acceptor(cert, key)
            .map_err(|m| ConfigError::new("admin.cert", m))?;
    }
    if let Some(log) = &settings.log.xferlog {
        let target = if log.exists() {
            log.clone()
        } else {
            log.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or(PathBuf::from("."), Path::to_path_buf)
        };
        if !may(&target, rustix::fs::Access::WRITE_OK) {
            return Err(ConfigError::new(
                "log.xferlog",
                format!(
                    "`{}` cannot be written by `{user}`, the user the server runs as (`chown {user} {}`)",
                    log.display(),
                    target.display()
                ),
            ));
        }
    }
    Ok(())
}

/// What a server with `settings` serves, one line a fact (for `--check`).
fn describe(settings: &Settings, user: &str) -> Vec<String> {
    let mut out = vec![format!(
        "Configuration OK ({})",
        settings
            .config_file
            .as_ref()
            .map_or("command line only".to_string(), |p| p.display().to_string())
    )];
    let explicit = match settings.tls.as_ref().map(|t| t.mode) {
        Some(wharf_server::tls::TlsMode::Required) => "explicit TLS required",
        Some(wharf_server::tls::TlsMode::Optional) => "explicit TLS optional",
        _ => "plain",
    };
    for (addr, proxy) in settings.listen.iter().zip(&settings.listen_proxy) {
        let via = if proxy.is_some() {
            ", PROXY protocol"
        } else {
            ""
        };
        out.push(format!("Listener: {addr} ({explicit}{via})"));
    }
    for addr in &settings.listen_implicit {
        out.push(format!("Listener: {addr} (implicit TLS)"));
    }
    out.push("(under socket activation, the sockets systemd hands over take the listeners' place: `ftp` and `ftps`)".into());
    match &settings.storage {
        None => out.push(format!(
            "Root: {} (local file system)",
            settings.root.display()
        )),
        Some(s3) => out.push(format!(
            "Root: s3://{}/{} (S3 at {})",
            s3.bucket,
            s3.prefix,
            s3.endpoint.as_deref().unwrap_or("AWS")
        )),
    }
    for u in &settings.users {
        out.push(format!(
            "User: {} (config), home {}, {}",
            u.name,
            u.home.display(),
            wharf_server::userdb::permissions_text(u.permissions)
        ));
    }
    out.extend(summary(settings));
    if let Some(t) = &settings.tls {
        out.push(format!(
            "TLS: {:?}, certificate {}, key {}",
            t.mode,
            t.cert.display(),
            t.key.display()
        ));
    } else {
        out.push("TLS: off".into());
    }
    match &settings.admin {
        None => out.push("Admin listener: none".into()),
        Some(a) => out.push(format!(
            "Admin listener: {}://{}/ (token: {})",
            if a.tls.is_some() { "https" } else { "http" },
            a.listen,
            if a.token_hash.is_some() {
                "configured"
            } else {
                "made at start"
            }
        )),
    }
    out.push(format!("Runs as: {user}"));
    out
}
