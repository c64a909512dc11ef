//! Users in a database: `wharf users` on SQLite and PostgreSQL (real: a PostgreSQL server of the
//! test's own), logins through `wharf serve --users-db`, two nodes on one PostgreSQL, and a
//! database that goes away and comes back.

use std::process::Command;
use std::time::{Duration, Instant};

use wharf_testkit::postgres::Postgres;
use wharf_testkit::{Ftp, Server, output_with_input, output_within, write_file};

use crate::BIN;

/// `wharf users --db URL ARGS`, with `input` on stdin: (exit code, stdout, stderr).
fn users(url: &str, args: &[&str], input: Option<&str>) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["users", "--db", url]).args(args);
    let out = output_with_input(&mut cmd, input.map(str::as_bytes), Duration::from_secs(60));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn serve(url: &str) -> Server {
    Server::builder(BIN)
        .args(&["--users-db", url])
        .config("[limits]\nfailed_login_delay_ms = 0\nban_after_failures = 0\nmax_login_failures = 100\n")
        .start()
}

/// The code of the reply to PASS (or to USER when that already decides).
fn login_code(server: &Server, user: &str, password: &str) -> u16 {
    Ftp::login_code([127, 0, 0, 1].into(), server.addr, user, password)
}

#[test]
fn users_in_sqlite_are_managed_with_wharf_users_and_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("users.db").display());
    // A generated password, printed once on stdout; the file is made.
    let (code, out, err) = users(&url, &["add", "alice", "--perm", "all"], None);
    assert_eq!(code, 0, "{err}");
    let alice_pw = out.trim().to_string();
    assert_eq!(alice_pw.len(), 20, "{out}");
    assert!(alice_pw.chars().all(|c| c.is_ascii_alphanumeric()), "{out}");
    assert!(dir.path().join("users.db").exists());
    // Bob: his own home, read only, his password from stdin, a session limit.
    let home = dir.path().join("bob");
    std::fs::create_dir(&home).unwrap();
    write_file(&home.join("report.txt"), b"bob's report\n");
    let home_arg = home.to_string_lossy().into_owned();
    let (code, out, err) = users(
        &url,
        &[
            "add",
            "bob",
            "--password-stdin",
            "--home",
            &home_arg,
            "--max-sessions",
            "1",
        ],
        Some("bob-secret\n"),
    );
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    // Refusals: an existing name, a relative home, an unknown permission, the anonymous name.
    for (args, want) in [
        (
            vec!["add", "bob", "--password-stdin"],
            "user `bob` already exists",
        ),
        (
            vec!["add", "carl", "--home", "rel/dir"],
            "give an absolute path",
        ),
        (
            vec!["add", "carl", "--perm", "read,fly"],
            "unknown permission `fly`",
        ),
        (vec!["add", "anonymous"], "the anonymous login, not a user"),
        (vec!["show", "nobody-here"], "no user `nobody-here`"),
    ] {
        let (code, _, err) = users(&url, &args, Some("pw\n"));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }

    let server = serve(&url);
    // Alice: every right, in the server's root.
    let mut ftp = Ftp::login_to(server.addr, "alice", &alice_pw);
    assert_eq!(ftp.upload("STOR up.bin", b"from alice").code, 226);
    assert_eq!(std::fs::read(server.path("up.bin")).unwrap(), b"from alice");
    // Bob: his home, read only, one session at a time.
    let mut bob = Ftp::login_to(server.addr, "bob", "bob-secret");
    let (bytes, r) = bob.download("RETR report.txt");
    assert_eq!((bytes.as_slice(), r.code), (&b"bob's report\n"[..], 226));
    assert_eq!(bob.cmd("MKD new").code, 550);
    assert_eq!(
        login_code(&server, "bob", "bob-secret"),
        530,
        "a second session"
    );
    drop(bob);
    std::thread::sleep(Duration::from_millis(200));
    // Wrong password, unknown user: 530 alike; anonymous is off when users are in a database.
    assert_eq!(login_code(&server, "bob", "wrong"), 530);
    assert_eq!(login_code(&server, "zed", "x"), 530);
    assert_eq!(login_code(&server, "anonymous", "x"), 530);
    // Disabled, enabled, a new password, deleted: each seen by the running server at once.
    assert_eq!(users(&url, &["disable", "bob"], None).0, 0);
    assert_eq!(login_code(&server, "bob", "bob-secret"), 530);
    assert_eq!(users(&url, &["enable", "bob"], None).0, 0);
    assert_eq!(login_code(&server, "bob", "bob-secret"), 230);
    assert_eq!(users(&url, &["passwd", "bob"], Some("new-secret\n")).0, 0);
    assert_eq!(login_code(&server, "bob", "bob-secret"), 530);
    assert_eq!(login_code(&server, "bob", "new-secret"), 230);
    let log = server.log();
    assert!(log.contains("user=bob reason=account disabled"), "{log}");
    // A real client: curl lists bob's home.
    let out = output_within(
        Command::new("curl").args(["-sS", &format!("ftp://bob:new-secret@{}/", server.addr)]),
        Duration::from_secs(30),
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("report.txt"),
        "{out:?}"
    );
    // The listing, with the last login recorded.
    let (code, out, _) = users(&url, &["list", "--json"], None);
    assert_eq!(code, 0);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(list[0]["permissions"], "all");
    assert_eq!(list[1]["home"], home_arg.as_str());
    assert_eq!(list[1]["max_sessions"], 1);
    assert!(list[1]["last_login"].is_u64(), "{list}");
    let (_, out, _) = users(&url, &["show", "bob"], None);
    assert!(out.contains("permissions:   read\n"), "{out}");
    assert_eq!(users(&url, &["del", "bob"], None).0, 0);
    assert_eq!(login_code(&server, "bob", "new-secret"), 530);
    // Import the [[user]] entries of a config file, hashes as they are.
    let config = dir.path().join("old.toml");
    std::fs::write(
        &config,
        format!(
            "root = '{}'\n[[user]]\nname = 'carol'\npassword_hash = '{}'\npermissions = ['read', 'write']\n",
            server.root.display(),
            wharf_testkit::PW_HASH
        ),
    )
    .unwrap();
    let (code, _, err) = users(
        &url,
        &["import", "--config", &config.to_string_lossy()],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("imported 1 users"), "{err}");
    let (code, _, err) = users(
        &url,
        &["import", "--config", &config.to_string_lossy()],
        None,
    );
    assert!(code == 0 && err.contains("`carol` exists already"), "{err}");
    assert_eq!(login_code(&server, "carol", "pw"), 230);
}

