//! Logins from every source of users — an external hook (a panel's URL, a command), LDAP (a
//! real slapd on loopback), one-time codes and address rules — through curl and Python's
//! ftplib, with the exact replies and the log lines an admin reads.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wharf_server::identity::totp::{STEP, TotpSecret};
use wharf_testkit::slapd::{LdapUser, Slapd};
use wharf_testkit::{Ftp, PW_HASH, Server, output_within, require_tool, write_file};

use crate::BIN;
use crate::tls::make_cert;

/// The code of `secret` for now, `offset` steps away.
fn code(secret: &TotpSecret, offset: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / STEP;
    format!("{:06}", secret.code(now.saturating_add_signed(offset)))
}

/// A login and a download through Python's ftplib, from `from`: `OK <content>` or
/// `ERR <reply>`.
fn ftplib(addr: SocketAddr, from: &str, user: &str, password: &str, path: &str) -> String {
    let python = require_tool("python3");
    let script = r#"
import ftplib, sys
host, port, src, user, pw, path = sys.argv[1:7]
f = ftplib.FTP(source_address=(src, 0), timeout=20)
f.connect(host, int(port))
try:
    f.login(user, pw)
except ftplib.all_errors as e:
    print("ERR", e)
    sys.exit(0)
parts = []
f.retrbinary("RETR " + path, parts.append)
print("OK", b"".join(parts).decode())
f.quit()
"#;
    let out = output_within(
        Command::new(python)
            .arg("-c")
            .arg(script)
            .args([&addr.ip().to_string(), &addr.port().to_string(), from])
            .args([user, password, path]),
        Duration::from_secs(60),
    );
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// curl downloads `path` as `user`: its exit code and what it got.
fn curl(addr: SocketAddr, user: &str, password: &str, path: &str) -> (i32, String) {
    let out = output_within(
        Command::new(require_tool("curl"))
            .args([
                "-sS",
                "--max-time",
                "30",
                "-u",
                &format!("{user}:{password}"),
            ])
            .arg(format!("ftp://{addr}/{path}")),
        Duration::from_secs(60),
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// curl uploads `bytes` to `path` as `user`: its exit code.
fn curl_put(addr: SocketAddr, user: &str, password: &str, path: &str, bytes: &[u8]) -> i32 {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("up");
    write_file(&file, bytes);
    let out = output_within(
        Command::new(require_tool("curl"))
            .args([
                "-sS",
                "--max-time",
                "30",
                "-u",
                &format!("{user}:{password}"),
            ])
            .arg("-T")
            .arg(&file)
            .arg(format!("ftp://{addr}/{path}")),
        Duration::from_secs(60),
    );
    out.status.code().unwrap_or(-1)
}

/// Waits (at most 10 s) for `text` in the server's log.
fn logged(server: &Server, text: &str) -> bool {
    server.wait_log(text, 1)
}

/// A control panel: answers each POST with what `answer` makes of its JSON (status, body,
/// delay), one thread a connection, and keeps the requests.
struct Panel {
    port: u16,
    requests: Arc<Mutex<Vec<Value>>>,
}

type Answer = fn(&Value) -> (u16, Value, Duration);

impl Panel {
    fn start(answer: Answer) -> Panel {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().take(500) {
                let Ok(conn) = conn else { continue };
                let seen = seen.clone();
                std::thread::spawn(move || serve_one(conn, &seen, answer));
            }
        });
        Panel { port, requests }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/ftp-login", self.port)
    }

    /// Requests so far for `user`.
    fn asked(&self, user: &str) -> usize {
        let requests = self.requests.lock().unwrap();
        requests.iter().filter(|r| r["user"] == user).count()
    }

    fn last(&self) -> Value {
        self.requests.lock().unwrap().last().cloned().unwrap()
    }
}

/// One HTTP/1.1 exchange (or several, kept alive).
fn serve_one(conn: std::net::TcpStream, seen: &Mutex<Vec<Value>>, answer: Answer) {
    let mut writer = conn.try_clone().unwrap();
    let mut reader = BufReader::new(conn);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let request: Value = serde_json::from_slice(&body).unwrap();
        assert!(
            request_line.starts_with("POST /ftp-login "),
            "{request_line}"
        );
        seen.lock().unwrap().push(request.clone());
        let (status, reply, delay) = answer(&request);
        std::thread::sleep(delay);
        let text = reply.to_string();
        let head = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            text.len()
        );
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(text.as_bytes()).is_err()
        {
            return;
        }
    }
}

