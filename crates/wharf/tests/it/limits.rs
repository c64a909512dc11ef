//! Per-user limits on the real binary: sessions per user, download and upload rates shared by
//! the user's sessions, quota (bytes, files) and file size enforced while uploads run, across
//! two sessions of one user.

use std::io::Write;
use std::time::{Duration, Instant};

use wharf_testkit::{Ftp, Server, pattern};

use crate::server;
use wharf_testkit::PW_HASH;

fn alice(limits: &str) -> Server {
    server()
        .config(&format!(
            "[[user]]\nname = \"alice\"\npassword_hash = \"{PW_HASH}\"\npermissions = [\"all\"]\n{limits}"
        ))
        .start()
}

#[test]
fn sessions_per_user_are_limited() {
    let s = alice("max_sessions = 2\n");
    let a = Ftp::login_to(s.addr, "alice", "pw");
    let _b = Ftp::login_to(s.addr, "alice", "pw");
    let mut c = Ftp::connect(s.addr);
    assert_eq!(c.cmd("USER alice").code, 331);
    let r = c.cmd("PASS pw");
    assert_eq!(r.text, "530 Too many sessions for this user.");
    let mut a = a;
    assert_eq!(a.cmd("QUIT").code, 221);
    assert!(a.is_closed());
    // The seat is free once the server has seen the QUIT through.
    assert!(s.wait_log("session closed", 1));
    c.login("alice", "pw");
    assert!(s.log().contains("the user has as many sessions as it may"));
}

/// Two sessions of one user downloading (then uploading) 1.5 MB each at once, with the user's
/// rate at 1 MB/s: together they take their 3 MB at that rate, not each at its own.
#[test]
fn rates_are_shared_by_the_sessions_of_a_user() {
    let s = alice("download_rate = 1000000\nupload_rate = 1000000\n");
    let data = pattern(1_500_000, 3);
    wharf_testkit::write_file(&s.path("big.bin"), &data);
    let started = Instant::now();
    let downloads: Vec<_> = (0..2)
        .map(|_| {
            let addr = s.addr;
            std::thread::spawn(move || {
                let mut ftp = Ftp::login_to(addr, "alice", "pw");
                let (got, r) = ftp.download("RETR big.bin");
                assert_eq!(r.code, 226);
                got.len()
            })
        })
        .collect();
    for d in downloads {
        assert_eq!(d.join().unwrap(), 1_500_000);
    }
    let down = started.elapsed();
    let started = Instant::now();
    let uploads: Vec<_> = (0..2)
        .map(|i| {
            let (addr, data) = (s.addr, data.clone());
            std::thread::spawn(move || {
                let mut ftp = Ftp::login_to(addr, "alice", "pw");
                assert_eq!(ftp.upload(&format!("STOR up{i}.bin"), &data).code, 226);
            })
        })
        .collect();
    for u in uploads {
        u.join().unwrap();
    }
    let up = started.elapsed();
    println!(
        "3 MB at a shared 1 MB/s: downloads took {:.2} s, uploads {:.2} s",
        down.as_secs_f64(),
        up.as_secs_f64()
    );
    // The last chunk of each transfer may go before its wait: at least 2.5 MB (2 MB for
    // uploads, whose reads are larger) at the rate, less the quarter second of credit.
    assert!(down >= Duration::from_millis(2000), "{down:?}");
    assert!(up >= Duration::from_millis(1500), "{up:?}");
    assert!(std::fs::read(s.path("up0.bin")).unwrap() == data);
}

#[test]
fn quota_and_file_size_hold_while_uploads_run() {
    let s = alice("quota_bytes = 1000000\nquota_files = 4\nmax_file_size = 700000\n");
    let mut a = Ftp::login_to(s.addr, "alice", "pw");
    assert_eq!(a.upload("STOR a.bin", &pattern(600_000, 1)).code, 226);
    // Over the quota: 552, and nothing of it stays.
    let r = a.upload("STOR b.bin", &pattern(600_000, 2));
    assert_eq!(r.text, "552 Quota exceeded; the new file was removed.");
    assert!(!s.path("b.bin").exists());
    // Two sessions at once with 400 kB of room and 300 kB each: not both.
    let results: Vec<_> = ["c.bin", "d.bin"]
        .into_iter()
        .map(|name| {
            let addr = s.addr;
            std::thread::spawn(move || {
                let mut ftp = Ftp::login_to(addr, "alice", "pw");
                let mut data = ftp.passive();
                let r = ftp.cmd(&format!("STOR {name}"));
                assert_eq!(r.code, 150, "{}", r.text);
                // Slowly, so that both are in progress together.
                for chunk in pattern(300_000, 9).chunks(50_000) {
                    if data.write_all(chunk).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(30));
                }
                drop(data);
                ftp.read_reply().code
            })
        })
        .collect();
    let codes: Vec<u16> = results.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(codes.contains(&552), "both fitted: {codes:?}");
    let on_disk: u64 = ["a.bin", "c.bin", "d.bin"]
        .iter()
        .filter_map(|n| std::fs::metadata(s.path(n)).ok())
        .map(|m| m.len())
        .sum();
    assert!(on_disk <= 1_000_000, "{on_disk} bytes stored");
    // A replacement counts the file it replaces as freed.
    let new_a = pattern(650_000, 4);
    let r = a.upload("STOR a.bin", &new_a);
    assert_eq!(r.code, 226, "{}", r.text);
    // Too large: removed, and a file it would have replaced stays as it was.
    let r = a.upload("STOR a.bin", &pattern(800_000, 5));
    assert_eq!(r.text, "552 File too large; the file is as it was before.");
    assert!(std::fs::read(s.path("a.bin")).unwrap() == new_a);
    // APPE past the size limit: cut back to what the file held.
    let r = a.upload("APPE a.bin", &pattern(60_000, 6));
    assert_eq!(r.code, 552, "{}", r.text);
    assert!(std::fs::read(s.path("a.bin")).unwrap() == new_a);
    // STOU is under the same limits.
    let before: Vec<_> = std::fs::read_dir(&s.root).unwrap().collect();
    let r = a.upload("STOU", &pattern(800_000, 7));
    assert!(
        r.code == 552 && r.text.ends_with("the new file was removed."),
        "{}",
        r.text
    );
    assert_eq!(std::fs::read_dir(&s.root).unwrap().count(), before.len());
    // The file quota: a new file beyond it is refused before any byte.
    for name in ["e.txt", "f.txt"] {
        let _ = a.upload(&format!("STOR {name}"), b"x");
    }
    let mut files = std::fs::read_dir(&s.root).unwrap().count();
    while files < 4 {
        let _ = a.upload(&format!("STOR g{files}.txt"), b"x");
        files = std::fs::read_dir(&s.root).unwrap().count();
    }
    let _ = a.passive();
    let r = a.cmd("STOR h.txt");
    assert_eq!(r.text, "552 Quota exceeded.");
    assert!(!s.path("h.txt").exists());
}

