#![allow(clippy::expect_used, clippy::unwrap_used)] // test helpers: a failed step should panic the test
//! Shared test helpers for Wharf (not published): start `wharf serve` on port 0 with a temporary
//! root, talk to it with a raw control client that sees exact reply codes, and find the real
//! peer tools (curl, lftp, python3).
//!
//! ```no_run
//! let server = wharf_testkit::Server::builder(env!("CARGO_PKG_NAME")).start();
//! let mut ftp = wharf_testkit::Ftp::connect(server.addr);
//! ftp.login("anonymous", "me@example.net");
//! assert_eq!(ftp.cmd("NOOP").code, 200);
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub mod browser;
pub mod netns;
pub mod pebble;
pub mod peers;
pub mod postgres;
pub mod seaweed;
pub mod slapd;

/// How long any single read in a test may block: a test never hangs.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// Builds a `wharf serve` process.
pub struct ServerBuilder {
    bin: PathBuf,
    args: Vec<String>,
    config: Option<String>,
    listen: String,
    /// Run inside this network namespace (`ip netns exec`, which keeps the PID).
    netns: Option<String>,
    /// Environment variables for the server process.
    env: Vec<(String, String)>,
    /// Run as this user from the start (`setpriv`), as an admin who is not root would.
    user: Option<String>,
    /// The server's working directory (relative paths in its flags are taken from there).
    cwd: Option<PathBuf>,
}

/// A running `wharf serve`, killed (by its PID) when dropped.
pub struct Server {
    child: Option<Child>,
    /// What the server printed at start, up to its "Connect with …" line (included).
    pub banner: String,
    pub addr: SocketAddr,
    /// The implicit-TLS listener (`--listen-implicit`), when there is one.
    pub implicit: Option<SocketAddr>,
    /// The admin listener (`--admin`), and the token the server made, when it made one.
    pub admin: Option<(SocketAddr, Option<String>)>,
    /// The served directory (a temporary directory unless given).
    pub root: PathBuf,
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl Server {
    /// `bin` is the path of the `wharf` binary (`env!("CARGO_BIN_EXE_wharf")` in tests).
    pub fn builder(bin: &str) -> ServerBuilder {
        ServerBuilder {
            bin: PathBuf::from(bin),
            args: Vec::new(),
            config: None,
            listen: "127.0.0.1:0".into(),
            netns: None,
            env: Vec::new(),
            user: None,
            cwd: None,
        }
    }

    /// `ftp://ADDR` (IPv6 in brackets).
    pub fn url(&self) -> String {
        format!("ftp://{}", self.addr)
    }

    /// A path inside the served root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// The server's log so far (stderr).
    /// The file the server's log goes to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The config file given with [`ServerBuilder::config`] (to change it before a reload).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("wharf.toml")
    }

    /// Sends a signal (`"HUP"`, `"USR1"`, …) to the server, by its PID.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits (at most 10 s) until the log contains `text` `count` times; false if it never does.
    pub fn wait_log(&self, text: &str, count: usize) -> bool {
        for _ in 0..200 {
            if self.log().matches(text).count() >= count {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// Kills the server with SIGKILL (a crash) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        for _ in 0..600 {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl ServerBuilder {
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }

    pub fn args(mut self, a: &[&str]) -> Self {
        self.args.extend(a.iter().map(|s| s.to_string()));
        self
    }

    /// A TOML config written to a file and passed with `--config`. `{root}` in the text is
    /// replaced by the served directory.
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_string());
        self
    }

    /// An environment variable for the server process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Start the server as `user` (not root from its first instruction: `setpriv`, which
    /// needs the tests to run as root).
    pub fn as_user(mut self, user: &str) -> Self {
        self.user = Some(user.to_string());
        self
    }

    /// Start the server in `dir` (relative paths of its flags are taken from there).
    pub fn current_dir(mut self, dir: &Path) -> Self {
        self.cwd = Some(dir.to_path_buf());
        self
    }

    /// Run the server inside a network namespace (see [`netns::Lab`]).
    pub fn netns(mut self, ns: &str) -> Self {
        self.netns = Some(ns.to_string());
        self
    }