/// The TOTP secret of the panel's user `coded`.
const CODED_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

fn panel_answer(r: &Value) -> (u16, Value, Duration) {
    let quick = Duration::ZERO;
    match (r["user"].as_str().unwrap(), r["password"].as_str().unwrap()) {
        ("panel", "right") => (
            200,
            json!({"status": "ok", "home": PANEL_HOME.get(), "permissions": ["read"]}),
            quick,
        ),
        ("panel", _) => (403, json!({}), quick),
        ("coded", _) if r["password_before_code"] == "right" => (
            200,
            json!({"status": "ok", "totp_secret": CODED_SECRET}),
            quick,
        ),
        ("coded", _) => (200, json!({"status": "refused"}), quick),
        ("gone", _) => (200, json!({"status": "ok", "disabled": true}), quick),
        ("ruled", "right") => (
            200,
            json!({"status": "ok", "denied_addresses": ["127.0.0.2"]}),
            quick,
        ),
        ("slow", _) => (404, json!({}), Duration::from_secs(4)),
        ("broken", _) => (500, json!({}), quick),
        _ => (404, json!({}), quick),
    }
}

#[test]
fn a_panel_url_answers_logins_with_accounts_refusals_and_outages() {
    let panel = Panel::start(panel_answer);
    let homes = tempfile::tempdir().unwrap();
    let panel_home = homes.path().join("panel");
    write_file(&panel_home.join("hello.txt"), b"from the panel");
    PANEL_HOME.get_or_init(|| panel_home.to_string_lossy().into_owned());
    let config = format!(
        "[limits]\nfailed_login_delay_ms = 0\nban_after_failures = 0\nmax_login_failures = 100\n\
         [auth]\norder = ['external', 'file']\n\
         [auth.external]\nurl = '{url}'\ntimeout_ms = 1500\ncache_secs = 60\n\
         [[user]]\nname = 'alice'\npassword_hash = '{PW_HASH}'\n",
        url = panel.url()
    );
    let server = Server::builder(BIN).config(&config).start();
    write_file(&server.path("root.txt"), b"the server's root");
    let a = server.addr;

    // Accepted: the panel's home, read-only; curl and ftplib alike.
    assert_eq!(
        curl(a, "panel", "right", "hello.txt"),
        (0, "from the panel".into())
    );
    let asked = panel.last();
    assert_eq!(asked["client"], "127.0.0.1", "{asked}");
    assert_eq!(asked["tls"], false, "{asked}");
    assert_eq!(
        curl_put(a, "panel", "right", "new.txt", b"x"),
        25,
        "read-only: 550 to STOR"
    );
    assert_eq!(
        ftplib(a, "127.0.0.1", "panel", "right", "hello.txt"),
        "OK from the panel"
    );
    assert_eq!(
        panel.asked("panel"),
        1,
        "the later logins came from the cache"
    );
    // Another password asks the panel; its refusal drops the cached entry.
    assert!(ftplib(a, "127.0.0.1", "panel", "wrong", "x").starts_with("ERR 530"));
    assert_eq!(panel.asked("panel"), 2);
    assert_eq!(
        ftplib(a, "127.0.0.1", "panel", "right", "hello.txt"),
        "OK from the panel"
    );
    assert_eq!(panel.asked("panel"), 3, "asked again after the refusal");
    assert!(logged(&server, "reason=wrong password"), "{}", server.log());

    // Disabled, refused by its address rule, unknown to the panel (the file's user next).
    assert!(ftplib(a, "127.0.0.1", "gone", "pw", "x").starts_with("ERR 530"));
    assert!(logged(&server, "reason=account disabled"));
    assert!(ftplib(a, "127.0.0.2", "ruled", "right", "x").starts_with("ERR 530"));
    assert!(logged(
        &server,
        "address rule: denied_addresses 127.0.0.2/32 of the user"
    ));
    assert_eq!(
        ftplib(a, "127.0.0.1", "ruled", "right", "root.txt"),
        "OK the server's root",
        "no home in the answer: the server's root"
    );
    assert_eq!(
        ftplib(a, "127.0.0.1", "alice", "pw", "root.txt"),
        "OK the server's root"
    );
    assert!(ftplib(a, "127.0.0.1", "nobody", "pw", "x").starts_with("ERR 530"));

    // A panel too slow or failing: 421 and a logged error, never a login.
    let t = Instant::now();
    assert!(ftplib(a, "127.0.0.1", "slow", "pw", "x").starts_with("ERR 421"));
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    assert!(
        logged(&server, "did not answer within 1500 ms"),
        "{}",
        server.log()
    );
    assert!(ftplib(a, "127.0.0.1", "broken", "pw", "x").starts_with("ERR 421"));
    assert!(logged(&server, "answered HTTP 500"), "{}", server.log());

    // Logins waiting on the panel hold no slot of the password queue: with four of them
    // waiting (more than this machine's slots), a file user's hash is checked at once, and its
    // login ends before any of theirs.
    let done = Arc::new(Mutex::new(Vec::new()));
    let waiting: Vec<_> = (2..6)
        .map(|i| {
            let done = done.clone();
            std::thread::spawn(move || {
                let from: IpAddr = format!("127.0.0.{i}").parse().unwrap();
                let code = Ftp::login_code(from, a, "slow", "pw");
                done.lock().unwrap().push(format!("slow {code}"));
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let alice = Ftp::login_code("127.0.0.1".parse().unwrap(), a, "alice", "pw");
    done.lock().unwrap().push(format!("alice {alice}"));
    for t in waiting {
        t.join().unwrap();
    }
    let order = done.lock().unwrap().clone();
    assert_eq!(
        order.first().map(String::as_str),
        Some("alice 230"),
        "{order:?}"
    );
    assert!(order[1..].iter().all(|o| o == "slow 421"), "{order:?}");

    // An empty password never reaches the panel.
    let before = panel.requests.lock().unwrap().len();
    assert_eq!(
        Ftp::login_code("127.0.0.1".parse().unwrap(), a, "panel", ""),
        530
    );
    assert!(logged(&server, "reason=empty password"));
    assert_eq!(panel.requests.lock().unwrap().len(), before);

    // The panel's user with one-time codes: the panel checks the password before the code,
    // Wharf the code.
    let secret = TotpSecret::parse(CODED_SECRET).unwrap();
    let now = code(&secret, 0);
    assert_eq!(curl(a, "coded", &format!("right{now}"), "root.txt").0, 0);
    let asked = panel.last();
    assert_eq!(asked["password_before_code"], "right", "{asked}");
    assert_eq!(asked["code"], now.as_str(), "{asked}");
    // Without a code the panel refuses (it checks `password_before_code`).
    assert!(ftplib(a, "127.0.0.1", "coded", "right", "x").starts_with("ERR 530"));
    assert!(ftplib(a, "127.0.0.2", "coded", &format!("right{now}"), "x").starts_with("ERR 530"));
    assert!(logged(
        &server,
        "one-time code already used from another address"
    ));
    assert!(ftplib(a, "127.0.0.1", "coded", &format!("wrong{now}"), "x").starts_with("ERR 530"));
}

/// The home the panel gives `panel` (one test sets it before the panel answers).
static PANEL_HOME: std::sync::OnceLock<String> = std::sync::OnceLock::new();

#[test]
fn a_command_hook_answers_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("check-login");
    // The login comes as JSON on stdin; the answer goes to stdout. No shell runs it: the
    // program is `sh` with the script as its argument.
    std::fs::write(
        &script,
        r#"read -r line
case "$line" in
  *'"password":"s3cret"'*'"user":"hooked"'*) echo '{"status":"ok","permissions":["read","write"]}' ;;
  *'"user":"hooked"'*) echo '{"status":"refused"}' ;;
  *'"user":"locked"'*) echo '{"status":"ok","disabled":true}' ;;
  *'"user":"crash"'*) exit 1 ;;
  *) echo '{"status":"unknown"}' ;;
