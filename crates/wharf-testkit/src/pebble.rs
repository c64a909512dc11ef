//! An ACME (RFC 8555) test CA of the test's own: Debian's `pebble` 2.4 and
//! `pebble-challtestsrv` (`scripts/install-peers`), on loopback ports of their own, their files
//! in a temporary directory, both stopped (SIGTERM by their PIDs) when dropped.
//!
//! - `pebble-challtestsrv` is only the DNS server pebble resolves names with: every name has
//!   the A record 127.0.0.1 and no AAAA record; its HTTP-01, HTTPS and TLS-ALPN-01 responders
//!   are off, so the server under test answers the challenges itself.
//! - `pebble` serves the ACME directory ([`Pebble::directory_url`], HTTPS with a certificate
//!   for 127.0.0.1 and `localhost` made here with `openssl`, signed by the CA in
//!   [`Pebble::directory_ca`]) and validates HTTP-01 challenges with
//!   `http://NAME:HTTP_PORT/.well-known/acme-challenge/TOKEN`, NAME resolving to 127.0.0.1. It
//!   fetches each challenge 3 times (three "perspectives"), all from 127.0.0.1. TLS-ALPN-01
//!   goes to a port where nothing listens (it fails).
//! - Deterministic: no random sleep before validating (`PEBBLE_VA_NOSLEEP`), no nonce
//!   rejected at random (`PEBBLE_WFE_NONCEREJECT=0`, pebble's default is 5% `badNonce`), no
//!   valid authorization reused for a new order (`PEBBLE_AUTHZREUSE=0`, default 50%): every
//!   order has pending authorizations. Other `PEBBLE_*` variables of the test's environment
//!   are not passed on.
//! - Certificates are issued by a root and an intermediate that pebble makes up at each start
//!   ([`Pebble::issuer_roots`]); issued chains are leaf + intermediate.
//!
//! ```no_run
//! use wharf_testkit::pebble::Pebble;
//! let challenge_port = 8080; // where the server under test answers HTTP-01
//! let acme = Pebble::start(challenge_port, false);
//! let dir = &acme.directory_url; // https://127.0.0.1:PORT/dir, trusted with acme.directory_ca()
//! // … let the server under test get a certificate for `ftp.example.test` …
//! assert_eq!(acme.issued_count(), 1);
//! let roots = acme.issuer_roots(); // PEM: what a client of the server must trust
//! ```

use std::fs::{File, OpenOptions};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{output_within, require_tool};

const PEBBLE: &str = "/usr/bin/pebble";
const CHALLTESTSRV: &str = "/usr/bin/pebble-challtestsrv";

/// How long [`Pebble::start`] waits for each server to answer.
const START_LIMIT: Duration = Duration::from_secs(20);

/// The line pebble 2.4 logs when it has issued the certificate of a finalized order
/// (`ca.log.Printf("Issued certificate serial %s for order %s\n", …)` in its `ca/ca.go`;
/// newer pebbles write it in lower case, hence the comparison without case).
const ISSUED: &str = "issued certificate serial ";

/// The `openssl` config of the directory's certificate: a CA (`[ca]`) and a leaf for
/// 127.0.0.1 and `localhost` (`[leaf]`); no dependence on the system's `openssl.cnf`.
const OPENSSL_CNF: &str = "\
# wharf-testkit: the certificate of pebble's own HTTPS (crates/wharf-testkit/src/pebble.rs)
[req]
distinguished_name = dn
prompt = no

[dn]
CN = wharf-testkit pebble directory CA