    /// Listen somewhere other than 127.0.0.1:0 (e.g. `[::1]:0`).
    pub fn listen(mut self, addr: &str) -> Self {
        self.listen = addr.to_string();
        self
    }

    /// Starts the server on a temporary root and waits until it listens.
    pub fn start(self) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).expect("root");
        self.start_in(dir, root)
    }

    /// Starts the server on an existing root (a restart on the same files).
    pub fn start_on(self, root: &Path) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        self.start_in(dir, root.to_path_buf())
    }

    fn start_in(self, dir: tempfile::TempDir, root: PathBuf) -> Server {
        let log = dir.path().join("server.log");
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.bin);
                c
            }
            None => match &self.user {
                Some(user) => {
                    let (uid, gid) = user_ids(user).expect("the user is in /etc/passwd");
                    let mut c = Command::new("setpriv");
                    c.args([
                        &format!("--reuid={uid}"),
                        &format!("--regid={gid}"),
                        "--clear-groups",
                        "--",
                    ])
                    .arg(&self.bin);
                    c
                }
                None => Command::new(&self.bin),
            },
        };
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        cmd.arg("serve")
            .arg("--root")
            .arg(&root)
            .arg("--listen")
            .arg(&self.listen);
        if let Some(toml) = &self.config {
            let path = dir.path().join("wharf.toml");
            std::fs::write(&path, toml.replace("{root}", &root.to_string_lossy())).expect("config");
            cmd.arg("--config").arg(&path);
        }
        // Tests run as root in CI: the servers they start stay root (their temporary roots are
        // root's own); the switch to `run_as` has a test of its own.
        if is_root() && self.user.is_none() && !self.args.iter().any(|a| a == "--run-as") {
            cmd.arg("--allow-root");
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log"));
        let mut child = cmd.spawn().expect("spawn wharf");
        let stdout = child.stdout.take().expect("stdout");
        // "Wharf is serving DIR on ftp://ADDR/" per listener (ftpes:// when TLS is required,
        // ftps:// for implicit TLS), then "Connect with ...".
        let mut reader = BufReader::new(stdout);
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let end = reader.read_line(&mut line).unwrap_or(0) == 0 || line.starts_with("Connect");
            lines.push(line);
            if end {
                break;
            }
        }
        let addr_of = |line: &String| -> Option<SocketAddr> {
            // The last URL: the served place may be one too (s3://BUCKET/).
            line.rsplit("://")
                .next()
                .and_then(|rest| rest.trim().trim_end_matches('/').parse().ok())
        };
        let implicit = lines
            .iter()
            .filter(|l| l.starts_with("Wharf is serving") && l.contains("ftps://"))
            .find_map(addr_of);
        let line = lines
            .iter()
            .find(|l| l.starts_with("Wharf is serving") && !l.contains("ftps://"))
            .cloned()
            .unwrap_or_default();
        // "Admin API on http://ADDR/ (token, shown only now: TOKEN)"
        let admin = lines
            .iter()
            .find_map(|l| {
                l.strip_prefix("Admin API on http://")
                    .or_else(|| l.strip_prefix("Admin API on https://"))
            })
            .and_then(|rest| {
                let (addr, tail) = rest.split_once('/')?;
                let token = tail
                    .split_once("shown only now: ")
                    .map(|(_, t)| t.trim().trim_end_matches(')').to_string());
                Some((addr.parse().ok()?, token))
            });
        let addr = addr_of(&line).unwrap_or_else(|| {
            let _ = child.kill();
            panic!(
                "server did not start: {line:?}\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        Server {
            banner: lines.concat(),
            child: Some(child),
            addr,
            implicit,
            admin,
            root,
            dir,
            log,
        }
    }
}

/// A reply as the raw client read it.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    /// All lines, joined with `\n`, codes included.
    pub text: String,
    pub raw: Vec<u8>,
}

/// A raw FTP control connection for tests: exact bytes out, exact replies in.
pub struct Ftp {
    reader: BufReader<TcpStream>,
    stream: TcpStream,
    pub banner: Reply,
}