esac
"#,
    )
    .unwrap();
    let config = format!(
        "[limits]\nfailed_login_delay_ms = 0\nban_after_failures = 0\n\
         [auth.external]\ncommand = ['sh', '{}']\n",
        script.display()
    );
    let server = Server::builder(BIN).config(&config).start();
    write_file(&server.path("f.txt"), b"file");
    let a = server.addr;
    assert_eq!(curl(a, "hooked", "s3cret", "f.txt"), (0, "file".into()));
    assert_eq!(curl_put(a, "hooked", "s3cret", "up.txt", b"up"), 0);
    assert_eq!(std::fs::read(server.path("up.txt")).unwrap(), b"up");
    assert_eq!(
        curl(a, "hooked", "nope", "f.txt").0,
        67,
        "530: curl's login denied"
    );
    assert!(ftplib(a, "127.0.0.1", "locked", "pw", "f.txt").starts_with("ERR 530"));
    assert!(logged(&server, "reason=account disabled"));
    assert!(ftplib(a, "127.0.0.1", "crash", "pw", "f.txt").starts_with("ERR 421"));
    assert!(logged(&server, "exit status: 1"), "{}", server.log());
    assert!(ftplib(a, "127.0.0.1", "stranger", "pw", "f.txt").starts_with("ERR 530"));
    assert!(logged(&server, "reason=unknown user"));
}

