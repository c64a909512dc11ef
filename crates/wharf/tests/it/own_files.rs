//! The server's own files are never served (issue: safe by default): README's flows followed
//! carelessly — the user database and the TLS key in the served directory — as root and as a
//! normal user, then every command, hard and symbolic links, and real clients trying to reach
//! them.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;
use std::time::Duration;

use wharf_testkit::{Ftp, output_with_input, output_within};

use crate::{BIN, server};

const LIMIT: Duration = Duration::from_secs(30);
const NOBODY: u32 = 65534;

fn require_root() {
    assert!(
        wharf_testkit::is_root(),
        "this test plays root and a normal user (setpriv): run the tests as root (CI does)"
    );
}

/// `wharf` as `nobody` from its first instruction, as a normal user runs it.
fn as_nobody() -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
        BIN,
    ]);
    cmd
}

/// A directory of its own for a flow, with the given owner and mode.
fn dir_of(uid: u32, mode: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
    rustix::fs::chown(
        dir.path(),
        Some(rustix::process::Uid::from_raw(uid)),
        Some(rustix::process::Gid::from_raw(uid)),
    )
    .unwrap();
    dir
}

/// Every command that could reach `name` is refused with 550, and nothing was made.
fn refused_everywhere(ftp: &mut Ftp, name: &str) {
    for cmd in [
        format!("SIZE {name}"),
        format!("MDTM {name}"),
        format!("MLST {name}"),
        format!("DELE {name}"),
        format!("RNFR {name}"),
        format!("MFMT 20200101000000 {name}"),
        format!("SITE CHMOD 644 {name}"),
        format!("HASH {name}"),
        format!("XCRC {name}"),
    ] {
        let r = ftp.cmd(&cmd);
        assert_eq!(r.code, 550, "{cmd}: {}", r.text);
    }
    for cmd in ["RETR", "STOR", "APPE"] {
        let r = ftp.upload_from(&format!("{cmd} {name}"), b"x", 0);
        assert_eq!(r.code, 550, "{cmd} {name}: {}", r.text);
    }
    let _ = ftp.cmd("RNFR public.txt");
    let r = ftp.cmd(&format!("RNTO {name}"));
    assert_eq!(r.code, 550, "RNTO {name}: {}", r.text);
}

/// The names a listing shows, by NLST, LIST and MLSD.
fn listed(ftp: &mut Ftp) -> String {
    let mut all = String::new();
    for cmd in ["NLST", "LIST -a", "MLSD"] {
        let (bytes, r) = ftp.download(cmd);
        assert_eq!(r.code, 226, "{cmd}: {}", r.text);
        all.push_str(&String::from_utf8_lossy(&bytes));
    }
    all
}

/// README's user database flow, as root, with the database in the served directory: `wharf
/// users` gives the new database to `nobody` and says its directory is not; `wharf serve`
/// refuses to start until the directory is `nobody`'s too (exit 2, the fix named); then the
/// database, its -wal and -shm, a hard link and a symlink to it are refused by every command
/// and left out of every listing, for Wharf's raw client and for curl.
#[test]
fn readme_user_database_flow_as_root_serves_no_secret() {
    require_root();
    let dir = dir_of(0, 0o755);
    let d = dir.path();
    std::fs::write(d.join("public.txt"), b"for alice").unwrap();
    let out = output_with_input(
        Command::new(BIN).current_dir(d).args([
            "users",
            "--db",
            "sqlite:./users.db",
            "add",
            "alice",
            "--perm",
            "all",
            "--password-stdin",
        ]),
        Some(b"pw\n"),
        LIMIT,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let meta = std::fs::metadata(d.join("users.db")).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600, "the database is private");
    assert_eq!(meta.uid(), NOBODY, "and the server's user's");
    assert!(err.contains("its directory . is not"), "{err}");

    // The directory is root's: the server, as nobody, could not write beside the database.
    let out = output_within(
        Command::new(BIN).current_dir(d).args([
            "serve",
            "--users-db",
            "sqlite:./users.db",
            "--listen",
            "127.0.0.1:0",
        ]),
        LIMIT,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot be written by `nobody`") && err.contains("chown nobody"),
        "{err}"
    );

    // The fix it names; then it serves, and says the database lies inside what it serves.
    rustix::fs::chown(
        d,
        Some(rustix::process::Uid::from_raw(NOBODY)),
        Some(rustix::process::Gid::from_raw(NOBODY)),
    )
    .unwrap();
    let s = server()
        .current_dir(d)
        .args(&["--users-db", "sqlite:./users.db", "--run-as", "nobody"])
        .start_on(d);
    assert!(
        s.log()
            .contains("(the user database) lies inside the served directory"),
        "{}",
        s.log()
    );
    assert!(
        s.banner
            .contains("Users: the user database sqlite:./users.db"),
        "{}",
        s.banner
    );
    let mut ftp = Ftp::login_to(s.addr, "alice", "pw");
    // SQLite in WAL mode keeps -wal and -shm beside the file while the server runs.
    assert!(d.join("users.db-wal").exists() && d.join("users.db-shm").exists());
    std::fs::hard_link(d.join("users.db"), d.join("copy.db")).unwrap();
    std::os::unix::fs::symlink("users.db", d.join("link.db")).unwrap();
    for name in [
        "users.db",
        "users.db-wal",
        "users.db-shm",
        "users.db-journal",
        "copy.db",
        "link.db",
        "./sub/../users.db",
    ] {
        refused_everywhere(&mut ftp, name);
    }
    assert!(!d.join("users.db-journal").exists(), "nothing was made");
    let names = listed(&mut ftp);
    assert!(names.contains("public.txt"), "{names}");
    for hidden in ["users.db", "copy.db", "link.db"] {
        assert!(!names.contains(hidden), "{hidden} listed: {names}");
    }
    // curl, as a user would try.
    let out = output_within(
        Command::new("curl").args([
            "-sS",
            "-o",
            "/dev/null",
            &format!("ftp://alice:pw@{}/users.db", s.addr),
        ]),
        LIMIT,
    );
    assert!(!out.status.success(), "curl fetched the database");
    let out = output_within(
        Command::new("curl").args(["-sS", &format!("ftp://alice:pw@{}/", s.addr)]),
        LIMIT,
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("public.txt") && !listing.contains("users.db"),
        "{listing}"
    );
    // The database itself still works: another login.
    Ftp::login_to(s.addr, "alice", "pw");
}

