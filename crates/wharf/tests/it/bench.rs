//! `wharf bench`: each workload against `wharf serve` and against pyftpdlib, small counts, the
//! JSON report checked against what the server really did (bytes on disk, sessions seen).
//! Speed is never asserted here: only that the work was done and counted right.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use wharf_testkit::peers::{self, PyOptions};
use wharf_testkit::{output_within, pattern, write_file};

use crate::BIN;

fn bench(url: &str, password: &str, args: &[&str]) -> (Value, i32, String) {
    let out = output_within(
        Command::new(BIN)
            .arg("bench")
            .arg(url)
            .arg("--json")
            .args(args)
            .env("WHARF_PASSWORD", password),
        Duration::from_secs(120),
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout:?} {stderr}"));
    (json, out.status.code().unwrap_or(-1), stderr)
}

fn user_server() -> wharf_testkit::Server {
    crate::server()
        .args(&["-w", "--user", "demo:secret"])
        .config("[limits]\nmax_sessions_per_ip = 200\n")
        .start()
}

#[test]
fn retr_counts_every_byte_of_every_download() {
    let s = user_server();
    write_file(&s.path("big.bin"), &pattern(3 * 1024 * 1024 + 7, 1));
    let url = format!("ftp://demo@{}/big.bin", s.addr);
    let (j, code, _) = bench(&url, "secret", &["-w", "retr", "-c", "2", "-n", "3"]);
    assert_eq!(code, 0, "{j}");
    assert_eq!(j["workload"], "retr");
    assert_eq!(j["planned"], 6);
    assert_eq!(j["ok"], 6);
    assert_eq!(j["errors"], 0);
    assert_eq!(j["bytes"], 6 * (3 * 1024 * 1024 + 7));
    assert!(j["megabytes_per_sec"].as_f64().unwrap() > 0.0);
    let p50 = j["latency_ms"]["p50"].as_f64().unwrap();
    let max = j["latency_ms"]["max"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= max, "{j}");
    // The password never shows in the report.
    assert!(!j.to_string().contains("secret"));
}

#[test]
fn stor_writes_the_bytes_it_reports() {
    let s = user_server();
    let url = format!("ftp://demo@{}/up.bin", s.addr);
    let (j, code, _) = bench(&url, "secret", &["-w", "stor", "--size", "2M", "-n", "2"]);
    assert_eq!(code, 0, "{j}");
    assert_eq!(j["ok"], 2);
    assert_eq!(j["bytes"], 2 * 2 * 1024 * 1024);
    let on_disk = std::fs::read(s.path("up.bin")).unwrap();
    assert_eq!(on_disk.len(), 2 * 1024 * 1024);
    assert!(on_disk.iter().all(|&b| b == b'w'));
    // Several clients write files of their own.
    let (j, code, _) = bench(&url, "secret", &["-w", "stor", "--size", "100K", "-c", "3"]);
    assert_eq!(code, 0, "{j}");
    for i in 0..3 {
        let f = std::fs::read(s.path(&format!("up.bin.{i}"))).unwrap();
        assert_eq!(f.len(), 100 * 1024);
    }
}