const GINA_SECRET: &str = "KRSXG5CTMVRXEZLUKRSXG5CTMVRXEZLU";

fn ldap_users<'a>() -> Vec<LdapUser<'a>> {
    vec![
        LdapUser {
            uid: "carol",
            password: "carol-pw",
            home: None,
            groups: &["ftp-writers"],
            description: None,
        },
        LdapUser {
            uid: "dave",
            password: "dave-pw",
            home: None,
            groups: &["ftp-readers"],
            description: Some("127.0.0.2"),
        },
        LdapUser {
            uid: "erin",
            password: "erin-pw",
            home: None,
            groups: &[],
            description: None,
        },
        // Her one-time code secret is in `description` (the code test reads it from there).
        LdapUser {
            uid: "gina",
            password: "gina-pw",
            home: None,
            groups: &["ftp-readers"],
            description: Some(GINA_SECRET),
        },
    ]
}

/// `[auth.ldap]` over the test directory: search then bind, StartTLS with the test CA.
fn ldap_config(slapd: &Slapd, ca: &Path, extra: &str) -> String {
    format!(
        "[limits]\nfailed_login_delay_ms = 0\n{extra}\n\
         [auth.ldap]\nurl = '{url}'\nca = '{ca}'\nsearch_base = '{people}'\n\
         service_dn = '{reader}'\nservice_password = '{reader_pw}'\n\
         user_filter = '(objectClass=inetOrgPerson)'\ngroup_base = '{groups}'\n\
         denied_addresses_attribute = 'description'\ntimeout_ms = 3000\n\
         [auth.ldap.groups]\nftp-writers = ['read', 'write']\nftp-readers = ['read']\n",
        url = slapd.url(),
        ca = ca.display(),
        people = Slapd::PEOPLE,
        groups = Slapd::GROUPS,
        reader = Slapd::READER_DN,
        reader_pw = Slapd::READER_PASSWORD,
    )
}