/// README's FTPS flow as a normal user (not root at any point): `wharf cert localhost` in the
/// directory served, then the server on it. The key is private, the start-up hint names the
/// certificate to trust, and neither the key nor the certificate can be fetched or listed —
/// anonymous is on, as in README's example.
#[test]
fn readme_cert_flow_as_a_normal_user_serves_no_key() {
    require_root();
    let dir = dir_of(NOBODY, 0o755);
    let d = dir.path();
    std::fs::write(d.join("public.txt"), b"for everyone").unwrap();
    let out = output_within(
        as_nobody().args(["cert", "localhost"]).current_dir(d),
        LIMIT,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = std::fs::metadata(d.join("localhost.key")).unwrap();
    assert_eq!((key.mode() & 0o777, key.uid()), (0o600, NOBODY));
    let s = server()
        .as_user("nobody")
        .current_dir(d)
        .args(&["--tls-cert", "localhost.crt", "--tls-key", "localhost.key"])
        .start_on(d);
    assert!(
        s.banner
            .contains("curl --ssl-reqd --cacert localhost.crt ftp://127.0.0.1:"),
        "{}",
        s.banner
    );
    assert!(
        s.log().contains("(the TLS private key) lies inside"),
        "{}",
        s.log()
    );
    let ca = d.join("localhost.crt");
    let curl = |path: &str| {
        output_within(
            Command::new("curl")
                .args(["-sS", "--ssl-reqd", "--cacert"])
                .arg(&ca)
                .arg(format!("ftp://{}/{path}", s.addr)),
            LIMIT,
        )
    };
    let out = curl("public.txt");
    assert_eq!(
        out.stdout,
        b"for everyone",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for secret in ["localhost.key", "localhost.crt"] {
        let out = curl(secret);
        // 78: curl's "RETR response: 550" (the file does not exist, as far as it can tell).
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.stdout.is_empty(), "{secret} served");
        assert_eq!(out.status.code(), Some(78), "{secret}: {err}");
    }
    let listing = String::from_utf8_lossy(&curl("").stdout).to_string();
    assert!(
        listing.contains("public.txt") && !listing.contains("localhost."),
        "{listing}"
    );
}

/// The config file and the transfer log, inside the served directory of a writable server:
/// refused, hidden, and once the transfer log is rotated away its name is still the server's
/// (the file it makes next), so no client can take it first.
#[test]
fn config_and_transfer_log_are_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = d.join("wharf.toml");
    std::fs::write(
        &config,
        format!(
            "write = true\nanonymous = true\n[log]\nxferlog = \"{}/xfer.log\"\n",
            d.display()
        ),
    )
    .unwrap();
    let s = server()
        .args(&["--config", &config.to_string_lossy()])
        .start_on(d);
    assert!(
        s.log().contains("(the config file) lies inside"),
        "{}",
        s.log()
    );
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    assert_eq!(ftp.upload("STOR public.txt", b"hello").code, 226);
    assert!(d.join("xfer.log").exists());
    refused_everywhere(&mut ftp, "xfer.log");
    refused_everywhere(&mut ftp, "wharf.toml");
    let names = nlst(&mut ftp);
    assert_eq!(names, ["public.txt"]);
    // Rotated away (logrotate's rename): the name is the server's still.
    std::fs::rename(d.join("xfer.log"), d.join("xfer.log.1")).unwrap();
    assert_eq!(ftp.upload("STOR xfer.log", b"mine").code, 550);
    assert!(!d.join("xfer.log").exists());
}

