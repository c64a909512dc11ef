//! An OpenLDAP directory of the test's own: Debian's `slapd` (`scripts/install-peers`, which
//! installs it with no system directory and never starts it), run from a `slapd.conf` in a
//! temporary directory, on loopback ports of its own, its entries loaded with `slapadd` before
//! it starts, and stopped (SIGTERM by its PID) when dropped. Runs as whoever runs the tests (no
//! `-u`): it only touches its temporary directory and the schemas in `/etc/ldap/schema`.
//!
//! The directory (base [`Slapd::BASE`]):
//! - `cn=reader,dc=example,dc=test` ([`Slapd::READER_DN`], [`Slapd::READER_PASSWORD`]): a
//!   service account that may read and search everything but passwords;
//! - `uid=NAME,ou=people,dc=example,dc=test` for each [`LdapUser`] (see [`Slapd::user_dn`]):
//!   `inetOrgPerson` (`uid`, `cn` and `sn` = NAME), plus `posixAccount` (`uidNumber`,
//!   `gidNumber`, `homeDirectory`) when the user has a home; a user without one has no
//!   `homeDirectory` attribute at all. The password is stored `{SSHA}`-hashed (`slappasswd`);
//! - `cn=GROUP,ou=groups,dc=example,dc=test`, a `groupOfNames` whose `member`s are the DNs of
//!   the users that name GROUP (only groups with a member exist: `member` is required).
//!
//! Access: `userPassword` is readable by nobody, usable to bind by anonymous, writable (and
//! usable to bind) by its owner; groups are readable by every bound user (as in most
//! directories); every other attribute is readable by the reader and by the
//! entry's own user; anonymous sees nothing (a search without a bind finds no base: 32). The
//! root DN ([`Slapd::ADMIN_DN`], [`Slapd::ADMIN_PASSWORD`]) may change anything (`ldapmodify`).
//!
//! ```no_run
//! use wharf_testkit::slapd::{LdapUser, Slapd};
//! let ldap = Slapd::start(
//!     &[LdapUser { uid: "alice", password: "alicepw", home: Some("/srv/alice"), groups: &["staff"], description: None }],
//!     None,
//! );
//! let url = ldap.url(); // ldap://127.0.0.1:PORT
//! assert_eq!(ldap.bind_count(), 0);
//! ```

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::output_within;

const SLAPD: &str = "/usr/sbin/slapd";
const SLAPADD: &str = "/usr/sbin/slapadd";
const SLAPPASSWD: &str = "/usr/sbin/slappasswd";
const SCHEMAS: [&str; 4] = ["core", "cosine", "inetorgperson", "nis"];

/// How long [`Slapd::start`] and [`Slapd::start_again`] wait for the directory to answer.
const START_LIMIT: Duration = Duration::from_secs(15);

/// One user of the directory.
#[derive(Clone, Copy, Debug)]
pub struct LdapUser<'a> {
    /// The `uid` (and `cn`, `sn`); the entry is `uid=UID,ou=people,dc=example,dc=test`.
    pub uid: &'a str,
    pub password: &'a str,
    /// The `homeDirectory`; `None`: the entry has no such attribute (nor `posixAccount`).
    pub home: Option<&'a str>,
    /// The `cn`s of the `groupOfNames` under `ou=groups` that list this user as a `member`.
    pub groups: &'a [&'a str],
    /// A `description`, if any (tests keep address rules there).
    pub description: Option<&'a str>,
}