#[test]
fn ldap_logins_with_starttls_groups_rules_and_a_directory_that_goes_away() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(certs.path(), "localhost");
    let mut slapd = Slapd::start(&ldap_users(), Some((&cert, &key)));
    let server = Server::builder(BIN)
        .config(&ldap_config(&slapd, &cert, "ban_after_failures = 0"))
        .start();
    write_file(&server.path("f.txt"), b"shared");
    let a = server.addr;

    // A writer uploads; a reader reads but may not write; a user in no mapped group is refused.
    assert_eq!(curl(a, "carol", "carol-pw", "f.txt"), (0, "shared".into()));
    assert_eq!(curl_put(a, "carol", "carol-pw", "c.txt", b"from carol"), 0);
    assert_eq!(std::fs::read(server.path("c.txt")).unwrap(), b"from carol");
    assert_eq!(
        ftplib(a, "127.0.0.1", "dave", "dave-pw", "c.txt"),
        "OK from carol"
    );
    assert_eq!(curl_put(a, "dave", "dave-pw", "d.txt", b"x"), 25);
    assert!(ftplib(a, "127.0.0.1", "erin", "erin-pw", "f.txt").starts_with("ERR 530"));
    assert!(logged(&server, "reason=account disabled"));
    // dave's entry denies 127.0.0.2.
    assert!(ftplib(a, "127.0.0.2", "dave", "dave-pw", "f.txt").starts_with("ERR 530"));
    assert!(logged(
        &server,
        "address rule: denied_addresses 127.0.0.2/32 of the user"
    ));
    // Wrong passwords, unknown names, and names that would change the filter: 530.
    assert_eq!(curl(a, "carol", "wrong", "f.txt").0, 67);
    for name in ["mallory", "*", "carol)(uid=*", "*)(|(uid=*"] {
        assert_eq!(
            Ftp::login_code("127.0.0.1".parse().unwrap(), a, name, "carol-pw"),
            530,
            "{name}"
        );
    }
    // (Unescaped, `*` would match every user and `carol)(uid=*` break the filter: 421.)

    // The directory goes away: 421, and a logged error; back, logins work without a restart.
    slapd.stop();
    assert!(ftplib(a, "127.0.0.1", "carol", "carol-pw", "f.txt").starts_with("ERR 421"));
    assert!(logged(
        &server,
        "login failed: the source of users is unavailable"
    ));
    slapd.start_again();
    assert_eq!(
        ftplib(a, "127.0.0.1", "carol", "carol-pw", "f.txt"),
        "OK shared"
    );
    drop(server);

    // One-time codes from the directory (read by the service account): the bind gets the
    // password before the code, Wharf checks the code; the name as the directory spells it
    // keys the used codes, so `GINA` cannot reuse gina's code from elsewhere.
    let config = ldap_config(&slapd, &cert, "ban_after_failures = 0")
        .replace("denied_addresses_attribute", "totp_attribute");
    let server = Server::builder(BIN).config(&config).start();
    write_file(&server.path("f.txt"), b"coded");
    let secret = TotpSecret::parse(GINA_SECRET).unwrap();
    let now = code(&secret, 0);
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    assert_eq!(Ftp::login_code(local, server.addr, "gina", "gina-pw"), 530);
    assert!(logged(
        &server,
        "reason=no one-time code after the password"
    ));
    assert_eq!(
        curl(server.addr, "gina", &format!("gina-pw{now}"), "f.txt"),
        (0, "coded".into())
    );
    assert_eq!(
        Ftp::login_code(local, server.addr, "gina", &format!("gina-px{now}")),
        530
    );
    assert_eq!(
        Ftp::login_code(other, server.addr, "GINA", &format!("gina-pw{now}")),
        530
    );
    assert!(logged(
        &server,
        "one-time code already used from another address"
    ));
    assert_eq!(
        Ftp::login_code(local, server.addr, "GINA", &format!("gina-pw{now}")),
        230
    );
    drop(server);

    // ldaps:// with a DN template: a bind straight to the user's DN.
    let ldaps = slapd.ldaps_url().unwrap();
    let config = format!(
        "[limits]\nfailed_login_delay_ms = 0\n[auth.ldap]\nurl = '{ldaps}'\nca = '{}'\n\
         bind_dn = 'uid={{user}},{}'\n",
        cert.display(),
        Slapd::PEOPLE
    );
    let server = Server::builder(BIN).config(&config).start();
    write_file(&server.path("f.txt"), b"over ldaps");
    assert_eq!(
        curl(server.addr, "erin", "erin-pw", "f.txt"),
        (0, "over ldaps".into())
    );
    assert_eq!(curl(server.addr, "erin", "carol-pw", "f.txt").0, 67);
    assert_eq!(
        Ftp::login_code(
            "127.0.0.1".parse().unwrap(),
            server.addr,
            "x,ou=people",
            "carol-pw"
        ),
        530
    );
}