fn nlst(ftp: &mut Ftp) -> Vec<String> {
    let (bytes, r) = ftp.download("NLST");
    assert_eq!(r.code, 226, "{}", r.text);
    let mut names: Vec<String> = String::from_utf8_lossy(&bytes)
        .lines()
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

/// The other halves of README's flows: `wharf cert` as root gives the key to the server's user
/// (readable by it only), and `wharf users` as a normal user makes a private database in a
/// private directory; that user's server serves neither. A write-enabled user whose home the
/// server's user cannot write is warned about at start.
#[test]
fn readme_flows_the_other_way_round() {
    require_root();
    let dir = dir_of(NOBODY, 0o755);
    let d = dir.path();
    std::fs::create_dir(d.join("files")).unwrap();
    std::fs::write(d.join("files/public.txt"), b"public").unwrap();
    // As root: the key is nobody's, 0600.
    let out = output_within(
        Command::new(BIN)
            .args(["cert", "localhost", "--out"])
            .arg(d.join("tls")),
        LIMIT,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = std::fs::metadata(d.join("tls/localhost.key")).unwrap();
    assert_eq!((key.mode() & 0o777, key.uid()), (0o600, NOBODY));
    let tls_dir = std::fs::metadata(d.join("tls")).unwrap();
    assert_eq!((tls_dir.mode() & 0o777, tls_dir.uid()), (0o700, NOBODY));
    // As nobody: the database and its new directory are private.
    let out = output_with_input(
        as_nobody()
            .args([
                "users",
                "--db",
                "sqlite:state/users.db",
                "add",
                "bob",
                "--perm",
                "all",
            ])
            .args(["--password-stdin"])
            .current_dir(d),
        Some(b"pw\n"),
        LIMIT,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (path, mode) in [("state", 0o700), ("state/users.db", 0o600)] {
        let m = std::fs::metadata(d.join(path)).unwrap();
        assert_eq!((m.mode() & 0o777, m.uid()), (mode, NOBODY), "{path}");
    }
    // Served as nobody, with the database (careless: served root is the whole directory).
    std::fs::create_dir(d.join("ro")).unwrap();
    std::fs::write(d.join("public.txt"), b"public").unwrap();
    std::fs::write(
        d.join("wharf.toml"),
        format!(
            "[[user]]\nname = \"dave\"\npassword_hash = \"{}\"\nhome = \"{}\"\npermissions = [\"all\"]\n",
            wharf_testkit::PW_HASH,
            d.join("ro").display()
        ),
    )
    .unwrap();
    let s = server()
        .as_user("nobody")
        .current_dir(d)
        .args(&[
            "--config",
            "wharf.toml",
            "--users-db",
            "sqlite:state/users.db",
        ])
        .args(&[
            "--tls-cert",
            "tls/localhost.crt",
            "--tls-key",
            "tls/localhost.key",
        ])
        .args(&["--tls", "optional"])
        .start_on(d);
    let log = s.log();
    assert!(
        log.contains("user `dave` may upload")
            && log.contains("/ro` cannot be written by `nobody`"),
        "{log}"
    );
    let mut ftp = Ftp::login_to(s.addr, "bob", "pw");
    for name in [
        "state/users.db",
        "tls/localhost.key",
        "tls/localhost.crt",
        "wharf.toml",
    ] {
        refused_everywhere(&mut ftp, name);
    }
    // The directories on the way to them stay where they are: a renamed `state` would take
    // the database out of its known place, and another `state` could be put in.
    for dir in ["state", "tls"] {
        let _ = ftp.cmd(&format!("RNFR {dir}"));
        assert_eq!(ftp.cmd("RNTO moved").code, 550, "{dir}");
        assert_eq!(ftp.cmd(&format!("RMD {dir}")).code, 550, "{dir}");
        assert!(d.join(dir).is_dir() && !d.join("moved").exists());
    }
    assert_eq!(ftp.cmd("MKD other").code, 257);
    assert_eq!(ftp.cmd("RNFR other").code, 350);
    assert_eq!(ftp.cmd("RNTO state").code, 550);
}