#[test]
fn a_database_that_cannot_be_reached_stops_the_start_with_a_clear_error() {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--users-db",
        "postgres://wharf:hunter2@127.0.0.1:1/ftp",
    ]);
    if wharf_testkit::is_root() {
        cmd.arg("--allow-root");
    }
    let out = output_within(&mut cmd, Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "wharf: --users-db: postgres://wharf:***@127.0.0.1:1/ftp: user database unavailable"
        ),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    let (code, _, err) = users("mysql://x", &["list"], None);
    assert_eq!(code, 2);
    assert!(err.contains("is not a user database URL"), "{err}");
}

/// Two nodes on one PostgreSQL: a user added once logs in on both. The database stopped: logins
/// get 421 (never a login), and once it is back they work again without restarting wharf.
#[test]
fn two_nodes_share_users_in_postgresql_and_survive_its_restart() {
    let pg = Postgres::start();
    let url = pg.url();
    let (code, _, err) = users(
        &url,
        &["add", "dave", "--password-stdin", "--perm", "all"],
        Some("dave-pw\n"),
    );
    assert_eq!(code, 0, "{err}");
    let one = Server::builder(BIN)
        .args(&["--users-db", &url, "--admin", "127.0.0.1:0"])
        .config("[limits]\nfailed_login_delay_ms = 0\n")
        .start();
    let two = serve(&url);
    let (code, body) = crate::admin::api(&one, "GET", "/health", None, None);
    assert_eq!(
        (code, crate::admin::json(&body)["users_db"].as_str()),
        (200, Some("ok")),
        "{body}"
    );
    assert_eq!(login_code(&one, "dave", "dave-pw"), 230);
    assert_eq!(login_code(&two, "dave", "dave-pw"), 230);
    assert_eq!(login_code(&two, "dave", "wrong"), 530);
    // Added while both run: seen by both.
    let (code, _, _) = users(
        &url,
        &["add", "erin", "--password-stdin"],
        Some("erin-pw\n"),
    );
    assert_eq!(code, 0);
    assert_eq!(login_code(&one, "erin", "erin-pw"), 230);
    assert_eq!(login_code(&two, "erin", "erin-pw"), 230);

    pg.stop();
    let mut ftp = Ftp::connect(one.addr);
    assert_eq!(ftp.cmd("USER dave").code, 331);
    let r = ftp.cmd("PASS dave-pw");
    assert_eq!(r.code, 421, "{}", r.text);
    assert!(
        one.wait_log("user database unavailable", 1),
        "{}",
        one.log()
    );
    // The health check says so too: 503, with the database's error.
    let (code, body) = crate::admin::api(&one, "GET", "/health", None, None);
    assert_eq!(code, 503, "{body}");
    assert_eq!(crate::admin::json(&body)["status"], "unavailable");

    pg.start_again();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut codes = Vec::new();
    loop {
        let code = login_code(&two, "dave", "dave-pw");
        codes.push(code);
        if code == 230 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(codes.last(), Some(&230), "{codes:?}\n{}", two.log());
    assert_eq!(login_code(&one, "dave", "dave-pw"), 230);
    assert_eq!(crate::admin::api(&one, "GET", "/health", None, None).0, 200);
}