/// A running `slapd`, stopped (SIGTERM by its PID) when dropped.
pub struct Slapd {
    /// The `ldap://` port: plain LDAP, and StartTLS when started with a certificate.
    pub port: u16,
    /// The `ldaps://` port (TLS from the first byte), when started with a certificate.
    pub tls_port: Option<u16>,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

use crate::free_port;

/// A path for slapd.conf, in double quotes (slapd.conf's own quoting).
fn conf_path(p: &Path) -> String {
    let s = p.to_string_lossy();
    assert!(
        !s.contains(['"', '\\', '\n']),
        "a path slapd.conf cannot quote: {s:?}"
    );
    format!("\"{s}\"")
}

/// The slapd.conf of a directory whose files are in `dir` (`slapd.pid`, `slapd.args`, `db/`,
/// and `cert.pem` + `key.pem` when `tls`).
fn slapd_conf(dir: &Path, tls: bool) -> String {
    let mut c =
        String::from("# wharf-testkit's test directory (crates/wharf-testkit/src/slapd.rs)\n");
    for schema in SCHEMAS {
        c.push_str(&format!("include /etc/ldap/schema/{schema}.schema\n"));
    }
    // Debian builds back_mdb as a module (only config, ldif and monitor are static).
    c.push_str("modulepath /usr/lib/ldap\nmoduleload back_mdb\n");
    c.push_str(&format!("pidfile {}\n", conf_path(&dir.join("slapd.pid"))));
    c.push_str(&format!(
        "argsfile {}\n",
        conf_path(&dir.join("slapd.args"))
    ));
    if tls {
        c.push_str(&format!(
            "TLSCertificateFile {}\n",
            conf_path(&dir.join("cert.pem"))
        ));
        c.push_str(&format!(
            "TLSCertificateKeyFile {}\n",
            conf_path(&dir.join("key.pem"))
        ));
    }
    c.push_str(&format!(
        "\ndatabase mdb\n\
         suffix \"{base}\"\n\
         rootdn \"{admin}\"\n\
         rootpw {admin_pw}\n\
         directory {db}\n\
         dbnosync\n\
         \n\
         access to attrs=userPassword\n\
         \tby self =xw\n\
         \tby anonymous auth\n\
         \tby * none\n\
         access to dn.subtree=\"ou=groups,dc=example,dc=test\"\n\
         \tby users read\n\
         \tby * none\n\
         access to *\n\
         \tby dn.exact=\"{reader}\" read\n\
         \tby self read\n\
         \tby * none\n",
        base = Slapd::BASE,
        admin = Slapd::ADMIN_DN,
        admin_pw = Slapd::ADMIN_PASSWORD,
        db = conf_path(&dir.join("db")),
        reader = Slapd::READER_DN,
    ));
    c
}

/// An RDN value escaped as RFC 4514 says (`,` `+` `"` `\` `<` `>` `;` `=`, a leading `#` or
/// space, a trailing space).
fn rdn_value(v: &str) -> String {
    let mut out = String::new();
    let last = v.chars().count().saturating_sub(1);
    for (i, ch) in v.chars().enumerate() {
        let special = matches!(ch, ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=')
            || (i == 0 && (ch == '#' || ch == ' '))
            || (i == last && ch == ' ');
        if special {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One LDIF line `name: value`, or `name:: BASE64` when the value is not an RFC 2849
/// SAFE-STRING (non-ASCII, CR, LF, NUL, a leading space, colon or `<`, a trailing space).
fn ldif_line(name: &str, value: &str) -> String {
    let safe = value
        .bytes()
        .all(|b| (1..0x80).contains(&b) && b != b'\n' && b != b'\r')
        && !value.starts_with([' ', ':', '<'])
        && !value.ends_with(' ');
    if safe {
        format!("{name}: {value}\n")
    } else {
        format!("{name}:: {}\n", base64(value.as_bytes()))
    }
}

/// `{SSHA}…` of `password`, from `slappasswd`.
fn ssha(password: &str) -> String {
    let out = output_within(
        Command::new(SLAPPASSWD).args(["-n", "-s", password]),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "slappasswd failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The entries `slapadd` loads: the base, `ou=people`, `ou=groups`, the reader, the users,
/// their groups.
fn ldif(users: &[LdapUser]) -> String {
    let mut l = format!(
        "dn: {base}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: example\n\n\
         dn: {people}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: {groups}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: {reader}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: reader\n",
        base = Slapd::BASE,
        people = Slapd::PEOPLE,
        groups = Slapd::GROUPS,
        reader = Slapd::READER_DN,
    );
    l.push_str(&ldif_line("userPassword", &ssha(Slapd::READER_PASSWORD)));
    // Groups in the order they are first named, each with its members' DNs.
    let mut groups: Vec<(&str, Vec<String>)> = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let dn = Slapd::user_dn(user.uid);
        l.push('\n');
        l.push_str(&ldif_line("dn", &dn));
        l.push_str("objectClass: inetOrgPerson\n");
        if user.home.is_some() {
            l.push_str("objectClass: posixAccount\n");
        }
        for name in ["uid", "cn", "sn"] {
            l.push_str(&ldif_line(name, user.uid));
        }
        if let Some(home) = user.home {
            let id = 10_000 + i;
            l.push_str(&format!("uidNumber: {id}\ngidNumber: {id}\n"));
            l.push_str(&ldif_line("homeDirectory", home));
        }
        if let Some(d) = user.description {
            l.push_str(&ldif_line("description", d));
        }
        l.push_str(&ldif_line("userPassword", &ssha(user.password)));
        for &group in user.groups {
            match groups.iter_mut().find(|(g, _)| *g == group) {
                Some((_, members)) => members.push(dn.clone()),
                None => groups.push((group, vec![dn.clone()])),
            }
        }
    }
    for (group, members) in groups {
        l.push('\n');
        l.push_str(&ldif_line("dn", &Slapd::group_dn(group)));
        l.push_str("objectClass: groupOfNames\n");
        l.push_str(&ldif_line("cn", group));
        for member in members {
            l.push_str(&ldif_line("member", &member));
        }
    }
    l
}

/// Runs `cmd` (stdout and stderr piped, little output) for at most `limit`; `None` when it
/// had to be killed.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Option<std::process::Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/install-peers installs ldap-utils)"));
    let end = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().ok(),
            Ok(None) if Instant::now() < end => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

impl Slapd {
    pub const BASE: &'static str = "dc=example,dc=test";
    /// Where the users are.
    pub const PEOPLE: &'static str = "ou=people,dc=example,dc=test";
    /// Where the groups are.
    pub const GROUPS: &'static str = "ou=groups,dc=example,dc=test";
    /// A service account that may search (and read everything but `userPassword`).
    pub const READER_DN: &'static str = "cn=reader,dc=example,dc=test";
    pub const READER_PASSWORD: &'static str = "reader-secret";
    /// The root DN (`rootdn`/`rootpw` of slapd.conf: no entry, no ACL applies to it).
    pub const ADMIN_DN: &'static str = "cn=admin,dc=example,dc=test";
    pub const ADMIN_PASSWORD: &'static str = "admin-secret";

    /// Loads `users` (and their groups) and starts the directory on two loopback ports, the
    /// second ([`Slapd::tls_port`], `ldaps://`) only with `tls`: the paths of a PEM
    /// certificate (chain) and of its PEM key, copied into the temporary directory, also
    /// offered by StartTLS on [`Slapd::port`]. Waits (at most 15 s) until the reader can bind;
    /// panics with slapd's own words if it cannot start.
    pub fn start(users: &[LdapUser], tls: Option<(&Path, &Path)>) -> Slapd {
        for tool in [SLAPD, SLAPADD, SLAPPASSWD] {
            assert!(
                Path::new(tool).is_file(),
                "{tool} is missing: run scripts/install-peers (it installs slapd and ldap-utils)"
            );
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path();
        std::fs::create_dir(path.join("db")).expect("db dir");
        if let Some((cert, key)) = tls {
            std::fs::copy(cert, path.join("cert.pem"))
                .unwrap_or_else(|e| panic!("copying {}: {e}", cert.display()));
            std::fs::copy(key, path.join("key.pem"))
                .unwrap_or_else(|e| panic!("copying {}: {e}", key.display()));
        }
        let conf = path.join("slapd.conf");
        std::fs::write(&conf, slapd_conf(path, tls.is_some())).expect("write slapd.conf");
        let data = path.join("data.ldif");
        std::fs::write(&data, ldif(users)).expect("write data.ldif");
        let mut cmd = Command::new(SLAPADD);
        cmd.arg("-f").arg(&conf).arg("-l").arg(&data);
        let out = output_within(&mut cmd, Duration::from_secs(60));
        assert!(
            out.status.success(),
            "slapadd failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut slapd = Slapd {
            port: free_port(),
            tls_port: tls.map(|_| free_port()),
            child: None,
            dir,
        };
        slapd.start_again();
        slapd
    }

    /// `ldap://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:PORT`, when started with a certificate.
    pub fn ldaps_url(&self) -> Option<String> {
        self.tls_port.map(|p| format!("ldaps://127.0.0.1:{p}"))
    }

    /// `uid=UID,ou=people,dc=example,dc=test` (UID escaped as a DN needs).
    pub fn user_dn(uid: &str) -> String {
        format!("uid={},{}", rdn_value(uid), Self::PEOPLE)
    }

    /// `cn=GROUP,ou=groups,dc=example,dc=test` (GROUP escaped as a DN needs).
    pub fn group_dn(group: &str) -> String {
        format!("cn={},{}", rdn_value(group), Self::GROUPS)
    }

    /// The temporary directory: `slapd.conf`, `data.ldif`, `db/`, `slapd.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("slapd.log")
    }

    /// What slapd wrote (`-d stats`: connections, operations, results), over every start.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// How many simple BIND requests for a user's DN slapd has received, over every start
    /// (one log, appended to): the lines
    /// `conn=N op=N BIND dn="uid=…,ou=people,dc=example,dc=test" method=128` that slapd writes
    /// when a bind request arrives, before it checks anything, so a wrong password, a locked
    /// or missing user (any DN under `ou=people`, compared without case) counts as much as a
    /// success, on the plain, StartTLS or ldaps port alike. Not counted: binds of the reader,
    /// of the admin, anonymous binds (`dn=""`), SASL binds, and the `mech=SIMPLE` line slapd
    /// adds for a bind that succeeded.
    pub fn bind_count(&self) -> usize {
        let suffix = format!(",{}", Self::PEOPLE);
        self.log()
            .lines()
            .filter_map(|line| {
                let rest = &line[line.find(" BIND dn=\"")? + " BIND dn=\"".len()..];
                rest.strip_suffix("\" method=128")
            })
            .filter(|dn| dn.to_ascii_lowercase().ends_with(&suffix))
            .count()
    }

    /// Stops slapd: SIGTERM by its PID, then waits (at most 15 s, then SIGKILL) until it has
    /// exited. Nothing happens when it is not running.
    pub fn stop(&mut self) {
        crate::stop_child(&mut self.child, Duration::from_secs(15));
    }

    /// Starts slapd (again, after [`Slapd::stop`]) on the same ports with the same data, and
    /// waits (at most 15 s) until the reader can bind; panics with the tail of slapd's log if
    /// it does not.
    pub fn start_again(&mut self) {
        assert!(
            self.child.is_none(),
            "slapd is already running (pid {:?})",
            self.pid()
        );
        let mut urls = format!("ldap://127.0.0.1:{}/", self.port);
        if let Some(p) = self.tls_port {
            urls.push_str(&format!(" ldaps://127.0.0.1:{p}/"));
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("slapd.log");
        let child = Command::new(SLAPD)
            .arg("-f")
            .arg(self.dir.path().join("slapd.conf"))
            .args(["-h", &urls, "-d", "stats"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("slapd.log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{SLAPD}: {e} (run scripts/install-peers)"));
        self.child = Some(child);
        let end = Instant::now() + START_LIMIT;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                panic!(
                    "slapd exited ({status}) before it answered on {urls}; its log:\n{}",
                    self.log_tail()
                );
            }
            let out = run_bounded(
                Command::new("ldapwhoami")
                    .args(["-x", "-o", "nettimeout=2", "-H", &self.url()])
                    .args(["-D", Self::READER_DN, "-w", Self::READER_PASSWORD]),
                Duration::from_secs(3),
            );
            let last = match out {
                Some(out) if out.status.success() => return,
                Some(out) => String::from_utf8_lossy(&out.stderr).trim().to_string(),
                None => "ldapwhoami got no answer within 3 s".to_string(),
            };
            if Instant::now() >= end {
                self.stop();
                panic!(
                    "slapd did not answer on {urls} within {START_LIMIT:?} (ldapwhoami as the \
                     reader: {last}); its log:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldif_values_and_dns() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64("é x".as_bytes()), "w6kgeA==");
        assert_eq!(ldif_line("uid", "alice"), "uid: alice\n");
        assert_eq!(ldif_line("uid", " a"), "uid:: IGE=\n");
        assert_eq!(ldif_line("uid", ":a"), "uid:: OmE=\n");
        assert_eq!(ldif_line("cn", "é"), "cn:: w6k=\n");
        assert_eq!(rdn_value("a,b+c"), "a\\,b\\+c");
        assert_eq!(rdn_value("#x "), "\\#x\\ ");
        assert_eq!(
            Slapd::user_dn("alice"),
            "uid=alice,ou=people,dc=example,dc=test"
        );
    }
}