[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// A running pebble and its DNS server (`pebble-challtestsrv`), stopped when dropped.
pub struct Pebble {
    /// `https://127.0.0.1:PORT/dir`, the ACME directory.
    pub directory_url: String,
    /// pebble's management interface (HTTPS, same certificate): `/roots/0`,
    /// `/intermediates/0`.
    pub management_port: u16,
    /// Where pebble connects to validate HTTP-01 challenges (as given to [`Pebble::start`]).
    pub http_port: u16,
    /// The DNS server's port (UDP and TCP), which pebble resolves every name with.
    pub dns_port: u16,
    pebble: Option<Child>,
    challtestsrv: Option<Child>,
    dir: tempfile::TempDir,
}

/// `n` distinct free loopback TCP ports, the first also free for UDP (the DNS server's), all
/// held until every one is chosen so that none is chosen twice.
fn free_ports(n: usize) -> Vec<u16> {
    let bind = || TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    let port = |l: &TcpListener| l.local_addr().expect("local addr").port();
    let mut udp = None;
    let mut held = Vec::new();
    for _ in 0..100 {
        let tcp = bind();
        if let Ok(socket) = UdpSocket::bind(("127.0.0.1", port(&tcp))) {
            udp = Some(socket);
            held.push(tcp);
            break;
        }
    }
    assert!(udp.is_some(), "no loopback port free for both TCP and UDP");
    while held.len() < n {
        held.push(bind());
    }
    held.iter().map(port).collect()
}

fn path_str(p: &Path) -> &str {
    p.to_str()
        .unwrap_or_else(|| panic!("a path that is not UTF-8: {}", p.display()))
}

/// Runs `openssl ARGS` in `dir` (`args`: split at spaces); panics with its words if it fails.
fn openssl(dir: &Path, args: &str) {
    let out = output_within(
        Command::new("openssl")
            .args(args.split_whitespace())
            .current_dir(dir),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "openssl {args} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes, in `dir`: `ca.pem` (+ `ca-key.pem`), and `cert.pem` + `key.pem`, the leaf for
/// 127.0.0.1 and `localhost` that pebble serves (P-256 keys, PKCS#8, ten years).
fn make_certs(dir: &Path) {
    std::fs::write(dir.join("openssl.cnf"), OPENSSL_CNF).expect("write openssl.cnf");
    let key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    openssl(
        dir,
        &format!(
            "req -config openssl.cnf -x509 -extensions ca {key} -keyout ca-key.pem -out ca.pem \
             -days 3650"
        ),
    );
    openssl(
        dir,
        &format!(
            "req -config openssl.cnf -new -subj /CN=localhost {key} -keyout key.pem -out cert.csr"
        ),
    );
    openssl(
        dir,
        "x509 -req -in cert.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -CAserial ca.srl \
         -days 3650 -extfile openssl.cnf -extensions leaf -out cert.pem",
    );
}

/// A DNS query (id 0x5742, recursion desired) for the A record of `name`.
fn dns_query(name: &str) -> Vec<u8> {
    let mut q = vec![0x57, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(u8::try_from(label.len()).expect("label length"));
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

/// Whether a DNS server on `127.0.0.1:port` (UDP, as pebble asks) answers an A query for a
/// made-up name with 127.0.0.1: then it is our `pebble-challtestsrv`, not some other
/// program that took the port.
fn dns_answers(port: u16) -> bool {
    let Ok(socket) = UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let _ = socket.set_read_timeout(Some(Duration::from_millis(500)));
    if socket
        .send_to(&dns_query("ready.wharf-testkit.test"), ("127.0.0.1", port))
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 512];
    let Ok(n) = socket.recv(&mut buf) else {
        return false;
    };
    let reply = &buf[..n];
    // Same id, a response, no error, at least one answer, an A record's RDLENGTH + 127.0.0.1.
    reply.len() > 12
        && reply[..2] == [0x57, 0x42]
        && reply[2] & 0x80 != 0
        && reply[3] & 0x0f == 0
        && u16::from_be_bytes([reply[6], reply[7]]) >= 1
        && reply.windows(6).any(|w| w == [0, 4, 127, 0, 0, 1])
}

/// The last 60 lines of a log file.
fn tail(path: &Path) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// A log file (created, appended to) for a child's stdout and stderr.
fn log_file(path: &Path) -> (File, File) {
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (f.try_clone().expect("clone the log file"), f)
}

impl Pebble {
    /// Starts `pebble-challtestsrv`, then `pebble`, and waits (at most 20 s each) until the
    /// DNS server answers and the directory and the management interface answer over HTTPS
    /// (trusting [`Pebble::directory_ca`]); panics with the servers' own log lines if either
    /// cannot start.
    ///
    /// `http_port`: where pebble validates HTTP-01 challenges (the port of the server under
    /// test's challenge listener, on 127.0.0.1); `always_valid`: `PEBBLE_VA_ALWAYS_VALID=1`,
    /// every challenge is valid without any request.
    pub fn start(http_port: u16, always_valid: bool) -> Pebble {
        for tool in [PEBBLE, CHALLTESTSRV] {
            assert!(
                Path::new(tool).is_file(),
                "{tool} is missing: run scripts/install-peers (it installs Debian's pebble)"
            );
        }
        require_tool("openssl");
        require_tool("curl");
        let dir = tempfile::tempdir().expect("tempdir");
        make_certs(dir.path());
        let ports = free_ports(5);
        let (dns_port, dns_management, directory, management_port, tls_port) =
            (ports[0], ports[1], ports[2], ports[3], ports[4]);
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{directory}"),
                "managementListenAddress": format!("127.0.0.1:{management_port}"),
                "certificate": path_str(&dir.path().join("cert.pem")),
                "privateKey": path_str(&dir.path().join("key.pem")),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false,
            }
        });
        let config_path = dir.path().join("pebble.json");
        std::fs::write(
            &config_path,
            serde_json::to_string_pretty(&config).expect("pebble.json"),
        )
        .expect("write pebble.json");
        let mut pebble = Pebble {
            directory_url: format!("https://127.0.0.1:{directory}/dir"),
            management_port,
            http_port,
            dns_port,
            pebble: None,
            challtestsrv: None,
            dir,
        };
        // From here on a panic drops `pebble`, which stops whatever was started.
        pebble.start_challtestsrv(dns_management);
        pebble.start_pebble(&config_path, always_valid);
        pebble
    }

    fn challtestsrv_log(&self) -> PathBuf {
        self.dir.path().join("challtestsrv.log")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("pebble.log")
    }

    fn start_challtestsrv(&mut self, management: u16) {
        let dns = format!("127.0.0.1:{}", self.dns_port);
        let (out, err) = log_file(&self.challtestsrv_log());
        let child = Command::new(CHALLTESTSRV)
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .args(["-dns01", &dns])
            .args(["-management", &format!("127.0.0.1:{management}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("{CHALLTESTSRV}: {e} (run scripts/install-peers)"));
        self.challtestsrv = Some(child);
        let end = Instant::now() + START_LIMIT;
        loop {
            if let Some(Ok(Some(status))) = self.challtestsrv.as_mut().map(Child::try_wait) {
                self.challtestsrv = None;
                panic!(
                    "pebble-challtestsrv exited ({status}) before it answered DNS on {dns}; its \
                     log:\n{}",
                    tail(&self.challtestsrv_log())
                );
            }
            if dns_answers(self.dns_port) {
                return;
            }
            // It does not exit when a port is taken: it logs `listen udp ADDR: bind: address
            // already in use` and runs on.
            let log = tail(&self.challtestsrv_log());
            assert!(
                Instant::now() < end && !log.contains("address already in use"),
                "pebble-challtestsrv did not answer DNS on {dns} (UDP); its log:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn start_pebble(&mut self, config: &Path, always_valid: bool) {
        let (out, err) = log_file(&self.log_path());
        let mut cmd = Command::new(PEBBLE);
        cmd.arg("-config")
            .arg(config)
            .args(["-dnsserver", &format!("127.0.0.1:{}", self.dns_port)])
            .current_dir(self.dir.path());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PEBBLE_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0");
        if always_valid {
            cmd.env("PEBBLE_VA_ALWAYS_VALID", "1");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("{PEBBLE}: {e} (run scripts/install-peers)"));
        self.pebble = Some(child);
        let roots = format!("https://127.0.0.1:{}/roots/0", self.management_port);
        let end = Instant::now() + START_LIMIT;
        loop {
            if let Some(Ok(Some(status))) = self.pebble.as_mut().map(Child::try_wait) {
                self.pebble = None;
                panic!(
                    "pebble exited ({status}) before its directory {} answered; its log:\n{}",
                    self.directory_url,
                    tail(&self.log_path())
                );
            }
            // The TLS handshake with our CA proves that it is this pebble.
            let last = match (self.curl(&self.directory_url), self.curl(&roots)) {
                (Ok(_), Ok(_)) => return,
                (Err(e), _) | (_, Err(e)) => e,
            };
            assert!(
                Instant::now() < end,
                "pebble did not answer on {} and {roots} within {START_LIMIT:?} (curl: {last}); \
                 its log:\n{}",
                self.directory_url,
                tail(&self.log_path())
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// GET `url` with curl, trusting [`Pebble::directory_ca`]: the body of a 200, or what
    /// went wrong.
    fn curl(&self, url: &str) -> Result<String, String> {
        let out = output_within(
            Command::new("curl")
                .args(["-sS", "--max-time", "5", "--fail", "--cacert"])
                .arg(self.directory_ca())
                .arg(url),
            Duration::from_secs(20),
        );
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "{url}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// The PEM CA certificate that signed pebble's own HTTPS certificate (for 127.0.0.1 and
    /// `localhost`): what an ACME client must trust to talk to the directory.
    pub fn directory_ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A PEM file with the root and the intermediate that sign issued certificates, fetched
    /// now from the management interface (`/roots/0`, `/intermediates/0`): what a client of
    /// the server under test trusts (the root is enough when the server sends its chain).
    pub fn issuer_roots(&self) -> PathBuf {
        let mut pem = String::new();
        for what in ["roots", "intermediates"] {
            let url = format!("https://127.0.0.1:{}/{what}/0", self.management_port);
            let cert = self
                .curl(&url)
                .unwrap_or_else(|e| panic!("pebble's {what}: {e}; its log:\n{}", self.log()));
            assert!(
                cert.contains("-----BEGIN CERTIFICATE-----"),
                "{url} is not a PEM certificate: {cert:?}"
            );
            pem.push_str(cert.trim_end());
            pem.push('\n');
        }
        let path = self.dir.path().join("issuer-roots.pem");
        std::fs::write(&path, pem).expect("write issuer-roots.pem");
        path
    }

    /// What pebble wrote so far (stdout and stderr): requests, validations, issuances.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// How many certificates pebble has issued (orders finalized) so far: its log lines
    /// `Pebble … Issued certificate serial SERIAL for order ORDER`. Pebble writes the line before
    /// the order turns `valid`, so a client that has its certificate is already counted.
    pub fn issued_count(&self) -> usize {
        self.log()
            .lines()
            .filter(|line| line.to_ascii_lowercase().contains(ISSUED))
            .count()
    }

    /// The temporary directory: `pebble.json`, `pebble.log`, `challtestsrv.log`, the
    /// certificates.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops pebble, then its DNS server (SIGTERM by their PIDs, at most 10 s each, then
    /// SIGKILL). Nothing happens for one that is not running.
    pub fn stop(&mut self) {
        crate::stop_child(&mut self.pebble, Duration::from_secs(10));
        crate::stop_child(&mut self.challtestsrv, Duration::from_secs(10));
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_query_bytes() {
        assert_eq!(
            dns_query("a.bc"),
            b"\x57\x42\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01a\x02bc\x00\x00\x01\x00\x01"
        );
    }

    #[test]
    fn free_ports_are_distinct() {
        let mut ports = free_ports(5);
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 5);
    }
}