impl Ftp {
    /// Connects and reads the banner.
    pub fn connect(addr: SocketAddr) -> Ftp {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
        Ftp::over(stream)
    }

    /// Connects from the local address `from` (another loopback address, `127.0.0.2`, to be
    /// another client) and reads the banner.
    pub fn connect_from(from: std::net::IpAddr, addr: SocketAddr) -> Ftp {
        let domain = if from.is_ipv4() {
            socket2::Domain::IPV4
        } else {
            socket2::Domain::IPV6
        };
        let sock = socket2::Socket::new(domain, socket2::Type::STREAM, None).expect("socket");
        sock.bind(&SocketAddr::new(from, 0).into()).expect("bind");
        sock.connect_timeout(&addr.into(), IO_TIMEOUT)
            .expect("connect");
        Ftp::over(sock.into())
    }

    /// A control connection over a connected stream: reads the banner.
    pub fn over(stream: TcpStream) -> Ftp {
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        let mut ftp = Ftp {
            reader,
            stream,
            banner: Reply {
                code: 0,
                text: String::new(),
                raw: vec![],
            },
        };
        ftp.banner = ftp.read_reply();
        ftp
    }

    /// Connects and logs in; panics unless 230.
    pub fn login_to(addr: SocketAddr, user: &str, pass: &str) -> Ftp {
        let mut ftp = Ftp::connect(addr);
        ftp.login(user, pass);
        ftp
    }

    /// The code of the reply to PASS (or to USER when that already decides), on a new
    /// connection from `from`.
    pub fn login_code(from: std::net::IpAddr, addr: SocketAddr, user: &str, pass: &str) -> u16 {
        let mut ftp = Ftp::connect_from(from, addr);
        let r = ftp.cmd(&format!("USER {user}"));
        if r.code != 331 {
            return r.code;
        }
        ftp.cmd(&format!("PASS {pass}")).code
    }

    pub fn login(&mut self, user: &str, pass: &str) {
        let r = self.cmd(&format!("USER {user}"));
        assert_eq!(r.code, 331, "{}", r.text);
        let r = self.cmd(&format!("PASS {pass}"));
        assert_eq!(r.code, 230, "{}", r.text);
    }

