//! Real FTP servers for client tests: vsftpd, ProFTPD, pyftpdlib and `wharf serve`, each
//! started by hand on 127.0.0.1 with a config file written here, in a temporary directory, and
//! stopped by its PID when dropped. `scripts/install-peers` installs them; a missing peer fails
//! the test with that hint, it never skips.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Server;

/// The user every password-protected peer has.
pub const USER: &str = "demo";
pub const PASSWORD: &str = "secret";
/// SHA-512 crypt of [`PASSWORD`] (`openssl passwd -6 -salt wharftest secret`), for ProFTPD.
const PASSWORD_SHA512: &str = "$6$wharftest$hUtbuCOguMJZM1yrMv4LXw7gYI8qH6Qa9ipf6YNIC4pxtX1WxxNFirSA/MXsee.vmj89GPzxztUwClTtPd.uq1";

/// A running FTP server of some make.
pub struct Peer {
    pub name: &'static str,
    pub addr: SocketAddr,
    /// The directory on disk where the test's files are (what `url("")` names).
    pub data: PathBuf,
    /// URL path from the login directory to `data` (vsftpd's anonymous root is not writable,
    /// so files go under `pub/`).
    prefix: String,
    /// Whether the peer needs USER/PASS (else anonymous).
    login: bool,
    /// Owner for files the test puts in place, so that the server's unprivileged user can
    /// overwrite or append to them.
    owner: Option<(u32, u32)>,
    child: Option<Child>,
    server: Option<Server>,
    log: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Peer {
    /// `ftp://[demo@]ADDR/PREFIX+rel` (no password: tests pass it in `WHARF_PASSWORD`).
    pub fn url(&self, rel: &str) -> String {
        let user = if self.login {
            format!("{USER}@")
        } else {
            String::new()
        };
        // SocketAddr shows an IPv6 address in brackets, as URLs want it.
        format!("ftp://{user}{}/{}{rel}", self.addr, self.prefix)
    }

    /// The password to put in `WHARF_PASSWORD` (ignored for anonymous peers).
    pub fn password(&self) -> &'static str {
        PASSWORD
    }

    /// A path under `data`.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.data.join(rel)
    }

    /// Writes a file (and its parent directories) as the server's user would own it.
    pub fn seed(&self, rel: &str, bytes: &[u8]) {
        let path = self.path(rel);
        let mut dirs = Vec::new();
        let mut p = path.parent();
        while let Some(d) = p {
            if d == self.data || d.exists() {
                break;
            }
            dirs.push(d.to_path_buf());
            p = d.parent();
        }
        crate::write_file(&path, bytes);
        for d in dirs.iter().chain(std::iter::once(&path)) {
            self.chown(d);
        }
    }

    /// Creates a directory as the server's user would own it.
    pub fn seed_dir(&self, rel: &str) {
        let path = self.path(rel);
        std::fs::create_dir_all(&path).expect("mkdir");
        self.chown(&path);
    }

    fn chown(&self, path: &Path) {
        if let Some((uid, gid)) = self.owner {
            std::os::unix::fs::chown(path, Some(uid), Some(gid)).expect("chown");
        }
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        if let Some(s) = &self.server {
            return s.log();
        }
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A file that `scripts/install-peers` put under `target/peers/` (`rclone/bin/rclone`); a clear
/// panic naming the script when it is missing.
pub fn installed(rel: &str) -> PathBuf {
    require_file(&workspace_root().join("target/peers").join(rel), rel)
}

/// The `PYTHONPATH` of the Python peers: `target/peers/python`, checked to hold `module`.
pub fn python_path(module: &str) -> PathBuf {
    let dir = workspace_root().join("target/peers/python");
    require_file(&dir.join(module).join("__init__.py"), module);
    dir
}

/// A helper script shipped in `wharf-testkit/peers/` (Python clients and servers).
pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("peers")
        .join(name)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn require_file(path: &Path, what: &str) -> PathBuf {
    if !path.exists() {
        panic!(
            "{what} not found at {}; run scripts/install-peers (scripts/test does)",
            path.display()
        );
    }
    path.to_path_buf()
}

/// uid and gid of the system user `ftp` (vsftpd's anonymous user; also used for ProFTPD).
fn ftp_user() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.first() == Some(&"ftp") && f.len() > 3 {
            return (f[2].parse().expect("uid"), f[3].parse().expect("gid"));
        }
    }
    panic!("no `ftp` user; run scripts/install-peers");
}

use crate::free_port;

