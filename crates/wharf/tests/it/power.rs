//! The client's second round, against real servers: `wharf mirror` both ways (deletions, a
//! no-op second run, a dry run), `--retry` finishing a transfer whose data connection was
//! killed, `--limit-rate`, `get --segments`, remote patterns, several paths, `mkdir -p`,
//! `put --create-dirs`, stdin and stdout, `ls` of a file and `--json`, `.netrc`, the result
//! lines, Ctrl-C keeping the partial file, symbolic links leaving the tree, and `wharf shell`
//! driven through a pseudo-terminal.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wharf_testkit::peers::{self, Peer, PyOptions};
use wharf_testkit::{assert_same_tree, make_tree, pattern, write_file};

use crate::BIN;
use crate::client::{Run, wharf, wharf_in};

/// Sets a file's modification time to `secs` before now.
fn age(path: &Path, secs: u64) {
    let t = std::time::SystemTime::now() - Duration::from_secs(secs);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

fn mirror_both_ways(peer: &Peer) {
    let name = peer.name;
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let src = w.join("src");
    make_tree(&src);
    write_file(&src.join("docs/old.txt"), b"to be deleted\n");
    // `gone.txt` sorts between `gone` and `gone/x.txt`: a deletion of the directory must not
    // lose track of its contents.
    write_file(&src.join("gone/x.txt"), b"x\n");
    write_file(&src.join("gone.txt"), b"g\n");
    // A file of the user's own named like a partial download of another (`a.bin.part`).
    write_file(&src.join("a.bin.part"), b"mine\n");
    // Times a minute and more in the past, so that kept times are told from "just written".
    for f in [
        "a.bin",
        "empty",
        "docs/readme.txt",
        "docs/deep/x.dat",
        "docs/old.txt",
    ] {
        age(&src.join(f), 3600);
    }
    let url = peer.url("mirrored/");
    let up = |extra: &[&str]| {
        let mut args = vec!["mirror", "-v", "--parallel", "2"];
        args.extend_from_slice(extra);
        args.extend(["src", url.as_str()]);
        wharf(w, &args)
    };

    // Up, into a directory that does not exist yet.
    up(&[]).ok(&format!("{name}: mirror up"));
    assert_same_tree(&src, &peer.path("mirrored"));

    // A second run with nothing changed transfers nothing.
    let r = up(&[]);
    r.ok(&format!("{name}: mirror up again"));
    assert!(
        !r.stderr.contains("Command: STOR") && r.stderr.contains("mirror: transferred 0 files"),
        "{name}: the second run transferred:\n{}",
        r.stderr
    );

    // A change, a new file and a deletion; a dry run first changes nothing.
    write_file(&src.join("a.bin"), &pattern(300_001, 5));
    // Same size, other bytes and time: the time tells.
    write_file(&src.join("docs/readme.txt"), b"HELLO\nWORLD\n");
    write_file(&src.join("new.txt"), b"new\n");
    std::fs::remove_file(src.join("docs/old.txt")).unwrap();
    std::fs::remove_dir_all(src.join("gone")).unwrap();
    std::fs::remove_file(src.join("gone.txt")).unwrap();
    let r = up(&["--delete", "--dry-run"]);
    r.ok(&format!("{name}: dry run"));
    let plan = String::from_utf8_lossy(&r.stdout);
    for line in [
        "put a.bin (300001 bytes)",
        "put new.txt (4 bytes)",
        "put docs/readme.txt (12 bytes)",
        "delete docs/old.txt",
        "delete gone",
        "delete gone.txt",
    ] {
        assert!(
            plan.lines().any(|l| l == line),
            "{name}: plan lacks {line:?}:\n{plan}"
        );
    }
    assert!(peer.path("mirrored/docs/old.txt").exists() && !peer.path("mirrored/new.txt").exists());
    up(&["--delete"]).ok(&format!("{name}: mirror up --delete"));
    assert_same_tree(&src, &peer.path("mirrored"));

    // Down, into a new directory; then nothing to do; then a deletion on the server.
    let down = |extra: &[&str]| {
        let mut args = vec!["mirror", "-v"];
        args.extend_from_slice(extra);
        args.extend([url.as_str(), "back"]);
        wharf(w, &args)
    };
    down(&[]).ok(&format!("{name}: mirror down"));
    assert_same_tree(&src, &w.join("back"));
    let r = down(&[]);
    r.ok(&format!("{name}: mirror down again"));
    assert!(
        !r.stderr.contains("Command: RETR") && r.stderr.contains("mirror: transferred 0 files"),
        "{name}: the second download transferred:\n{}",
        r.stderr
    );
    // Times were kept: the downloaded file is as old as the original.
    let mtime = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let (a, b) = (
        mtime(&src.join("docs/readme.txt")),
        mtime(&w.join("back/docs/readme.txt")),
    );
    let skew = a
        .duration_since(b)
        .or_else(|_| b.duration_since(a))
        .unwrap();
    assert!(
        skew <= Duration::from_secs(1),
        "{name}: times not kept: {skew:?}"
    );
    // New on the server, then gone from it: the download deletes them locally.
    peer.seed("mirrored/late/y.txt", b"y\n");
    peer.seed("mirrored/late.txt", b"l\n");
    down(&[]).ok(&format!("{name}: mirror down of new files"));
    assert_eq!(std::fs::read(w.join("back/late/y.txt")).unwrap(), b"y\n");
    std::fs::remove_dir_all(peer.path("mirrored/late")).unwrap();
    std::fs::remove_file(peer.path("mirrored/late.txt")).unwrap();
    std::fs::remove_file(peer.path("mirrored/docs/readme.txt")).unwrap();
    down(&["--delete"]).ok(&format!("{name}: mirror down --delete"));
    assert!(!w.join("back/docs/readme.txt").exists() && !w.join("back/late").exists());
    assert_same_tree(&peer.path("mirrored"), &w.join("back"));
}

#[test]
fn mirror_against_vsftpd() {
    mirror_both_ways(&peers::vsftpd(&[]));
}

#[test]
fn mirror_against_proftpd() {
    mirror_both_ways(&peers::proftpd());
}

#[test]
fn mirror_against_pyftpdlib() {
    mirror_both_ways(&peers::pyftpdlib(&PyOptions::default()));
}

#[test]
fn mirror_against_wharf() {
    mirror_both_ways(&peers::wharf(BIN, "127.0.0.1:0", None));
}

/// Kills the server's end of every data connection from its passive range (`ss -K`, which the
/// kernel does for root).
fn kill_data_connections(first: u16, last: u16) -> String {
    let ss = wharf_testkit::require_tool("ss");
    let filter = format!("( sport >= :{first} and sport <= :{last} )");
    let out = Command::new(ss)
        .args(["-K", "-tn", &filter])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A client in the background, with its output collected.
fn spawn(dir: &Path, args: &[&str]) -> std::process::Child {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("WHARF_PASSWORD", peers::PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: std::process::Child) -> Run {
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A client run whose data connection the server loses once data flows: started in the
/// background, the connection killed, the run waited for.
fn broken_once(dir: &Path, args: &[&str], (first, last): (u16, u16)) -> Run {
    let child = spawn(dir, args);
    kill_when_flowing(first, last);
    finish(child)
}

/// Kills the data connection once a transfer is under way: waits until `ss` shows one.
fn kill_when_flowing(first: u16, last: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
        if kill_data_connections(first, last).lines().count() > 1 {
            return;
        }
    }
    panic!("no data connection to kill within 10 s");
}

#[test]
fn retry_finishes_transfers_whose_data_connection_was_killed() {
    let (first, last) = (41_500u16, 41_520u16);
    let config = format!("[passive]\nports = \"{first}-{last}\"\n");
    let peer = peers::wharf(BIN, "127.0.0.1:0", Some(&config));
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let body = pattern(5_000_000, 3);
    peer.seed("big.bin", &body);

    // Download at 1 MB/s, its data connection killed after a moment; --retry resumes it.
    let r = broken_once(
        w,
        &[
            "get",
            "-v",
            "--passive",
            "--limit-rate",
            "1M",
            "--retry",
            "3",
            &peer.url("big.bin"),
        ],
        (first, last),
    );
    r.ok("get --retry");
    assert!(
        std::fs::read(w.join("big.bin")).unwrap() == body,
        "get --retry: bytes differ"
    );
    assert!(
        r.stderr.contains("trying again in 1 s (try 2 of 4)"),
        "{}",
        r.stderr
    );
    assert!(
        r.log_starts("Command: REST "),
        "the retry did not resume:\n{}",
        r.stderr
    );

    // Upload the same way.
    write_file(&w.join("up.bin"), &body);
    let r = broken_once(
        w,
        &[
            "put",
            "-v",
            "--passive",
            "--limit-rate",
            "1M",
            "--retry",
            "3",
            "up.bin",
            &peer.url("up.bin"),
        ],
        (first, last),
    );
    r.ok("put --retry");
    assert!(
        std::fs::read(peer.path("up.bin")).unwrap() == body,
        "put --retry: bytes differ"
    );
    assert!(
        r.log_starts("Command: REST ") || r.log_starts("Command: APPE "),
        "{}",
        r.stderr
    );

    // Without --retry the download fails, and keeps its partial file with the way to resume.
    std::fs::remove_file(w.join("big.bin")).unwrap();
    let r = broken_once(
        w,
        &[
            "get",
            "--passive",
            "--limit-rate",
            "1M",
            &peer.url("big.bin"),
        ],
        (first, last),
    );
    // 426 from the server (exit 1) or the reset seen first (exit 3).
    assert!(r.code == 1 || r.code == 3, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("the partial file big.bin.wharf-part is kept: run again with -c to resume"),
        "{}",
        r.stderr
    );
    let kept = std::fs::metadata(w.join("big.bin.wharf-part"))
        .unwrap()
        .len();
    assert!(kept > 0 && kept < body.len() as u64, "{kept}");
    let r = wharf(w, &["get", "-c", "-v", &peer.url("big.bin")]);
    r.ok("get -c after a failure");
    assert!(r.log_has(&format!("Command: REST {kept}")), "{}", r.stderr);
    assert!(std::fs::read(w.join("big.bin")).unwrap() == body);
    assert!(!w.join("big.bin.wharf-part").exists());
    // The result line counts what this run moved, not what was there.
    let moved = format_mb(body.len() as u64 - kept);
    assert!(
        r.stderr
            .contains(&format!("big.bin: {moved} (of 5.0 MB) in ")),
        "{moved}: {}",
        r.stderr
    );
}

#[test]
fn retry_finishes_a_download_from_vsftpd_whose_data_connection_was_killed() {
    let (first, last) = (41_600u16, 41_620u16);
    let peer = peers::vsftpd(&[
        &format!("pasv_min_port={first}"),
        &format!("pasv_max_port={last}"),
    ]);
    let work = tempfile::tempdir().unwrap();
    let body = pattern(5_000_000, 12);
    peer.seed("v.bin", &body);
    let r = broken_once(
        work.path(),
        &[
            "get",
            "-v",
            "--passive",
            "--limit-rate",
            "1M",
            "--retry",
            "2",
            &peer.url("v.bin"),
        ],
        (first, last),
    );
    r.ok("get --retry from vsftpd");
    assert!(
        std::fs::read(work.path().join("v.bin")).unwrap() == body,
        "bytes differ"
    );
    assert!(r.log_starts("Command: REST "), "{}", r.stderr);
}

/// `1.2 MB`, as the client writes sizes.
fn format_mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

#[test]
fn limit_rate_paces_the_whole_command() {
    let peer = peers::vsftpd(&[]);
    let work = tempfile::tempdir().unwrap();
    let body = pattern(5_000_000, 4);
    peer.seed("rate.bin", &body);
    let started = Instant::now();
    wharf(
        work.path(),
        &["get", "--limit-rate", "1M", &peer.url("rate.bin")],
    )
    .ok("get --limit-rate");
    let took = started.elapsed();
    assert!(std::fs::read(work.path().join("rate.bin")).unwrap() == body);
    // 5 MB at 1 MiB/s is 4.8 s (a quarter second of credit at the start).
    assert!(
        took >= Duration::from_secs(4) && took <= Duration::from_secs(7),
        "took {took:?}"
    );
    // The limit is the whole command's: four sessions of a tree share it.
    for i in 0..4 {
        peer.seed(&format!("four/{i}.bin"), &body[..1_250_000]);
    }
    let started = Instant::now();
    let r = wharf(
        work.path(),
        &[
            "get",
            "-r",
            "--parallel",
            "4",
            "--limit-rate",
            "1M",
            &peer.url("four"),
            "four",
        ],
    );
    r.ok("get -r --limit-rate");
    let took = started.elapsed();
    assert!(
        r.stderr.contains("4 files (5.0 MB)") && r.stderr.contains("4 sessions"),
        "{}",
        r.stderr
    );
    assert!(
        took >= Duration::from_secs(4) && took <= Duration::from_secs(7),
        "four sessions took {took:?}"
    );
    assert!(parse_error(&[
        "get",
        "--limit-rate",
        "fast",
        &peer.url("rate.bin")
    ]));
}

/// Whether clap refused the arguments (exit 2).
fn parse_error(args: &[&str]) -> bool {
    let work = tempfile::tempdir().unwrap();
    wharf(work.path(), args).code == 2
}

#[test]
fn segments_download_one_file_over_four_sessions() {
    let peer = peers::wharf(BIN, "127.0.0.1:0", None);
    let work = tempfile::tempdir().unwrap();
    let body = pattern(9_000_001, 6);
    peer.seed("seg.bin", &body);
    let r = wharf(
        work.path(),
        &["get", "--segments", "4", &peer.url("seg.bin"), "out.bin"],
    );
    r.ok("get --segments 4");
    assert!(
        std::fs::read(work.path().join("out.bin")).unwrap() == body,
        "bytes differ"
    );
    assert!(
        r.stderr.contains("4 ranges over 4 sessions"),
        "{}",
        r.stderr
    );
    // The server saw four sessions, each reading one range.
    let log = peer.log();
    let retrs = log
        .lines()
        .filter(|l| l.contains(" transfer ") && l.contains("seg.bin"))
        .count();
    let logins = log.lines().filter(|l| l.contains(" login ")).count();
    assert_eq!((retrs, logins), (4, 4), "{log}");
    // Stopped (Ctrl-C), a segmented download leaves nothing that -c would take for a partial
    // file: its file has holes until every range is in.
    let child = spawn(
        work.path(),
        &[
            "get",
            "--segments",
            "4",
            "--limit-rate",
            "2M",
            &peer.url("seg.bin"),
            "cut.bin",
        ],
    );
    let holes = work.path().join("cut.bin.wharf-segments");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !holes.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(700));
    interrupt(&child);
    let r = finish(child);
    assert_eq!(r.code, 130, "{}", r.stderr);
    let left: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("cut.bin"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    wharf(work.path(), &["get", "-c", &peer.url("seg.bin"), "cut.bin"]).ok("get -c after");
    assert!(std::fs::read(work.path().join("cut.bin")).unwrap() == body);
    // ProFTPD too, byte-exact.
    let proftpd = peers::proftpd();
    proftpd.seed("seg.bin", &body);
    wharf(
        work.path(),
        &["get", "--segments", "3", &proftpd.url("seg.bin"), "p.bin"],
    )
    .ok("proftpd");
    assert!(std::fs::read(work.path().join("p.bin")).unwrap() == body);
}

#[test]
fn patterns_paths_streams_and_listings() {
    for peer in [
        peers::vsftpd(&[]),
        peers::proftpd(),
        peers::wharf(BIN, "127.0.0.1:0", None),
    ] {
        let name = peer.name;
        let work = tempfile::tempdir().unwrap();
        let w = work.path();
        peer.seed("logs/a.log", b"a\n");
        peer.seed("logs/b.log", b"bb\n");
        peer.seed("logs/c.txt", b"c\n");

        // get of a pattern, into a directory.
        std::fs::create_dir(w.join("got")).unwrap();
        wharf(w, &["get", &peer.url("logs/*.log"), "got"]).ok(&format!("{name}: get pattern"));
        let mut got: Vec<_> = std::fs::read_dir(w.join("got"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        got.sort();
        assert_eq!(got, ["a.log", "b.log"], "{name}");
        assert_eq!(std::fs::read(w.join("got/b.log")).unwrap(), b"bb\n");

        // ls of a pattern, of a file, and --json.
        let r = wharf(w, &["ls", &peer.url("logs/*.log")]);
        r.ok(&format!("{name}: ls pattern"));
        let mut listed: Vec<String> = String::from_utf8_lossy(&r.stdout)
            .lines()
            .map(String::from)
            .collect();
        listed.sort();
        assert_eq!(listed, ["a.log", "b.log"], "{name}");
        let r = wharf(w, &["ls", "-l", &peer.url("logs/c.txt")]);
        r.ok(&format!("{name}: ls of a file"));
        let line = String::from_utf8_lossy(&r.stdout).into_owned();
        assert!(
            line.starts_with("- ") && line.trim_end().ends_with("c.txt") && line.contains(" 2 "),
            "{name}: {line}"
        );
        let r = wharf(w, &["ls", "--json", &peer.url("logs/")]);
        r.ok(&format!("{name}: ls --json"));
        let json: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
        let b = json
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "b.log")
            .unwrap_or_else(|| panic!("{name}: {json}"));
        assert_eq!(
            (b["type"].as_str(), b["size"].as_u64()),
            (Some("file"), Some(3)),
            "{name}: {b}"
        );
        assert_eq!(b["modify"].as_str().map(str::len), Some(14), "{name}: {b}");

        // rm of a pattern and of several paths; mkdir -p and several directories; rmdir of two.
        wharf(w, &["rm", &peer.url("logs/*.log"), &peer.url("logs/c.txt")])
            .ok(&format!("{name}: rm"));
        assert_eq!(
            std::fs::read_dir(peer.path("logs")).unwrap().count(),
            0,
            "{name}"
        );
        wharf(w, &["mkdir", "-p", &peer.url("p/q/r"), &peer.url("p/s")])
            .ok(&format!("{name}: mkdir -p"));
        assert!(peer.path("p/q/r").is_dir() && peer.path("p/s").is_dir());
        wharf(w, &["mkdir", "-p", &peer.url("p/q")]).ok(&format!("{name}: mkdir -p of one there"));
        wharf(w, &["rmdir", &peer.url("p/q/r"), &peer.url("p/s")])
            .ok(&format!("{name}: rmdir two"));
        assert!(!peer.path("p/q/r").exists() && !peer.path("p/s").exists());
        // A failure among several paths: the others are done, the exit code is the refusal's.
        let r = wharf(w, &["rm", &peer.url("nothing-here"), &peer.url("p/q")]);
        assert_eq!(r.code, 1, "{name}: {}", r.stderr);

        // put - from stdin, with --create-dirs; get - to stdout.
        let body = pattern(700_000, 8);
        let r = wharf_in(
            w,
            &["put", "--create-dirs", "-", &peer.url("in/deep/stdin.bin")],
            Some(&body),
        );
        r.ok(&format!("{name}: put -"));
        assert!(
            std::fs::read(peer.path("in/deep/stdin.bin")).unwrap() == body,
            "{name}"
        );
        let r = wharf(w, &["get", &peer.url("in/deep/stdin.bin"), "-"]);
        r.ok(&format!("{name}: get -"));
        assert!(r.stdout == body, "{name}: stdout differs");
        // put of a file with --create-dirs.
        write_file(&w.join("f.txt"), b"file\n");
        wharf(
            w,
            &["put", "--create-dirs", "f.txt", &peer.url("made/here/")],
        )
        .ok(&format!("{name}: put --create-dirs"));
        assert_eq!(
            std::fs::read(peer.path("made/here/f.txt")).unwrap(),
            b"file\n"
        );
    }
}

#[test]
fn netrc_gives_the_login_and_warns_when_others_can_read_it() {
    use std::os::unix::fs::PermissionsExt;
    let peer = peers::wharf(BIN, "127.0.0.1:0", None);
    peer.seed("n.txt", b"netrc\n");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let host = peer.addr.ip().to_string();
    let netrc = w.join("netrc");
    std::fs::write(
        &netrc,
        format!(
            "machine {host}\n  login {} password {}\n",
            peers::USER,
            peers::PASSWORD
        ),
    )
    .unwrap();
    std::fs::set_permissions(&netrc, std::fs::Permissions::from_mode(0o600)).unwrap();
    // The URL has no user: the netrc's login and password are used, without a prompt.
    let url = format!("ftp://{}/n.txt", peer.addr);
    let run = |args: &[&str], home: &Path| {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(w)
            .env("HOME", home)
            .env_remove("WHARF_PASSWORD")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let netrc_s = netrc.to_str().unwrap();
    let (code, out, err) = run(&["get", "--netrc-file", netrc_s, &url, "-"], w);
    assert_eq!((code, out.as_str()), (Some(0), "netrc\n"), "{err}");
    assert!(!err.contains("warning"), "{err}");
    // ~/.netrc is read by default; readable by others, it gets a warning (and still works).
    let home = w.join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::copy(&netrc, home.join(".netrc")).unwrap();
    std::fs::set_permissions(home.join(".netrc"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out, err) = run(&["get", "-v", &url, "-"], &home);
    assert_eq!((code, out.as_str()), (Some(0), "netrc\n"), "{err}");
    assert!(err.contains("is readable by others (mode 644)"), "{err}");
    assert!(
        err.contains(&format!("Command: USER {}", peers::USER)),
        "{err}"
    );
    // A password given on purpose wins over the netrc's; the netrc still gives the login.
    let wrong = w.join("wrong-netrc");
    std::fs::write(
        &wrong,
        format!("machine {host} login {} password not-it\n", peers::USER),
    )
    .unwrap();
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = Command::new(BIN)
        .args(["get", "--netrc-file", wrong.to_str().unwrap(), &url, "-"])
        .current_dir(w)
        .env("HOME", w)
        .env("WHARF_PASSWORD", peers::PASSWORD)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        (out.status.code(), out.stdout.as_slice()),
        (Some(0), &b"netrc\n"[..]),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A missing --netrc-file is an error that names it.
    let (code, _, err) = run(&["get", "--netrc-file", "/nonexistent/netrc", &url, "-"], w);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("/nonexistent/netrc"), "{err}");
}

#[test]
fn honest_screens() {
    let peer = peers::pyftpdlib(&PyOptions::default());
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let body = pattern(2_000_000, 9);
    peer.seed("f.bin", &body);

    // A result line after a transfer; a count after a tree.
    let r = wharf(w, &["get", &peer.url("f.bin")]);
    r.ok("get");
    assert!(r.stderr.contains("f.bin: 2.0 MB in "), "{}", r.stderr);
    make_tree(&w.join("tree"));
    let r = wharf(w, &["put", "-r", "tree", &peer.url("tree")]);
    r.ok("put -r");
    assert!(r.stderr.contains("4 files (370.0 kB) in "), "{}", r.stderr);

    // A symbolic link out of the tree is skipped with a warning; --follow-links uploads it.
    let outside = w.join("secret.txt");
    write_file(&outside, b"not for the server\n");
    std::os::unix::fs::symlink(&outside, w.join("tree/leak")).unwrap();
    std::os::unix::fs::symlink("a.bin", w.join("tree/inside")).unwrap();
    let r = wharf(w, &["put", "-r", "tree", &peer.url("tree2")]);
    r.ok("put -r with links");
    assert!(
        !peer.path("tree2/leak").exists(),
        "the link out of the tree was followed"
    );
    assert!(
        peer.path("tree2/inside").is_file(),
        "a link inside the tree is a file"
    );
    assert!(
        r.stderr.contains("skipped")
            && r.stderr
                .contains("leak: a symbolic link leading out of the tree"),
        "{}",
        r.stderr
    );
    wharf(
        w,
        &["put", "-r", "--follow-links", "tree", &peer.url("tree3")],
    )
    .ok("--follow-links");
    assert_eq!(
        std::fs::read(peer.path("tree3/leak")).unwrap(),
        b"not for the server\n"
    );

    // A missing local directory is named as the user gave it, not as a temporary file.
    let r = wharf(w, &["get", &peer.url("f.bin"), "no/such/dir/f.bin"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("no/such/dir/f.bin") && !r.stderr.contains("part"),
        "{}",
        r.stderr
    );

    // Ctrl-C keeps the partial file and says how to resume; -c continues it.
    std::fs::remove_file(w.join("f.bin")).unwrap();
    let child = spawn(w, &["get", "--limit-rate", "500k", &peer.url("f.bin")]);
    let part = w.join("f.bin.wharf-part");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(&part).map_or(0, |m| m.len()) == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    interrupt(&child);
    let r = finish(child);
    assert_eq!(r.code, 130, "{}", r.stderr);
    assert!(
        r.stderr.contains("interrupted")
            && r.stderr
                .contains("the partial file f.bin.wharf-part is kept: run again with -c to resume"),
        "{}",
        r.stderr
    );
    let kept = std::fs::metadata(&part).unwrap().len();
    assert!(kept > 0 && kept < body.len() as u64);
    let r = wharf(w, &["get", "-c", "-v", &peer.url("f.bin")]);
    r.ok("get -c");
    assert!(r.log_has(&format!("Command: REST {kept}")), "{}", r.stderr);
    assert!(std::fs::read(w.join("f.bin")).unwrap() == body);
}

/// Ctrl-C, as a terminal sends it: SIGINT to the child.
fn interrupt(child: &std::process::Child) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
}

/// Writes `lines` to a child's stdin one at a time, `pause` apart.
fn type_lines(stdin: &mut std::process::ChildStdin, lines: &[(&str, u64)]) {
    for (line, pause_ms) in lines {
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
        std::thread::sleep(Duration::from_millis(*pause_ms));
    }
}

#[test]
fn shell_on_a_pseudo_terminal_reconnects_after_a_drop() {
    let script = wharf_testkit::require_tool("script");
    // The server drops idle sessions after 2 s: the shell must reconnect, in the same directory.
    let config = "[limits]\nidle_timeout = 2\n";
    let peer = peers::wharf(BIN, "127.0.0.1:0", Some(config));
    peer.seed("dir/remote.txt", b"from the server\n");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    write_file(&w.join("local.txt"), b"from the shell\n");
    let line = format!("{BIN} shell --timeout 10 {}", peer.url(""));
    let mut child = Command::new(script)
        .args(["-qefc", &line, "/dev/null"])
        .current_dir(w)
        .env("WHARF_PASSWORD", peers::PASSWORD)
        .env("HOME", w)
        .env("TERM", "xterm")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    type_lines(
        &mut stdin,
        &[
            ("cd dir", 400),
            ("pwd", 400),
            // Tab completes the remote name.
            ("get rem\t", 400),
            ("put local.txt", 400),
            ("mkdir -p a/b", 400),
            ("ls", 3000),
            // Idle past the server's timeout: this one reconnects.
            ("pwd", 600),
            ("ls", 600),
            ("quit", 300),
        ],
    );
    drop(stdin);
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if child.try_wait().unwrap().is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let shown = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(out.status.success(), "{shown}");
    assert_eq!(
        std::fs::read(w.join("remote.txt")).unwrap(),
        b"from the server\n",
        "{shown}"
    );
    assert_eq!(
        std::fs::read(peer.path("dir/local.txt")).unwrap(),
        b"from the shell\n",
        "{shown}"
    );
    assert!(peer.path("dir/a/b").is_dir(), "{shown}");
    assert!(
        shown.contains("wharf:/dir> "),
        "the prompt shows the directory: {shown}"
    );
    assert!(shown.contains("reconnecting"), "no reconnect: {shown}");
    // After the reconnect, pwd is still /dir and ls still lists it.
    let after = shown.rsplit("reconnecting").next().unwrap_or_default();
    assert!(
        after.contains("/dir\n") && after.contains("local.txt"),
        "{shown}"
    );
    // The history was kept.
    let history = std::fs::read_to_string(w.join(".local/state/wharf/history")).unwrap_or_default();
    assert!(history.contains("mkdir -p a/b"), "{history}");
}
