//! `[[hook]]`: a command gets each event as JSON on stdin and in WHARF_* variables, a URL gets it
//! POSTed; a hook that hangs is stopped at its timeout and delays nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use serde_json::Value;
use wharf_testkit::{Ftp, Server, write_file};

use crate::BIN;

/// Reads `path` until it has `n` lines (at most 15 s).
fn lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn hooks_get_events_and_never_delay_a_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    let env = dir.path().join("env.txt");
    // A receiver for the URL hook: answers 204 to each POST and keeps the bodies.
    let receiver = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = receiver.local_addr().unwrap().port();
    let posted = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    {
        let posted = posted.clone();
        std::thread::spawn(move || {
            for conn in receiver.incoming().take(20) {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut length = 0;
                let mut line = String::new();
                let mut request_line = String::new();
                reader.read_line(&mut request_line).unwrap();
                loop {
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                posted.lock().unwrap().push(format!(
                    "{}{}",
                    request_line.trim(),
                    String::from_utf8_lossy(&body)
                ));
                let _ = conn.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
            }
        });
    }
    let config = format!(
        "write = true\n[limits]\nfailed_login_delay_ms = 0\n\
         [[hook]]\non = ['upload', 'download', 'delete', 'mkdir', 'rename', 'login', 'login_failed']\n\
         command = ['sh', '-c', 'cat >> {events}']\n\
         [[hook]]\non = 'upload'\ncommand = ['sh', '-c', 'echo \"$WHARF_EVENT $WHARF_USER $WHARF_PATH $WHARF_BYTES\" >> {env}']\n\
         [[hook]]\non = 'upload'\nurl = 'http://127.0.0.1:{port}/wharf-hook'\n\
         [[hook]]\non = 'mkdir'\ncommand = ['sleep', '30']\ntimeout_ms = 500\n\
         [[user]]\nname = 'alice'\npassword_hash = '{hash}'\npermissions = ['all']\n",
        events = events.display(),
        env = env.display(),
        hash = wharf_testkit::PW_HASH,
    );
    let server = Server::builder(BIN).config(&config).start();
    write_file(&server.path("down.txt"), b"download me");
    let mut bad = Ftp::connect(server.addr);
    bad.cmd("USER alice");
    assert_eq!(bad.cmd("PASS wrong").code, 530);
    let mut ftp = Ftp::login_to(server.addr, "alice", "pw");
    // A hook that hangs (sleep 30, stopped at 500 ms) delays nothing: the next commands are
    // answered while it runs.
    assert_eq!(ftp.cmd("MKD new").code, 257);
    assert_eq!(ftp.upload("STOR new/up.txt", b"hello hooks").code, 226);
    let (got, r) = ftp.download("RETR down.txt");
    assert_eq!((got.as_slice(), r.code), (&b"download me"[..], 226));
    assert_eq!(ftp.cmd("RNFR new/up.txt").code, 350);
    assert_eq!(ftp.cmd("RNTO new/moved.txt").code, 250);
    assert_eq!(ftp.cmd("DELE new/moved.txt").code, 250);

    let got = lines(&events, 7);
    let parsed: Vec<Value> = got
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = parsed
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "login_failed",
            "login",
            "mkdir",
            "upload",
            "download",
            "rename",
            "delete"
        ],
        "{got:?}"
    );
    let upload = &parsed[3];
    assert_eq!(upload["user"], "alice");
    assert_eq!(upload["path"], "/new/up.txt");
    assert_eq!(upload["bytes"], 11);
    assert_eq!(upload["client"], "127.0.0.1");
    assert!(upload["time"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(parsed[5]["path"], "/new/moved.txt");
    assert_eq!(parsed[0]["user"], "alice");
    assert_eq!(lines(&env, 1), ["upload alice /new/up.txt 11"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while posted.lock().unwrap().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let posts = posted.lock().unwrap().clone();
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert!(
        posts[0].starts_with("POST /wharf-hook HTTP/1.1{"),
        "{posts:?}"
    );
    assert!(posts[0].contains("\"event\":\"upload\""), "{posts:?}");
    assert!(
        server.wait_log("hook timed out: stopped", 1),
        "{}",
        server.log()
    );
}

#[test]
fn a_bad_hook_is_a_configuration_error() {
    let cfg = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(cfg.path(), "[[hook]]\non = 'uplaod'\ncommand = ['true']\n").unwrap();
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["serve", "--config", &cfg.path().to_string_lossy()]);
    let out = wharf_testkit::output_within(&mut cmd, Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("hook[0].on: unknown event `uplaod`"), "{err}");
}

/// An https:// hook: the event is POSTed over TLS to a receiver whose certificate the server
/// trusts (here through SSL_CERT_FILE), and nothing is sent to one it does not.
#[test]
fn an_https_hook_posts_over_tls_with_the_certificate_checked() {
    let python = wharf_testkit::require_tool("python3");
    let dir = tempfile::tempdir().unwrap();
    let mut cert_cmd = std::process::Command::new(BIN);
    cert_cmd.args(["cert", "localhost", "--out", &dir.path().to_string_lossy()]);
    assert!(
        wharf_testkit::output_within(&mut cert_cmd, Duration::from_secs(30))
            .status
            .success()
    );
    let (cert, key) = (
        dir.path().join("localhost.crt"),
        dir.path().join("localhost.key"),
    );
    let received = dir.path().join("received.jsonl");
    let script = r#"
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with open(sys.argv[3], "ab") as f:
            f.write(self.path.encode() + b" " + body + b"\n")
        self.send_response(204)
        self.end_headers()
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
s.socket = ctx.wrap_socket(s.socket, server_side=True)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;
    let mut receiver = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .args([&cert, &key, &received])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut port = String::new();
    BufReader::new(receiver.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    let port = port.trim().to_string();
    let config = format!(
        "[[hook]]\non = 'login'\nurl = 'https://localhost:{port}/events'\n\
         [[user]]\nname = 'alice'\npassword_hash = '{}'\n",
        wharf_testkit::PW_HASH
    );
    let trusting = Server::builder(BIN)
        .config(&config)
        .env("SSL_CERT_FILE", &cert.to_string_lossy())
        .start();
    drop(Ftp::login_to(trusting.addr, "alice", "pw"));
    let got = lines(&received, 1);
    assert_eq!(got.len(), 1, "{}", trusting.log());
    assert!(got[0].starts_with("/events {"), "{got:?}");
    assert!(got[0].contains("\"event\":\"login\""), "{got:?}");
    // Trusting another CA only: no POST, and the log says why.
    let other = tempfile::tempdir().unwrap();
    let mut other_cmd = std::process::Command::new(BIN);
    other_cmd.args([
        "cert",
        "elsewhere.example",
        "--out",
        &other.path().to_string_lossy(),
    ]);
    assert!(
        wharf_testkit::output_within(&mut other_cmd, Duration::from_secs(30))
            .status
            .success()
    );
    let doubting = Server::builder(BIN)
        .config(&config)
        .env(
            "SSL_CERT_FILE",
            &other.path().join("elsewhere.example.crt").to_string_lossy(),
        )
        .start();
    drop(Ftp::login_to(doubting.addr, "alice", "pw"));
    assert!(doubting.wait_log("hook failed", 1), "{}", doubting.log());
    assert!(
        doubting.log().contains("TLS with localhost"),
        "{}",
        doubting.log()
    );
    assert_eq!(lines(&received, 1).len(), 1);
    let _ = receiver.kill();
    let _ = receiver.wait();
}