/// A resume (REST+STOR) or an append that crosses the quota is cut back to the file's earlier
/// length, and the 552 says so (it used to stop at the quota, the file grown to it).
#[test]
fn resumes_and_appends_past_the_quota_are_cut_back() {
    let s = alice(
        "quota_bytes = 400000
",
    );
    let mut a = Ftp::login_to(s.addr, "alice", "pw");
    let first = pattern(371_000, 1);
    assert_eq!(a.upload("STOR big.bin", &first).code, 226);
    // `wharf put -c`'s path: SIZE, then REST + STOR of the rest; 100 kB more is over.
    assert_eq!(a.cmd("SIZE big.bin").text, "213 371000");
    let r = a.upload_from("STOR big.bin", &pattern(100_000, 2), 371_000);
    assert_eq!(
        r.text,
        "552 Quota exceeded; the file was cut back to its earlier 371000 bytes."
    );
    assert!(std::fs::read(s.path("big.bin")).unwrap() == first);
    // The same from further back: what was there before stays the length.
    let r = a.upload_from("STOR big.bin", &pattern(100_000, 3), 340_000);
    assert_eq!(
        r.text,
        "552 Quota exceeded; the file was cut back to its earlier 371000 bytes (from byte 340000 on as this upload sent them)."
    );
    assert_eq!(std::fs::metadata(s.path("big.bin")).unwrap().len(), 371_000);
    // APPE likewise.
    let r = a.upload("APPE big.bin", &pattern(50_000, 4));
    assert_eq!(
        r.text,
        "552 Quota exceeded; the file was cut back to its earlier 371000 bytes."
    );
    assert_eq!(std::fs::metadata(s.path("big.bin")).unwrap().len(), 371_000);
    // Within the quota, both go through.
    assert_eq!(a.upload("APPE big.bin", &pattern(10_000, 5)).code, 226);
    assert_eq!(std::fs::metadata(s.path("big.bin")).unwrap().len(), 381_000);
    // APPE of a new name past the quota: no file is left.
    let r = a.upload("APPE fresh.bin", &pattern(50_000, 7));
    assert_eq!(r.text, "552 Quota exceeded; the new file was removed.");
    assert!(!s.path("fresh.bin").exists());
    // And a fresh STOU past the quota leaves no file.
    let before = std::fs::read_dir(&s.root).unwrap().count();
    let r = a.upload("STOU", &pattern(50_000, 6));
    assert!(r.text.ends_with("the new file was removed."), "{}", r.text);
    assert_eq!(std::fs::read_dir(&s.root).unwrap().count(), before);
}

/// An upload that opened with the quota's room still sees what another session's upload
/// stored meanwhile: two sessions cannot store twice the quota one after the other.
#[test]
fn quota_counts_uploads_that_landed_meanwhile() {
    let s = alice("quota_bytes = 1000000\n");
    let mut b = Ftp::login_to(s.addr, "alice", "pw");
    let mut slow = b.passive();
    assert_eq!(b.cmd("STOR slow.bin").code, 150);
    slow.write_all(&pattern(100_000, 1)).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut a = Ftp::login_to(s.addr, "alice", "pw");
    assert_eq!(a.upload("STOR fast.bin", &pattern(800_000, 2)).code, 226);
    // B goes on past what is left (1,000,000 - 800,000 - its own 100,000).
    let rest = pattern(300_000, 3);
    let _ = slow.write_all(&rest);
    drop(slow);
    let r = b.read_reply();
    assert_eq!(r.text, "552 Quota exceeded; the new file was removed.");
    assert!(!s.path("slow.bin").exists());
    assert_eq!(
        std::fs::metadata(s.path("fast.bin")).unwrap().len(),
        800_000
    );
}