/// A directory others can enter (servers drop privileges before they reach their files).
fn open_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// Waits until `addr` sends a 220 banner, or the child exits, or 10 s pass.
fn wait_banner(addr: SocketAddr, child: &mut Child) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 3];
            if s.read_exact(&mut buf).is_ok() && &buf == b"220" {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Starts a server on a free port, retrying on another port if it does not come up (another
/// process may take the port between our probe and the server's bind).
fn start_on_free_port(
    name: &str,
    log: &Path,
    mut spawn: impl FnMut(u16) -> Command,
) -> (Child, SocketAddr) {
    for _ in 0..3 {
        let port = free_port();
        let mut cmd = spawn(port);
        cmd.stdin(Stdio::null())
            .stdout(std::fs::File::create(log).expect("log"))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(log)
                    .expect("log"),
            ));
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        if wait_banner(addr, &mut child) {
            return (child, addr);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!(
        "{name} did not start:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// vsftpd 3 (unpacked from the Debian package), anonymous with uploads, deletes and renames in
/// `pub/`, both data modes. `extra` lines are appended to its config.
pub fn vsftpd(extra: &[&str]) -> Peer {
    let bin = require_file(
        &workspace_root().join("target/peers/vsftpd/usr/sbin/vsftpd"),
        "vsftpd",
    );
    let dir = open_tempdir();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).expect("root");
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let data = root.join("pub");
    std::fs::create_dir(&data).expect("pub");
    let owner = ftp_user();
    std::os::unix::fs::chown(&data, Some(owner.0), Some(owner.1)).expect("chown");
    std::fs::create_dir_all("/var/run/vsftpd/empty").expect("vsftpd secure_chroot_dir");
    let log = dir.path().join("vsftpd.log");
    let conf = dir.path().join("vsftpd.conf");
    let (child, addr) = start_on_free_port("vsftpd", &log, |port| {
        let mut text = format!(
            "listen=YES\nlisten_ipv6=NO\nlisten_address=127.0.0.1\nlisten_port={port}\n\
             background=NO\nseccomp_sandbox=NO\nanonymous_enable=YES\nlocal_enable=NO\n\
             anon_root={root}\nno_anon_password=YES\nwrite_enable=YES\nanon_upload_enable=YES\n\
             anon_mkdir_write_enable=YES\nanon_other_write_enable=YES\nanon_umask=022\n\
             pasv_enable=YES\nport_enable=YES\nconnect_from_port_20=NO\nxferlog_enable=NO\n\
             use_localtime=NO\nsecure_chroot_dir=/var/run/vsftpd/empty\n\
             pam_service_name=vsftpd\nmax_per_ip=0\n",
            root = root.display()
        );
        for line in extra {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(&conf, text).expect("vsftpd.conf");
        let mut cmd = Command::new(&bin);
        cmd.arg(&conf);
        cmd
    });
    Peer {
        name: "vsftpd",
        addr,
        data,
        prefix: "pub/".into(),
        login: false,
        owner: Some(owner),
        child: Some(child),
        server: None,
        log,
        _dir: Some(dir),
    }
}

/// `rclone serve ftp` (upstream rclone 1.75, from `target/peers/rclone`), user `demo`, serving a
/// temporary directory: a real server of another make for `wharf check`.
pub fn rclone_serve() -> Peer {
    let rclone = installed("rclone/bin/rclone");
    let dir = open_tempdir();
    let data = dir.path().join("home");
    std::fs::create_dir(&data).expect("home");
    let log = dir.path().join("rclone.log");
    let config = dir.path().join("rclone.conf");
    let (child, addr) = start_on_free_port("rclone serve ftp", &log, |port| {
        let mut cmd = Command::new(&rclone);
        cmd.env("RCLONE_CONFIG", &config)
            .args(["serve", "ftp"])
            .arg(&data)
            .args(["--addr", &format!("127.0.0.1:{port}")])
            .args(["--user", USER, "--pass", PASSWORD]);
        cmd
    });
    Peer {
        name: "rclone",
        addr,
        data,
        prefix: String::new(),
        login: true,
        owner: None,
        child: Some(child),
        server: None,
        log,
        _dir: Some(dir),
    }
}

/// ProFTPD 1.3.8 (the Debian package), user `demo` from its own AuthUserFile (SHA-512 crypt),
/// jailed in its home, both data modes, MLSD on.
pub fn proftpd() -> Peer {
    proftpd_with(&[])
}

/// [`proftpd`] with more lines in its configuration.
pub fn proftpd_with(extra: &[&str]) -> Peer {
    let bin = require_file(Path::new("/usr/sbin/proftpd"), "proftpd");
    let dir = open_tempdir();
    let data = dir.path().join("home");
    std::fs::create_dir(&data).expect("home");
    let owner = ftp_user();
    std::os::unix::fs::chown(&data, Some(owner.0), Some(owner.1)).expect("chown");
    let passwd = dir.path().join("passwd");
    let group = dir.path().join("group");
    std::fs::write(
        &passwd,
        format!(
            "{USER}:{PASSWORD_SHA512}:{}:{}::{}:/bin/sh\n",
            owner.0,
            owner.1,
            data.display()
        ),
    )
    .expect("passwd");
    std::fs::write(&group, format!("ftpgroup:x:{}:\n", owner.1)).expect("group");
    for f in [&passwd, &group] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    let log = dir.path().join("proftpd.log");
    let conf = dir.path().join("proftpd.conf");
    let d = dir.path().display().to_string();
    let (child, addr) = start_on_free_port("proftpd", &log, |port| {
        let text = format!(
            "ServerName \"wharf-test\"\nServerType standalone\nDefaultServer on\nPort {port}\n\
             DefaultAddress 127.0.0.1\nSocketBindTight on\nUseIPv6 off\nUser nobody\n\
             Group nogroup\nPidFile {d}/proftpd.pid\nScoreboardFile {d}/proftpd.scoreboard\n\
             DelayEngine off\nWtmpLog off\nUseReverseDNS off\nAuthPAM off\n\
             AuthOrder mod_auth_file.c\nAuthUserFile {}\nAuthGroupFile {}\n\
             RequireValidShell off\nDefaultRoot ~\nTransferLog none\nSystemLog {d}/system.log\n\
             Umask 022\nMaxInstances 100\n<Directory />\n  AllowOverwrite on\n  AllowStoreRestart on\n</Directory>\n{}\n",
            passwd.display(),
            group.display(),
            extra.join("\n")
        );
        std::fs::write(&conf, text).expect("proftpd.conf");
        let mut cmd = Command::new(&bin);
        cmd.arg("-n").arg("-c").arg(&conf);
        cmd
    });
    Peer {
        name: "proftpd",
        addr,
        data,
        prefix: String::new(),
        login: true,
        owner: Some(owner),
        child: Some(child),
        server: None,
        log,
        _dir: Some(dir),
    }
}

/// How to bend pyftpdlib for a test.
#[derive(Debug, Default, Clone)]
pub struct PyOptions {
    /// Commands removed from its command table (`EPSV`, `EPRT`, `REST`, …).
    pub without: Vec<&'static str>,
    /// Address announced in PASV replies (its `masquerade_address`).
    pub masquerade: Option<&'static str>,
    /// PASV and EPSV announce a port nobody listens on: passive mode cannot work.
    pub broken_passive: bool,
    /// Its `max_cons_per_ip` (0: unlimited).
    pub max_per_ip: u32,
    /// Listen on this address instead of 127.0.0.1 (`::1` for IPv6).
    pub host: Option<&'static str>,
    /// The one passive port (its `passive_ports`).
    pub passive_port: Option<u16>,
}

/// pyftpdlib (from PyPI), user `demo` with all permissions, as `options` bends it.
pub fn pyftpdlib(options: &PyOptions) -> Peer {
    let pythonpath = require_file(&workspace_root().join("target/peers/python"), "pyftpdlib");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/pyftpd.py");
    let dir = open_tempdir();
    let data = dir.path().join("home");
    std::fs::create_dir(&data).expect("home");
    let log = dir.path().join("pyftpdlib.log");
    let mut cmd = Command::new("python3");
    cmd.env("PYTHONPATH", &pythonpath)
        .arg(&script)
        .arg("--root")
        .arg(&data)
        .arg("--host")
        .arg(options.host.unwrap_or("127.0.0.1"))
        .arg("--max-per-ip")
        .arg(options.max_per_ip.to_string());
    for w in &options.without {
        cmd.arg("--without").arg(w);
    }
    if let Some(m) = options.masquerade {
        cmd.arg("--masquerade").arg(m);
    }
    if options.broken_passive {
        cmd.arg("--broken-passive");
    }
    if let Some(port) = options.passive_port {
        cmd.arg("--passive-port").arg(port.to_string());
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("log"));
    let mut child = cmd.spawn().expect("spawn python3");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    let _ = BufReader::new(stdout).read_line(&mut line);
    let Some(addr) = line
        .strip_prefix("LISTENING ")
        .and_then(|a| a.trim().parse::<SocketAddr>().ok())
    else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "pyftpdlib did not start: {line:?}\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    };
    Peer {
        name: "pyftpdlib",
        addr,
        data,
        prefix: String::new(),
        login: true,
        owner: None,
        child: Some(child),
        server: None,
        log,
        _dir: Some(dir),
    }
}

/// `wharf serve` with user `demo` (write access), started from the `wharf` binary at `bin`.
/// `config` is an optional TOML file body (`{root}` replaced by the served directory).
pub fn wharf(bin: &str, listen: &str, config: Option<&str>) -> Peer {
    let mut builder =
        Server::builder(bin)
            .listen(listen)
            .args(&["--user", &format!("{USER}:{PASSWORD}"), "-w"]);
    if let Some(c) = config {
        builder = builder.config(c);
    }
    let server = builder.start();
    Peer {
        name: "wharf",
        addr: server.addr,
        data: server.root.clone(),
        prefix: String::new(),
        login: true,
        owner: None,
        child: None,
        log: PathBuf::new(),
        server: Some(server),
        _dir: None,
    }
}