    /// The underlying stream (for urgent data, shutdown…).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sends `line` + CRLF and reads one reply.
    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send(line);
        self.read_reply()
    }

    /// Sends raw bytes + CRLF and reads one reply.
    pub fn cmd_bytes(&mut self, line: &[u8]) -> Reply {
        let mut buf = line.to_vec();
        buf.extend_from_slice(b"\r\n");
        self.send_raw(&buf);
        self.read_reply()
    }

    pub fn send(&mut self, line: &str) {
        self.send_raw(format!("{line}\r\n").as_bytes());
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Reads one (possibly multi-line) reply.
    pub fn read_reply(&mut self) -> Reply {
        let mut raw = Vec::new();
        let mut lines = Vec::new();
        let mut code = None;
        loop {
            let mut line = Vec::new();
            let n = self
                .reader
                .read_until(b'\n', &mut line)
                .expect("read reply");
            assert!(
                n > 0,
                "connection closed while reading a reply; got so far: {:?}",
                String::from_utf8_lossy(&raw)
            );
            raw.extend_from_slice(&line);
            let text = String::from_utf8_lossy(&line)
                .trim_end_matches(['\r', '\n'])
                .to_string();
            let this: Option<u16> = text.get(..3).and_then(|c| c.parse().ok());
            match code {
                None => {
                    let c = this.unwrap_or_else(|| panic!("bad reply line {text:?}"));
                    lines.push(text.clone());
                    if text.as_bytes().get(3) != Some(&b'-') {
                        return Reply {
                            code: c,
                            text: lines.join("\n"),
                            raw,
                        };
                    }
                    code = Some(c);
                }
                Some(c) => {
                    lines.push(text.clone());
                    if this == Some(c) && text.as_bytes().get(3) == Some(&b' ') {
                        return Reply {
                            code: c,
                            text: lines.join("\n"),
                            raw,
                        };
                    }
                }
            }
        }
    }

    /// Whether the server closed the control connection (reads EOF within the timeout).
    pub fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 512];
        loop {
            match self.reader.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    }

    /// EPSV (or PASV on `pasv`) and a connected data stream.
    pub fn passive(&mut self) -> TcpStream {
        let r = self.cmd("EPSV");
        assert_eq!(r.code, 229, "{}", r.text);
        let port = parse_epsv(&r.text);
        let addr = SocketAddr::new(self.stream.peer_addr().expect("peer").ip(), port);
        let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("data connect");
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        s
    }

    /// PASV; the announced address.
    pub fn pasv(&mut self) -> SocketAddr {
        let r = self.cmd("PASV");
        assert_eq!(r.code, 227, "{}", r.text);
        parse_pasv(&r.text)
    }

    /// EPSV, `REST offset` when `offset` > 0 (right before the command: REST applies to the very
    /// next command only), then `command`; returns the data connection after its 150/125.
    fn start_transfer(&mut self, command: &str, offset: u64) -> TcpStream {
        self.try_start_transfer(command, offset)
            .unwrap_or_else(|r| panic!("{command}: {}", r.text))
    }

    /// [`Ftp::start_transfer`], with a final reply instead of 150/125 returned as the error.
    pub fn try_start_transfer(&mut self, command: &str, offset: u64) -> Result<TcpStream, Reply> {
        let data = self.passive();
        if offset > 0 {
            let r = self.cmd(&format!("REST {offset}"));
            assert_eq!(r.code, 350, "{}", r.text);
        }
        let r = self.cmd(command);
        if r.code == 150 || r.code == 125 {
            Ok(data)
        } else {
            Err(r)
        }
    }

    /// Runs a download command over passive mode; returns the data and the final reply.
    pub fn download(&mut self, command: &str) -> (Vec<u8>, Reply) {
        self.download_from(command, 0)
    }

    /// Like [`Ftp::download`], with `REST offset` right before the command (REST applies to the
    /// very next command only) when `offset` > 0.
    pub fn download_from(&mut self, command: &str, offset: u64) -> (Vec<u8>, Reply) {
        let mut data = self.start_transfer(command, offset);
        let mut buf = Vec::new();
        data.read_to_end(&mut buf).expect("read data");
        (buf, self.read_reply())
    }

    /// Runs an upload command over passive mode; returns the final reply.
    pub fn upload(&mut self, command: &str, bytes: &[u8]) -> Reply {
        self.upload_from(command, bytes, 0)
    }

    /// Like [`Ftp::upload`], with `REST offset` right before the command when `offset` > 0.
    /// A refusal before the data moves (a final reply instead of 150) is returned as it is; a
    /// data connection the server closes early (a quota, a full disk) is not an error here:
    /// the final reply says what happened.
    pub fn upload_from(&mut self, command: &str, bytes: &[u8], offset: u64) -> Reply {
        let mut data = match self.try_start_transfer(command, offset) {
            Ok(d) => d,
            Err(refused) => return refused,
        };
        let _ = data.write_all(bytes);
        drop(data);
        self.read_reply()
    }
}

/// The port of a 229 reply.
pub fn parse_epsv(text: &str) -> u16 {
    let inner = text
        .split("(|||")
        .nth(1)
        .and_then(|r| r.split('|').next())
        .expect("229 form");
    inner.parse().expect("port")
}

/// The address of a 227 reply.
pub fn parse_pasv(text: &str) -> SocketAddr {
    let inner = text
        .split('(')
        .nth(1)
        .and_then(|r| r.split(')').next())
        .expect("227 form");
    let n: Vec<u16> = inner
        .split(',')
        .map(|x| x.trim().parse().expect("number"))
        .collect();
    assert_eq!(n.len(), 6, "{text}");
    format!("{}.{}.{}.{}:{}", n[0], n[1], n[2], n[3], n[4] * 256 + n[5])
        .parse()
        .expect("addr")
}