#[test]
fn login_small_list_and_idle_against_wharf() {
    let s = user_server();
    write_file(&s.path("small.bin"), &pattern(10 * 1024, 2));
    std::fs::create_dir(s.path("dir")).unwrap();
    for i in 0..50 {
        write_file(&s.path(&format!("dir/f{i}")), b"x");
    }
    let base = format!("ftp://demo@{}", s.addr);

    let (j, code, _) = bench(&format!("{base}/"), "secret", &["-w", "login", "-n", "25"]);
    assert_eq!(code, 0, "{j}");
    assert_eq!(
        (j["ok"].as_u64(), j["errors"].as_u64()),
        (Some(25), Some(0))
    );
    assert!(j["ops_per_sec"].as_f64().unwrap() > 0.0);

    let args = ["-w", "small", "-c", "30", "-n", "4"];
    let (j, code, _) = bench(&format!("{base}/small.bin"), "secret", &args);
    assert_eq!(code, 0, "{j}");
    assert_eq!(
        (j["ok"].as_u64(), j["bytes"].as_u64()),
        (Some(120), Some(120 * 10 * 1024))
    );

    let (j, code, _) = bench(
        &format!("{base}/dir/"),
        "secret",
        &["-w", "list", "-n", "3"],
    );
    assert_eq!(code, 0, "{j}");
    assert_eq!(j["ok"], 3);
    // 50 `ls -l` lines each time.
    let per_listing = j["bytes"].as_u64().unwrap() / 3;
    assert!(per_listing > 50 * 40, "{j}");

    let (j, code, stderr) = bench(
        &format!("{base}/"),
        "secret",
        &["-w", "idle", "-c", "40", "--hold", "1"],
    );
    assert_eq!(code, 0, "{j}");
    assert_eq!((j["held"].as_u64(), j["ok"].as_u64()), (Some(40), Some(40)));
    assert!(stderr.contains("holding 40 sessions"), "{stderr}");
}

#[test]
fn failures_are_counted_and_exit_nonzero() {
    let s = user_server();
    let url = format!("ftp://demo@{}/", s.addr);
    let (j, code, _) = bench(&url, "wrong", &["-w", "login", "-n", "2"]);
    assert_eq!(code, 1, "{j}");
    assert_eq!((j["ok"].as_u64(), j["errors"].as_u64()), (Some(0), Some(2)));
    let kinds = j["error_kinds"].as_array().unwrap();
    assert!(kinds[0]["error"].as_str().unwrap().contains("530"), "{j}");
    // A missing file: 550 per download.
    let url = format!("ftp://demo@{}/nope.bin", s.addr);
    let (j, code, _) = bench(&url, "secret", &["-w", "retr", "-n", "2"]);
    assert_eq!(code, 1);
    assert_eq!(j["errors"], 2);
}

#[test]
fn only_loopback_unless_allowed_and_bad_flags_are_usage_errors() {
    let out = output_within(
        Command::new(BIN).args(["bench", "ftp://192.0.2.1/file", "-w", "retr"]),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-remote"));
    for bad in [
        &["bench", "ftp://127.0.0.1/f", "-w", "fast"][..],
        &["bench", "ftp://127.0.0.1/f", "--size", "lots"],
        &["bench", "ftp://127.0.0.1/f", "-c", "0"],
    ] {
        let out = output_within(Command::new(BIN).args(bad), Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
    // retr needs a file.
    let out = output_within(
        Command::new(BIN).args(["bench", "ftp://127.0.0.1:1/", "-w", "retr"]),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn loopback_limit_moves_the_bytes() {
    let (j, code, _) = bench(
        "ftp://127.0.0.1/",
        "",
        &["-w", "loopback", "--size", "8M", "-n", "2"],
    );
    assert_eq!(code, 0, "{j}");
    assert_eq!(j["bytes"], 2 * 8 * 1024 * 1024);
}

#[test]
fn retr_and_stor_against_pyftpdlib() {
    let peer = peers::pyftpdlib(&PyOptions::default());
    write_file(&peer.data.join("file.bin"), &pattern(1024 * 1024, 3));
    let (j, code, _) = bench(
        &peer.url("file.bin"),
        peer.password(),
        &["-n", "2", "-c", "2"],
    );
    assert_eq!(code, 0, "{j}");
    assert_eq!(j["bytes"], 4 * 1024 * 1024);
    let (j, code, _) = bench(
        &peer.url("up.bin"),
        peer.password(),
        &["-w", "stor", "--size", "512K"],
    );
    assert_eq!(code, 0, "{j}");
    let on_disk = std::fs::read(peer.data.join("up.bin")).unwrap();
    assert_eq!(on_disk.len(), 512 * 1024);
    let (j, code, _) = bench(&peer.url(""), peer.password(), &["-w", "login", "-n", "5"]);
    assert_eq!((code, j["ok"].as_u64()), (0, Some(5)), "{j}");
}
