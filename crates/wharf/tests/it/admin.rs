//! The admin listener, driven by curl: health and metrics without a token, the API with one —
//! users created and changed (and seen by FTP logins at once), live sessions with their
//! transfer, a session ended (the FTP client gets 421), bans listed and lifted, reload.

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use wharf_testkit::{Ftp, Server, output_with_input, write_file};

use crate::BIN;

/// `curl` to the admin listener: (HTTP status, body).
pub(crate) fn api(
    server: &Server,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let (addr, _) = server.admin.clone().expect("admin listener");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-X", method, "-w", "\n%{http_code}"]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    cmd.arg(format!("http://{addr}{path}"));
    let out = output_with_input(&mut cmd, None, Duration::from_secs(30));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

pub(crate) fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn login_code(server: &Server, from: &str, user: &str, password: &str) -> u16 {
    Ftp::login_code(from.parse().unwrap(), server.addr, user, password)
}

#[test]
fn admin_api_manages_users_sessions_and_bans() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("users.db").display());
    let server = Server::builder(BIN)
        .args(&["--users-db", &url, "--admin", "127.0.0.1:0"])
        .config("[limits]\nfailed_login_delay_ms = 0\nban_after_failures = 2\nmax_login_failures = 100\n")
        .start();
    let token = server
        .admin
        .clone()
        .and_then(|(_, t)| t)
        .expect("a token made at start");
    let t = Some(token.as_str());

    // No token needed: health and metrics.
    let (code, body) = api(&server, "GET", "/health", None, None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["status"], "ok");
    assert_eq!(json(&body)["users_db"], "ok");
    // The API without a token, or with a wrong one: 401, as JSON.
    let (code, body) = api(&server, "GET", "/api/v1/users", None, None);
    assert_eq!(code, 401);
    assert!(
        json(&body)["error"].as_str().unwrap().contains("Bearer"),
        "{body}"
    );
    assert_eq!(
        api(&server, "GET", "/api/v1/users", Some("wrong"), None).0,
        401
    );
    assert_eq!(api(&server, "GET", "/api/v1/nothing", t, None).0, 404);

    // A user made through the API logs in at once; its limits and rights are the API's.
    let (code, body) = api(
        &server,
        "POST",
        "/api/v1/users",
        t,
        Some(
            r#"{"name":"mia","password":"mia-pw","permissions":"read,write","download_rate":200000}"#,
        ),
    );
    assert_eq!(code, 201, "{body}");
    let created = json(&body);
    assert_eq!(created["name"], "mia");
    assert_eq!(created["download_rate"], 200000);
    assert!(created.get("password").is_none(), "{body}");
    assert!(created.get("password_hash").is_none(), "{body}");
    let (code, body) = api(
        &server,
        "POST",
        "/api/v1/users",
        t,
        Some(r#"{"name":"mia","password":"x"}"#),
    );
    assert_eq!(code, 409, "{body}");
    let (code, body) = api(
        &server,
        "POST",
        "/api/v1/users",
        t,
        Some(r#"{"name":"ned","home":"relative"}"#),
    );
    assert_eq!(code, 400, "{body}");
    // A body that is not the API's JSON: 400, and the error as JSON too.
    for bad in [r#"{"name":"x","fly":1}"#, "not json"] {
        let (code, body) = api(&server, "POST", "/api/v1/users", t, Some(bad));
        assert_eq!(code, 400, "{body}");
        assert!(json(&body)["error"].is_string(), "{body}");
    }
    // No password given: one is made and returned once.
    let (code, body) = api(
        &server,
        "POST",
        "/api/v1/users",
        t,
        Some(r#"{"name":"ned"}"#),
    );
    assert_eq!(code, 201, "{body}");
    let ned_pw = json(&body)["password"].as_str().unwrap().to_string();
    assert_eq!(login_code(&server, "127.0.0.1", "ned", &ned_pw), 230);
    assert_eq!(login_code(&server, "127.0.0.1", "mia", "mia-pw"), 230);

    // A running transfer shows in the sessions, then the administrator ends the session.
    write_file(&server.path("big.bin"), &vec![7u8; 2_000_000]);
    let mut ftp = Ftp::login_to(server.addr, "mia", "mia-pw");
    let mut data = ftp.try_start_transfer("RETR big.bin", 0).expect("RETR");
    let mut buf = [0u8; 65536];
    let _ = data.read(&mut buf).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let session = loop {
        let (code, body) = api(&server, "GET", "/api/v1/sessions", t, None);
        assert_eq!(code, 200, "{body}");
        let list = json(&body);
        let found = list
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["user"] == "mia" && s["transfer"]["bytes"].as_u64().unwrap_or(0) > 0)
            .cloned();
        if let Some(s) = found {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no running transfer listed: {list}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(session["transfer"]["path"], "/big.bin", "{session}");
    assert_eq!(session["transfer"]["direction"], "download");
    assert_eq!(session["transfer"]["verb"], "RETR");
    assert!(
        session["client"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    let id = session["id"].as_u64().unwrap();
    assert_eq!(
        api(
            &server,
            "DELETE",
            &format!("/api/v1/sessions/{id}"),
            t,
            None
        )
        .0,
        204
    );
    let r = ftp.read_reply();
    assert_eq!(r.text, "421 Disconnected by the administrator.");
    assert!(ftp.is_closed());
    assert_eq!(
        api(
            &server,
            "DELETE",
            &format!("/api/v1/sessions/{id}"),
            t,
            None
        )
        .0,
        404
    );

    // Changes: disabled, then a new password.
    let (code, body) = api(
        &server,
        "PATCH",
        "/api/v1/users/mia",
        t,
        Some(r#"{"enabled":false}"#),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["enabled"], false);
    assert_eq!(login_code(&server, "127.0.0.1", "mia", "mia-pw"), 530);
    let (code, _) = api(
        &server,
        "PATCH",
        "/api/v1/users/mia",
        t,
        Some(r#"{"enabled":true,"password":"new-pw","download_rate":null}"#),
    );
    assert_eq!(code, 200);
    assert_eq!(login_code(&server, "127.0.0.1", "mia", "new-pw"), 230);
    let (code, body) = api(&server, "GET", "/api/v1/users/mia", t, None);
    assert_eq!(code, 200);
    assert!(json(&body)["download_rate"].is_null(), "{body}");
    assert!(json(&body)["last_login"].is_u64(), "{body}");
    assert_eq!(api(&server, "GET", "/api/v1/users/nobody", t, None).0, 404);

    // Bans: two failures from 127.0.0.2 ban it; listed, lifted, and it logs in again.
    for _ in 0..2 {
        assert_eq!(login_code(&server, "127.0.0.2", "mia", "bad"), 530);
    }
    // Banned: the connection is refused before a login.
    let mut refused = Ftp::connect_from("127.0.0.2".parse().unwrap(), server.addr);
    assert!(
        refused.banner.text.starts_with("421 "),
        "{}",
        refused.banner.text
    );
    assert!(refused.is_closed());
    let (code, body) = api(&server, "GET", "/api/v1/bans", t, None);
    assert_eq!(code, 200);
    assert_eq!(json(&body)[0]["address"], "127.0.0.2", "{body}");
    assert_eq!(
        api(&server, "DELETE", "/api/v1/bans/127.0.0.2", t, None).0,
        204
    );
    assert_eq!(
        api(&server, "DELETE", "/api/v1/bans/127.0.0.2", t, None).0,
        404
    );
    assert_eq!(
        api(&server, "DELETE", "/api/v1/bans/not-an-ip", t, None).0,
        400
    );
    assert_eq!(login_code(&server, "127.0.0.2", "mia", "new-pw"), 230);

    // Reload, as SIGHUP does.
    let (code, body) = api(&server, "POST", "/api/v1/reload", t, None);
    assert_eq!(
        (code, json(&body)["status"].as_str()),
        (200, Some("reloaded")),
        "{body}"
    );
    assert!(server.wait_log("configuration reloaded", 1));

    // The counters saw it all.
    let (_, text) = api(&server, "GET", "/metrics", None, None);
    let value = |line: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(line).map(|v| v.trim().parse().unwrap_or(0)))
            .unwrap_or_else(|| panic!("no {line}: {text}"))
    };
    assert!(value("wharf_logins_total{result=\"ok\"}") >= 5, "{text}");
    assert!(
        value("wharf_logins_total{result=\"rejected\"}") >= 3,
        "{text}"
    );
    assert!(
        value("wharf_logins_total{result=\"banned\"}") >= 1,
        "{text}"
    );
    assert!(value("wharf_replies_total{code=\"421\"}") >= 1, "{text}");
    assert!(
        value("wharf_transfers_total{direction=\"download\",result=\"failed\"}") >= 1,
        "{text}"
    );
    assert!(
        value("wharf_bytes_total{direction=\"download\"}") > 0,
        "{text}"
    );
    assert_eq!(value("wharf_bans"), 0);
    assert!(text.contains("# TYPE wharf_sessions gauge"), "{text}");

    // Deleted: no more logins.
    assert_eq!(api(&server, "DELETE", "/api/v1/users/ned", t, None).0, 204);
    assert_eq!(login_code(&server, "127.0.0.1", "ned", &ned_pw), 530);
}

/// A configured token hash: no token printed, the one behind the hash works; without a user
/// database the users API says so.
#[test]
fn a_configured_token_and_no_user_database() {
    let hash = wharf_testkit::PW_HASH; // the hash of "pw"
    let server = Server::builder(BIN)
        .config(&format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_hash = \"{hash}\"\n"
        ))
        .start();
    let (_, made) = server.admin.clone().expect("admin listener");
    assert!(made.is_none());
    let (code, body) = api(&server, "GET", "/health", None, None);
    assert_eq!(
        (code, json(&body)["users_db"].as_str()),
        (200, Some("none"))
    );
    let (code, body) = api(&server, "GET", "/api/v1/users", Some("pw"), None);
    assert_eq!(code, 409, "{body}");
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("no user database"),
        "{body}"
    );
    assert_eq!(
        api(&server, "GET", "/api/v1/sessions", Some("pw"), None).0,
        200
    );
    // A bad hash in the config: refused at start.
    let cfg = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        cfg.path(),
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken_hash = \"plain\"\n",
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--config", &cfg.path().to_string_lossy()]);
    let out = output_with_input(&mut cmd, None, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("admin.token_hash"),
        "{out:?}"
    );
}

/// The admin page in a real browser (headless Chromium): sign in with the token, add a user
/// through the form; an FTP client logs in as that user, the session shows on the dashboard
/// (updating by itself), the page disconnects it, and the FTP client gets 421.
#[test]
fn the_admin_page_in_chromium_adds_a_user_and_disconnects_its_session() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("users.db").display());
    let server = Server::builder(BIN)
        .args(&["--users-db", &url, "--admin", "127.0.0.1:0"])
        .config("[limits]\nfailed_login_delay_ms = 0\n")
        .start();
    let (admin, token) = server.admin.clone().unwrap();
    let token = token.unwrap();
    let browser = wharf_testkit::browser::Browser::start();
    browser.goto(&format!("http://{admin}/"));
    // A wrong token is refused, and said so.
    browser.type_into("#token", "not-the-token");
    browser.click("#signin");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !browser.text("#status").contains("refused") {
        assert!(Instant::now() < deadline, "{}", browser.text("#status"));
        std::thread::sleep(Duration::from_millis(100));
    }
    browser.type_into("#token", &token);
    browser.click("#signin");
    browser.wait_for("#dashboard:not([hidden])");
    // Add a user through the form.
    browser.type_into("#add-name", "webuser");
    browser.type_into("#add-password", "web-pw");
    browser.type_into("#add-perm", "all");
    browser.click("#add-user");
    browser.wait_for("#users tr[data-name='webuser']");
    assert!(browser.text("#status").contains("User webuser added."));
    // Disabled and enabled again through the page (each an audit line below).
    for word in ["disabled", "enabled"] {
        browser.click("button.toggle[data-name='webuser']");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !browser
            .text("#status")
            .contains(&format!("User webuser {word}."))
        {
            assert!(Instant::now() < deadline, "{}", browser.text("#status"));
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // The FTP client logs in as that user: its session appears on the dashboard by itself.
    let mut ftp = Ftp::login_to(server.addr, "webuser", "web-pw");
    let row = "#sessions tbody tr";
    let deadline = Instant::now() + Duration::from_secs(10);
    let id = loop {
        let rows = browser.find_all(row);
        if !rows.is_empty() && browser.text(row).contains("webuser") {
            break browser.text(&format!("{row} td:first-child"));
        }
        assert!(Instant::now() < deadline, "no session on the dashboard");
        std::thread::sleep(Duration::from_millis(200));
    };
    // The page disconnects it: the client gets 421 and the row goes.
    browser.click(&format!("button.disconnect[data-id='{id}']"));
    let r = ftp.read_reply();
    assert_eq!(r.text, "421 Disconnected by the administrator.");
    browser.wait_gone(&format!("#sessions tr[data-id='{id}']"));
    // Each act the page did is an audit line with the admin's address; the wrong token is logged.
    let log = server.log();
    for line in [
        "act=\"user add\" on=\"webuser\"",
        "act=\"user disable\" on=\"webuser\"",
        "act=\"user enable\" on=\"webuser\"",
        &format!("act=\"session kick\" on=\"session {id} (webuser from"),
        "admin API: wrong token",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains(line) && l.contains("admin=127.0.0.1:")),
            "{line}\n{log}"
        );
    }
    // The page is the binary's own, with a policy that keeps it to this listener.
    let out = output_with_input(
        Command::new("curl").args([
            "-sS",
            "-D",
            "-",
            "-o",
            "/dev/null",
            &format!("http://{admin}/"),
        ]),
        None,
        Duration::from_secs(30),
    );
    let headers = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(
        headers.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{headers}"
    );
}

/// curl with the admin token from `from`, with extra headers; the status and the headers.
fn curl_from(server: &Server, from: &str, args: &[&str], path: &str) -> (u16, String) {
    let (addr, _) = server.admin.clone().expect("admin listener");
    let out = output_with_input(
        Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-D",
                "-",
                "-w",
                "%{http_code}",
                "--interface",
                from,
            ])
            .args(args)
            .arg(format!("http://{addr}{path}")),
        None,
        Duration::from_secs(30),
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = text
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    (code, text.to_ascii_lowercase())
}

/// Every admin act through the API is an audit line naming the admin's address; wrong tokens
/// are logged at a bounded rate, counted, and an address that keeps sending them is refused
/// (another is not); a state-changing request marked cross-site is refused even with the
/// token; the answers carry the headers a review expects.
#[test]
fn admin_acts_are_audited_and_the_token_is_guarded() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("users.db").display());
    let server = Server::builder(BIN)
        .args(&["--users-db", &url, "--admin", "127.0.0.1:0"])
        .config("[limits]\nfailed_login_delay_ms = 0\nban_after_failures = 2\nmax_login_failures = 100\n")
        .start();
    let token = server.admin.clone().and_then(|(_, t)| t).unwrap();
    let t = Some(token.as_str());
    let created = api(
        &server,
        "POST",
        "/api/v1/users",
        t,
        Some(r#"{"name":"ann","password":"pw"}"#),
    );
    assert_eq!(created.0, 201, "{}", created.1);
    for body in [
        r#"{"enabled":false}"#,
        r#"{"enabled":true}"#,
        r#"{"password":"new-pw"}"#,
        r#"{"quota_bytes":1000}"#,
    ] {
        assert_eq!(
            api(&server, "PATCH", "/api/v1/users/ann", t, Some(body)).0,
            200,
            "{body}"
        );
    }
    let mut ftp = Ftp::login_to(server.addr, "ann", "new-pw");
    let (_, sessions) = api(&server, "GET", "/api/v1/sessions", t, None);
    let id = json(&sessions)[0]["id"].as_u64().unwrap();
    assert_eq!(
        api(
            &server,
            "DELETE",
            &format!("/api/v1/sessions/{id}"),
            t,
            None
        )
        .0,
        204
    );
    assert_eq!(ftp.read_reply().code, 421);
    for _ in 0..2 {
        assert_eq!(login_code(&server, "127.0.0.3", "ann", "wrong"), 530);
    }
    assert_eq!(
        api(&server, "DELETE", "/api/v1/bans/127.0.0.3", t, None).0,
        204
    );
    assert_eq!(api(&server, "POST", "/api/v1/reload", t, None).0, 200);
    assert_eq!(api(&server, "DELETE", "/api/v1/users/ann", t, None).0, 204);
    let log = server.log();
    for (act, on) in [
        ("user add", "ann"),
        ("user disable", "ann"),
        ("user enable", "ann"),
        ("user password", "ann"),
        ("user change", "ann"),
        ("session kick", "session"),
        ("ban lift", "127.0.0.3"),
        ("reload", "the configuration (reloaded)"),
        ("user delete", "ann"),
    ] {
        let needle = format!("act=\"{act}\" on=\"{on}");
        assert!(
            log.lines()
                .any(|l| l.contains(&needle) && l.contains("admin=127.0.0.1:")),
            "{needle}\n{log}"
        );
    }

    // Cross-site, even with the token: refused; the page's own origin is not.
    let bearer = format!("Authorization: Bearer {token}");
    let (admin, _) = server.admin.clone().unwrap();
    for header in [
        "Origin: http://evil.example",
        "Sec-Fetch-Site: cross-site",
        "Origin: null",
    ] {
        let (code, _) = curl_from(
            &server,
            "127.0.0.1",
            &["-X", "POST", "-H", &bearer, "-H", header],
            "/api/v1/reload",
        );
        assert_eq!(code, 403, "{header}");
    }
    let own = format!("Origin: http://{admin}");
    let (code, _) = curl_from(
        &server,
        "127.0.0.1",
        &[
            "-X",
            "POST",
            "-H",
            &bearer,
            "-H",
            &own,
            "-H",
            "Sec-Fetch-Site: same-origin",
        ],
        "/api/v1/reload",
    );
    assert_eq!(code, 200);
    // The token from a query string or a cookie is no token.
    let (code, _) = curl_from(
        &server,
        "127.0.0.1",
        &["-H", &format!("Cookie: token={token}")],
        &format!("/api/v1/users?token={token}"),
    );
    assert_eq!(code, 401);

    // Headers: no sniffing, no referrer, no framing; API answers never cached; no CORS.
    let (_, page) = curl_from(&server, "127.0.0.1", &[], "/");
    let (_, answer) = curl_from(
        &server,
        "127.0.0.1",
        &["-H", &bearer, "-H", "Origin: http://evil.example"],
        "/api/v1/users",
    );
    for h in [&page, &answer] {
        for want in [
            "x-content-type-options: nosniff",
            "referrer-policy: no-referrer",
            "frame-ancestors 'none'",
        ] {
            assert!(h.contains(want), "{want}\n{h}");
        }
        assert!(!h.contains("access-control-"), "{h}");
    }
    assert!(answer.contains("cache-control: no-store"), "{answer}");

    // Wrong tokens from 127.0.0.2: 401 each, then refused for a while (429) without a hash;
    // the right token (verified before) still passes there, and 127.0.0.1 is not refused; the
    // log has a bounded number of lines; /metrics counts them.
    let before = server.log().matches("admin API: wrong token").count();
    let mut codes = Vec::new();
    for i in 0..12 {
        let wrong = format!("Authorization: Bearer wrong-{i}");
        codes.push(curl_from(&server, "127.0.0.2", &["-H", &wrong], "/api/v1/users").0);
    }
    assert_eq!(&codes[..9], &[401; 9], "{codes:?}");
    assert_eq!(&codes[10..], &[429, 429], "{codes:?}");
    assert_eq!(
        curl_from(&server, "127.0.0.2", &["-H", &bearer], "/api/v1/users").0,
        200
    );
    let wrong = "Authorization: Bearer wrong-again";
    assert_eq!(
        curl_from(&server, "127.0.0.2", &["-H", wrong], "/api/v1/users").0,
        429
    );
    assert_eq!(
        curl_from(&server, "127.0.0.1", &["-H", &bearer], "/api/v1/users").0,
        200
    );
    let lines = server.log().matches("admin API: wrong token").count() - before;
    assert!(
        (1..=4).contains(&lines),
        "{lines} lines for 10 wrong tokens"
    );
    assert!(server.log().contains("this address is refused for a while"));
    let (_, metrics) = api(&server, "GET", "/metrics", None, None);
    let refused: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("wharf_admin_auth_failures_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(refused >= 13, "{metrics}");
}

/// The admin listener over HTTPS with a certificate of its own (`[admin] cert`/`key`): curl
/// trusts it with `--cacert`; plain HTTP to it gets no answer.
#[test]
fn the_admin_listener_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = crate::tls::make_cert(dir.path(), "localhost");
    let server = Server::builder(BIN)
        .config(&format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\n",
            cert.display(),
            key.display()
        ))
        .start();
    assert!(
        server.banner.contains("Admin API on https://"),
        "{}",
        server.banner
    );
    let (addr, token) = server.admin.clone().unwrap();
    let token = token.unwrap();
    let out = output_with_input(
        Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(&cert)
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .arg(format!("https://localhost:{}/api/v1/sessions", addr.port()))
            .args(["--resolve", &format!("localhost:{}:127.0.0.1", addr.port())]),
        None,
        Duration::from_secs(30),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "[]",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = output_with_input(
        Command::new("curl").args(["-sS", "-m", "5", &format!("http://{addr}/health")]),
        None,
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    // A renewed certificate is served after SIGHUP (trusting only the new one works then).
    let fresh = tempfile::tempdir().unwrap();
    let (new_cert, new_key) = crate::tls::make_cert(fresh.path(), "localhost");
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    let health = || {
        output_with_input(
            Command::new("curl")
                .args(["-sS", "--cacert"])
                .arg(&new_cert)
                .arg(format!("https://localhost:{}/health", addr.port()))
                .args(["--resolve", &format!("localhost:{}:127.0.0.1", addr.port())]),
            None,
            Duration::from_secs(30),
        )
    };
    assert!(
        !health().status.success(),
        "the old certificate until the reload"
    );
    server.signal("HUP");
    assert!(
        server.wait_log("configuration reloaded", 1),
        "{}",
        server.log()
    );
    let out = health();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