/// Finds a program on PATH, or panics with what to install (tests must not pass silently
/// without their peer; `scripts/test` installs them).
pub fn require_tool(name: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let p = dir.join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{name}` is not installed; run scripts/test (it installs the test peers)");
}

/// Writes `len` bytes of a deterministic pattern (all byte values, CR and LF included).
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    let mut x: u32 = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Creates `path`'s parent directories and writes `bytes`.
pub fn write_file(path: &Path, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, bytes).expect("write");
}

/// Builds a small tree with binary files, an empty file, nested and empty directories.
pub fn make_tree(dir: &Path) {
    write_file(&dir.join("a.bin"), &pattern(300_000, 1));
    write_file(&dir.join("empty"), b"");
    write_file(&dir.join("docs/readme.txt"), b"hello\nworld\n");
    write_file(&dir.join("docs/deep/x.dat"), &pattern(70_000, 2));
    std::fs::create_dir_all(dir.join("emptydir")).expect("mkdir");
}

/// Asserts that two directory trees hold the same names, kinds and bytes.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let list = |d: &Path| -> Vec<(std::ffi::OsString, bool)> {
        let mut v: Vec<_> = std::fs::read_dir(d)
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()))
            .map(|e| {
                let e = e.expect("entry");
                (e.file_name(), e.file_type().expect("type").is_dir())
            })
            .collect();
        v.sort();
        v
    };
    let (la, lb) = (list(a), list(b));
    assert_eq!(la, lb, "{} vs {}", a.display(), b.display());
    for (name, is_dir) in la {
        let (pa, pb) = (a.join(&name), b.join(&name));
        if is_dir {
            assert_same_tree(&pa, &pb);
        } else {
            assert!(
                std::fs::read(&pa).expect("read") == std::fs::read(&pb).expect("read"),
                "{} differs from {}",
                pa.display(),
                pb.display()
            );
        }
    }
}

/// `openssl passwd -6 -salt saltsalt pw`: a SHA-512 crypt hash of `pw`, quick to verify, for
/// `[[user]]` entries in test configs.
pub const PW_HASH: &str = "$6$saltsalt$pauPrmdmG4BTE9h2HPmywiw152IFch6BJCEsaY6D.PLTfpV8sqvXwWdyfsgVgozkYH9B80bAip/08R2BPH2xk/";

/// Whether the tests run as root (effective uid 0, from `/proc/self/status`).
/// A user's uid and gid, from `/etc/passwd`.
pub fn user_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut f = line.split(':');
        let (user, _, uid, gid) = (f.next()?, f.next()?, f.next()?, f.next()?);
        (user == name).then_some(())?;
        Some((uid.parse().ok()?, gid.parse().ok()?))
    })
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Runs a command to completion within `limit`, or kills it (by its PID) and panics: a test
/// never hangs on a child that should have exited. Output is read while it runs, so a child
/// that writes a lot never blocks on a full pipe.
pub fn output_within(cmd: &mut Command, limit: Duration) -> std::process::Output {
    output_with_input(cmd, None, limit)
}

/// [`output_within`], with `input` written to the child's stdin (then closed).
pub fn output_with_input(
    cmd: &mut Command,
    input: Option<&[u8]>,
    limit: Duration,
) -> std::process::Output {
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(input).expect("write stdin");
    }
    let mut out_pipe = child.stdout.take().expect("stdout");
    let mut err_pipe = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let end = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if std::time::Instant::now() >= end {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    match status {
        Some(status) => std::process::Output {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "{cmd:?} still running after {limit:?}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        ),
    }
}

/// A loopback port free now (the caller binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Stops a child the test started: SIGTERM by its PID, then waits (at most `limit`, then
/// SIGKILL) until it has exited. Nothing happens when there is none.
pub fn stop_child(slot: &mut Option<std::process::Child>, limit: Duration) {
    let Some(mut child) = slot.take() else {
        return;
    };
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .stderr(std::process::Stdio::null())
        .status();
    let end = std::time::Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return,
            Ok(None) if std::time::Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
        }
    }
}