#[test]
fn a_password_flood_reaches_the_directory_no_more_than_the_ban_allows() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(certs.path(), "localhost");
    let slapd = Slapd::start(&ldap_users(), Some((&cert, &key)));
    let server = Server::builder(BIN)
        .config(&ldap_config(
            &slapd,
            &cert,
            "ban_after_failures = 3\nmax_login_failures = 100",
        ))
        .start();
    let before = slapd.bind_count();
    let from: IpAddr = "127.0.0.3".parse().unwrap();
    // 12 clients at once, each trying a wrong password.
    let threads: Vec<_> = (0..12)
        .map(|i| {
            let addr = server.addr;
            std::thread::spawn(move || {
                let mut ftp = Ftp::connect_from(from, addr);
                if ftp.banner.code != 220 {
                    return ftp.banner.code;
                }
                if ftp.cmd("USER carol").code != 331 {
                    return 0;
                }
                ftp.cmd(&format!("PASS guess{i}")).code
            })
        })
        .collect();
    let codes: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        logged(&server, "address banned after failed logins"),
        "{}",
        server.log()
    );
    let binds = slapd.bind_count() - before;
    assert!(
        (1..=3).contains(&binds),
        "the directory saw {binds} binds; codes {codes:?}"
    );
    assert_eq!(
        codes.iter().filter(|c| **c == 530).count(),
        binds,
        "{codes:?}"
    );
    // The ban holds (421 at once, as the banner); another address still logs in.
    assert_eq!(Ftp::connect_from(from, server.addr).banner.code, 421);
    assert_eq!(
        Ftp::login_code(
            "127.0.0.1".parse().unwrap(),
            server.addr,
            "carol",
            "carol-pw"
        ),
        230
    );
    assert_eq!(slapd.bind_count() - before, binds + 1);
}

#[test]
fn one_time_codes_enrolled_with_wharf_users() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("users.db").display());
    let users = |args: &[&str], stdin: &str| {
        let mut child = Command::new(BIN)
            .args(["users", "--db", &db])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    users(&["add", "dave", "--password-stdin"], "pw\n");
    let uri = users(&["totp", "dave"], "");
    let secret = uri
        .split("secret=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .unwrap_or_else(|| panic!("no secret in {uri}"));
    assert!(uri.starts_with("otpauth://totp/Wharf:dave?"), "{uri}");
    let secret = TotpSecret::parse(secret).unwrap();
    assert!(users(&["show", "dave"], "").contains("one-time code: yes"));
    let listed: Value = serde_json::from_str(&users(&["list", "--json"], "")).unwrap();
    assert_eq!(listed[0]["totp"], true, "{listed}");

    // A config user with a code too.
    let cfg_secret = TotpSecret::generate().unwrap();
    let config = format!(
        "[limits]\nfailed_login_delay_ms = 0\nban_after_failures = 0\n\
         [[user]]\nname = 'erin'\npassword_hash = '{PW_HASH}'\ntotp_secret = '{}'\n",
        cfg_secret.base32()
    );
    let server = Server::builder(BIN)
        .args(&["--users-db", &db])
        .config(&config)
        .start();
    write_file(&server.path("f.txt"), b"two factors");
    let a = server.addr;
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    let login = |from: IpAddr, user: &str, pw: String| Ftp::login_code(from, a, user, &pw);

    let now = code(&secret, 0);
    assert_eq!(login(local, "dave", "pw".into()), 530, "the password alone");
    assert_eq!(
        curl(a, "dave", &format!("pw{now}"), "f.txt"),
        (0, "two factors".into())
    );
    assert_eq!(
        login(local, "dave", format!("pw{now}")),
        230,
        "again from the same address"
    );
    assert_eq!(
        login(other, "dave", format!("pw{now}")),
        530,
        "used from another address"
    );
    assert!(logged(
        &server,
        "one-time code already used from another address"
    ));
    assert_eq!(
        login(other, "dave", format!("pw{}", code(&secret, -1))),
        230,
        "a step of skew"
    );
    assert_eq!(
        login(local, "dave", format!("pw{}", code(&secret, 3))),
        530,
        "three steps ahead"
    );
    assert!(logged(&server, "reason=wrong one-time code"));
    assert_eq!(login(local, "dave", format!("px{now}")), 530);
    assert_eq!(
        ftplib(
            a,
            "127.0.0.1",
            "erin",
            &format!("pw{}", code(&cfg_secret, 0)),
            "f.txt"
        ),
        "OK two factors"
    );
    assert!(ftplib(a, "127.0.0.1", "erin", "pw", "f.txt").starts_with("ERR 530"));

    // Removed: the password alone again.
    users(&["totp", "dave", "--remove"], "");
    assert_eq!(login(local, "dave", "pw".into()), 230);
}

#[test]
fn address_rules_server_wide_and_from_the_database_refuse_before_any_password() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("users.db").display());
    let add = Command::new(BIN)
        .args(["users", "--db", &db, "add", "frank", "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().unwrap().write_all(b"pw\n")?;
            c.wait()
        })
        .unwrap();
    assert!(add.success());
    let set = output_within(
        Command::new(BIN).args([
            "users",
            "--db",
            &db,
            "set",
            "frank",
            "--allow",
            "127.0.0.0/8",
            "--deny",
            "127.0.0.4",
        ]),
        Duration::from_secs(30),
    );
    assert!(set.status.success(), "{set:?}");
    let config = format!(
        "[limits]\nfailed_login_delay_ms = 0\nban_after_failures = 2\nmax_login_failures = 100\n\
         [access]\ndenied_addresses = ['127.0.0.5']\n\
         [[user]]\nname = 'alice'\npassword_hash = '{PW_HASH}'\nallowed_addresses = ['127.0.0.1', '::1']\n"
    );
    let server = Server::builder(BIN)
        .args(&["--users-db", &db])
        .config(&config)
        .start();
    let a = server.addr;
    let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
    assert_eq!(Ftp::login_code(ip("127.0.0.1"), a, "alice", "pw"), 230);
    assert_eq!(Ftp::login_code(ip("127.0.0.2"), a, "alice", "pw"), 530);
    assert!(logged(
        &server,
        "address rule: allowed_addresses (not in 127.0.0.1/32, ::1/128) of the user"
    ));
    assert_eq!(Ftp::login_code(ip("127.0.0.2"), a, "frank", "pw"), 230);
    // Refusals by a rule are not failed passwords: three of them ban nothing.
    for _ in 0..3 {
        assert_eq!(Ftp::login_code(ip("127.0.0.4"), a, "frank", "pw"), 530);
    }
    assert!(logged(
        &server,
        "address rule: denied_addresses 127.0.0.4/32 of the user"
    ));
    assert_eq!(Ftp::login_code(ip("127.0.0.5"), a, "alice", "pw"), 530);
    assert!(logged(
        &server,
        "address rule: denied_addresses 127.0.0.5/32 of [access]"
    ));
    assert!(!server.log().contains("address banned"), "{}", server.log());
    assert_eq!(Ftp::login_code(ip("127.0.0.4"), a, "alice", "pw"), 530);
}

