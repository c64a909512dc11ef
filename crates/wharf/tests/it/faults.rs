//! Faults an operator meets: a password flood from one address (fair queue, ban), memory after
//! bursts of logins. Every loop is bounded in count and time; each test prints what it held.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use wharf_testkit::{Ftp, Server};

use crate::server;

const FLOODER: &str = "127.0.0.2";

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// `n` logins in a row from 127.0.0.1, each timed from connect to 230.
fn timed_logins(s: &Server, n: usize) -> Vec<Duration> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            let mut ftp = Ftp::login_to(s.addr, "alice", "pw");
            let took = t.elapsed();
            ftp.cmd("QUIT");
            took
        })
        .collect()
}

/// The CPU-heavy tests of this file (floods of password checks, bursts of logins) run one at a
/// time: each measures the server, and the machine has few cores.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|p| p.into_inner())
}

/// 40 connections from 127.0.0.2 sending wrong passwords until `stop` (each bounded to 2,000
/// attempts), holding off while `pause` is set; counts the passwords checked and refused (530).
fn flood(
    s: &Server,
    stop: Arc<AtomicBool>,
    pause: Arc<AtomicBool>,
) -> (Vec<std::thread::JoinHandle<()>>, Arc<AtomicUsize>) {
    let attempts = Arc::new(AtomicUsize::new(0));
    let from: IpAddr = FLOODER.parse().unwrap();
    let threads = (0..40)
        .map(|_| {
            let (stop, pause, attempts, addr) =
                (stop.clone(), pause.clone(), attempts.clone(), s.addr);
            std::thread::spawn(move || {
                let mut ftp = Ftp::connect_from(from, addr);
                for _ in 0..2000 {
                    if stop.load(Ordering::Relaxed) || ftp.banner.code != 220 {
                        return;
                    }
                    // Bounded: a pause lasts one quiet round of logins.
                    for _ in 0..200 {
                        if !pause.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed) {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    if ftp.cmd("USER alice").code != 331 {
                        return;
                    }
                    let r = ftp.cmd("PASS wrong");
                    if r.code != 530 {
                        return;
                    }
                    attempts.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    (threads, attempts)
}

/// With bans off, 40 connections from 127.0.0.2 flooding wrong passwords do not take the
/// password checks from 127.0.0.1: its logins stay near their usual time (median; 1.2 times
/// on an idle 2-core machine), as addresses with failures wait behind clean ones.
#[test]
fn a_password_flood_does_not_slow_other_addresses() {
    let _one_at_a_time = heavy();
    let s = server()
        .args(&["--user", "alice:pw"])
        .config(
            "[limits]\nban_after_failures = 0\nmax_login_failures = 5000\nfailed_login_delay_ms = 0\n",
        )
        .start();
    let stop = Arc::new(AtomicBool::new(false));
    let pause = Arc::new(AtomicBool::new(true));
    let (threads, attempts) = flood(&s, stop.clone(), pause.clone());
    // Quiet and loud rounds in turn, so that whatever else the machine does falls on both.
    let (mut quiet, mut loud, mut during) = (Vec::new(), Vec::new(), 0);
    for _ in 0..3 {
        pause.store(true, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(200));
        quiet.extend(timed_logins(&s, 5));
        pause.store(false, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(300));
        let before = attempts.load(Ordering::Relaxed);
        loud.extend(timed_logins(&s, 5));
        during += attempts.load(Ordering::Relaxed) - before;
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let (q, l) = (median(quiet.clone()), median(loud.clone()));
    let worst = loud.iter().max().copied().unwrap_or_default();
    println!(
        "logins from 127.0.0.1: median {:.1} ms quiet, {:.1} ms during the flood (worst {:.1} ms); \
         {during} wrong passwords from 127.0.0.2 checked meanwhile",
        ms(q),
        ms(l),
        ms(worst)
    );
    // The flood holds one slot at most: about one check per login of 127.0.0.1.
    assert!(during >= 5, "the flood did not run ({during} attempts)");
    // The measure is twice the quiet median; the bound leaves room for the other tests that
    // share the machine's cores (a first-come queue put this at 20-50 times).
    assert!(
        l <= q * 3 + Duration::from_millis(30),
        "median login {:.1} ms during the flood vs {:.1} ms quiet",
        ms(l),
        ms(q)
    );
}

/// With the default ban (10 failures in 10 minutes), the flooding address is banned: refused
/// at connect with 421, its waiting logins refused without a check; 127.0.0.1 still logs in.
#[test]
fn a_password_flood_is_banned() {
    let _one_at_a_time = heavy();
    let s = server()
        .args(&["--user", "alice:pw"])
        .config("[limits]\nfailed_login_delay_ms = 0\nmax_login_failures = 100\n")
        .start();
    let stop = Arc::new(AtomicBool::new(false));
    let (threads, attempts) = flood(&s, stop.clone(), Arc::new(AtomicBool::new(false)));
    for t in threads {
        t.join().unwrap();
    }
    let tried = attempts.load(Ordering::Relaxed);
    let refused = Ftp::connect_from(FLOODER.parse().unwrap(), s.addr);
    assert_eq!(refused.banner.code, 421, "{}", refused.banner.text);
    assert!(
        s.log().contains("address banned after failed logins"),
        "{}",
        s.log()
    );
    assert!(s.log().contains("connection refused: address banned"));
    let checked = s.log().matches("login refused for the address").count();
    println!(
        "flood: {tried} wrong passwords checked before the ban; {checked} waiting logins refused unchecked"
    );
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    assert!(
        tried <= 10 + cores,
        "{tried} passwords checked: the ban came late"
    );
    Ftp::login_to(s.addr, "alice", "pw");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Three bursts of 200 parallel password logins (Argon2, 19 MiB of working memory each): the
/// server's resident memory afterwards stays under 64 MiB (the working memory is reused).
#[test]
fn memory_comes_back_after_bursts_of_logins() {
    let _one_at_a_time = heavy();
    let s = server()
        .args(&["--user", "alice:pw"])
        .config("[limits]\nmax_sessions_per_ip = 500\n")
        .start();
    let start = rss_kib(s.pid());
    let mut peak = 0;
    for _ in 0..3 {
        let threads: Vec<_> = (0..200)
            .map(|_| {
                let addr = s.addr;
                std::thread::spawn(move || {
                    let mut ftp = Ftp::login_to(addr, "alice", "pw");
                    ftp.cmd("QUIT");
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        peak = peak.max(rss_kib(s.pid()));
    }
    std::thread::sleep(Duration::from_millis(300));
    let after = rss_kib(s.pid());
    println!(
        "resident memory: {} KiB at start, {} KiB at most after a burst, {} KiB after 600 logins",
        start, peak, after
    );
    assert!(after < 64 * 1024, "{after} KiB after the bursts");
}

/// Temporary upload files of an earlier run are swept at start-up (old and new name forms,
/// in subdirectories too), and such a name is unreachable by any command while it exists.
#[test]
fn temporary_upload_files_are_swept_and_unreachable() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    wharf_testkit::write_file(&r.join(".wharf-upload.0123456789abcdef"), b"old form");
    wharf_testkit::write_file(&r.join("sub/.wharf-upload.beef.00112233"), b"new form");
    wharf_testkit::write_file(&r.join("sub/keep.txt"), b"keep");
    let s = server().arg("-w").start_on(r);
    assert!(s.wait_log("swept temporary upload files", 1), "{}", s.log());
    assert!(s.log().contains("removed=2"), "{}", s.log());
    assert!(!r.join(".wharf-upload.0123456789abcdef").exists());
    assert!(!r.join("sub/.wharf-upload.beef.00112233").exists());
    assert_eq!(std::fs::read(r.join("sub/keep.txt")).unwrap(), b"keep");
    // One that appears while the server runs: no command reaches it.
    let name = ".wharf-upload.feed.44556677";
    wharf_testkit::write_file(&r.join("sub").join(name), b"in flight");
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let r = root.path();
    for cmd in ["SIZE", "MDTM", "RETR", "DELE", "RNFR", "MLST", "CWD", "RMD"] {
        let reply = ftp.cmd(&format!("{cmd} sub/{name}"));
        assert_eq!(reply.code, 550, "{cmd}: {}", reply.text);
    }
    let reply = ftp.cmd(&format!("MKD {name}"));
    assert_eq!(reply.code, 550, "{}", reply.text);
    assert!(
        r.join("sub").join(name).exists(),
        "the file itself is left alone"
    );
    let listing = ftp.cmd("STAT sub").text;
    assert!(!listing.contains(".wharf-upload"), "{listing}");
}

/// SIGKILL in the middle of an overwriting STOR: the old content is intact, no temporary file
/// is left (the upload went to an unnamed file), and a restart serves the old file; the next
/// upload replaces it whole.
#[test]
fn sigkill_during_an_overwrite_leaves_the_old_file_and_no_temporary() {
    use std::io::Write;
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let old = wharf_testkit::pattern(1 << 20, 1);
    let new = wharf_testkit::pattern(3 << 20, 2);
    wharf_testkit::write_file(&r.join("f.bin"), &old);
    let mut s = server().arg("-w").start_on(r);
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let mut data = ftp.passive();
    assert_eq!(ftp.cmd("STOR f.bin").code, 150);
    data.write_all(&new[..1 << 20]).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    s.kill();
    let names: Vec<_> = std::fs::read_dir(r)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["f.bin"], "something was left beside the file");
    assert!(
        std::fs::read(r.join("f.bin")).unwrap() == old,
        "the old file was touched"
    );
    let s = server().arg("-w").start_on(r);
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let (got, reply) = ftp.download("RETR f.bin");
    assert_eq!(reply.code, 226);
    assert!(got == old);
    assert_eq!(ftp.upload("STOR f.bin", &new).code, 226);
    assert!(std::fs::read(r.join("f.bin")).unwrap() == new);
    println!("killed after 1 MiB of a 3 MiB overwrite: old 1 MiB file intact, nothing else left");
}

/// Descriptors the server process holds now.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// 500 connections that send half a command and nothing more (slowloris) are closed by the idle
/// timeout, and meanwhile a new client still logs in at once.
#[test]
fn slowloris_connections_are_closed_and_others_still_log_in() {
    use std::io::{Read, Write};
    let _one_at_a_time = heavy();
    let s = server()
        .config("[limits]\nidle_timeout = 2\nmax_sessions = 2000\nmax_sessions_per_ip = 1000\n")
        .start();
    let mut slow = Vec::new();
    for _ in 0..500 {
        let mut c = std::net::TcpStream::connect(s.addr).unwrap();
        c.write_all(b"US").unwrap();
        slow.push(c);
    }
    let t = Instant::now();
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let login = t.elapsed();
    assert_eq!(ftp.cmd("NOOP").code, 200);
    // Each gets its 421 and then end of stream once the idle timeout passes (reads bounded).
    let mut closed = 0;
    for c in &mut slow {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut all = Vec::new();
        if c.read_to_end(&mut all).is_ok() && String::from_utf8_lossy(&all).contains("\n421 ") {
            closed += 1;
        }
    }
    println!(
        "500 slowloris connections: {closed} closed by the idle timeout (421); a login meanwhile took {:.1} ms",
        ms(login)
    );
    assert_eq!(closed, 500);
    assert!(login < Duration::from_secs(2), "{login:?}");
}

/// 10,000 PASV without a connection, and 1,000 downloads stopped by ABOR: the server's open
/// descriptors stay as they were (each listener and data connection is closed).
#[test]
fn pasv_and_abor_loops_leak_no_descriptors() {
    use std::io::Read;
    let s = server().start();
    wharf_testkit::write_file(&s.path("big.bin"), &vec![1u8; 8 << 20]);
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let before = open_fds(s.pid());
    for _ in 0..10_000 {
        assert_eq!(ftp.cmd("PASV").code, 227);
    }
    assert_eq!(ftp.cmd("NOOP").code, 200);
    let after_pasv = open_fds(s.pid());
    for _ in 0..1000 {
        let mut data = ftp.passive();
        assert_eq!(ftp.cmd("RETR big.bin").code, 150);
        let mut some = [0u8; 4096];
        data.read_exact(&mut some).unwrap();
        ftp.send("ABOR");
        let first = ftp.read_reply().code;
        if first == 426 {
            assert_eq!(ftp.read_reply().code, 226);
        } else {
            assert_eq!(first, 226);
        }
        drop(data);
    }
    assert_eq!(ftp.cmd("NOOP").code, 200);
    let after_abor = open_fds(s.pid());
    println!(
        "server descriptors: {before} before, {after_pasv} after 10,000 PASV, {after_abor} after 1,000 ABOR"
    );
    assert!(after_pasv <= before + 1, "{before} -> {after_pasv}");
    assert!(after_abor <= before + 1, "{before} -> {after_abor}");
}

/// A reset in the middle of a download gives 426 and the session goes on.
#[test]
fn a_reset_mid_download_gives_426_and_the_session_lives() {
    use std::io::Read;
    let s = server().start();
    wharf_testkit::write_file(&s.path("big.bin"), &vec![2u8; 32 << 20]);
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let mut data = ftp.passive();
    assert_eq!(ftp.cmd("RETR big.bin").code, 150);
    let mut some = vec![0u8; 64 * 1024];
    data.read_exact(&mut some).unwrap();
    socket2::SockRef::from(&data)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(data); // RST
    let r = ftp.read_reply();
    assert_eq!(r.code, 426, "{}", r.text);
    assert_eq!(ftp.cmd("NOOP").code, 200);
    let (got, r) = ftp.download("RETR big.bin");
    assert_eq!((got.len(), r.code), (32 << 20, 226));
}

/// A file system that fills up (a 1 MiB tmpfs): the overwrite gets 452 and the old file is
/// intact; nothing else is left. Needs root to mount the tmpfs.
#[test]
fn a_full_disk_gives_452_and_keeps_the_old_file() {
    struct Mount(std::path::PathBuf);
    impl Drop for Mount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    assert!(
        wharf_testkit::is_root(),
        "this test mounts a small tmpfs: run the tests as root (CI does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "cannot mount a tmpfs");
    let mount = Mount(dir.path().to_path_buf());
    let old = wharf_testkit::pattern(200_000, 1);
    wharf_testkit::write_file(&mount.0.join("f.bin"), &old);
    let mut s = server().arg("-w").start_on(&mount.0);
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let r = ftp.upload("STOR f.bin", &wharf_testkit::pattern(2 << 20, 2));
    assert_eq!(r.text, "452 Insufficient storage space.");
    assert!(std::fs::read(mount.0.join("f.bin")).unwrap() == old);
    let names: Vec<_> = std::fs::read_dir(&mount.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["f.bin"]);
    assert_eq!(ftp.cmd("NOOP").code, 200);
    s.kill();
    drop(mount);
}