/// An https:// panel: its certificate is checked against `ca`; a panel the server does not
/// trust gets no password, and the login gets 421.
#[test]
fn an_https_panel_is_asked_only_with_its_certificate_checked() {
    let python = require_tool("python3");
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(dir.path(), "localhost");
    let other = tempfile::tempdir().unwrap();
    let (other_ca, _) = make_cert(other.path(), "elsewhere.example");
    let asked = dir.path().join("asked");
    let script = r#"
import http.server, json, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with open(sys.argv[3], "a") as f:
            f.write(body["user"] + "\n")
        ok = body["user"] == "tls-user" and body["password"] == "pw" and body["tls"] is False
        out = json.dumps({"status": "ok" if ok else "refused"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;
    let mut receiver = Command::new(python)
        .arg("-c")
        .arg(script)
        .args([&cert, &key, &asked])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    BufReader::new(receiver.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let config = |ca: &Path| {
        format!(
            "[limits]\nfailed_login_delay_ms = 0\n[auth.external]\n\
             url = 'https://localhost:{}/ftp-login'\nca = '{}'\n",
            port.trim(),
            ca.display()
        )
    };
    let trusting = Server::builder(BIN).config(&config(&cert)).start();
    let local: IpAddr = "127.0.0.1".parse().unwrap();
    assert_eq!(Ftp::login_code(local, trusting.addr, "tls-user", "pw"), 230);
    assert_eq!(Ftp::login_code(local, trusting.addr, "tls-user", "px"), 530);
    assert_eq!(std::fs::read_to_string(&asked).unwrap().lines().count(), 2);
    let doubting = Server::builder(BIN).config(&config(&other_ca)).start();
    assert_eq!(Ftp::login_code(local, doubting.addr, "tls-user", "pw"), 421);
    assert!(logged(&doubting, "certificate"), "{}", doubting.log());
    assert_eq!(
        std::fs::read_to_string(&asked).unwrap().lines().count(),
        2,
        "nothing sent to an untrusted panel"
    );
    let _ = receiver.kill();
    let _ = receiver.wait();
}
