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

/// 40 connections from 127.0.0.2 sending wrong passwords until `stop` (each bounded to 2,000
/// attempts); counts the passwords checked and refused (530).
fn flood(
    s: &Server,
    stop: Arc<AtomicBool>,
) -> (Vec<std::thread::JoinHandle<()>>, Arc<AtomicUsize>) {
    let attempts = Arc::new(AtomicUsize::new(0));
    let from: IpAddr = FLOODER.parse().unwrap();
    let threads = (0..40)
        .map(|_| {
            let (stop, attempts, addr) = (stop.clone(), attempts.clone(), s.addr);
            std::thread::spawn(move || {
                let mut ftp = Ftp::connect_from(from, addr);
                for _ in 0..2000 {
                    if stop.load(Ordering::Relaxed) || ftp.banner.code != 220 {
                        return;
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
/// password checks from 127.0.0.1: its logins stay within twice their usual time (median), as
/// the checks go round-robin over addresses.
#[test]
fn a_password_flood_does_not_slow_other_addresses() {
    let s = server()
        .args(&["--user", "alice:pw"])
        .config(
            "[limits]\nban_after_failures = 0\nmax_login_failures = 5000\nfailed_login_delay_ms = 0\n",
        )
        .start();
    let quiet = timed_logins(&s, 15);
    let stop = Arc::new(AtomicBool::new(false));
    let (threads, attempts) = flood(&s, stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    let before = attempts.load(Ordering::Relaxed);
    let loud = timed_logins(&s, 15);
    let during = attempts.load(Ordering::Relaxed) - before;
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
    assert!(during > 15, "the flood did not run ({during} attempts)");
    assert!(
        l <= q * 2 + Duration::from_millis(20),
        "median login {:.1} ms during the flood vs {:.1} ms quiet",
        ms(l),
        ms(q)
    );
}

/// With the default ban (10 failures in 10 minutes), the flooding address is banned: refused
/// at connect with 421, its waiting logins refused without a check; 127.0.0.1 still logs in.
#[test]
fn a_password_flood_is_banned() {
    let s = server()
        .args(&["--user", "alice:pw"])
        .config("[limits]\nfailed_login_delay_ms = 0\nmax_login_failures = 100\n")
        .start();
    let stop = Arc::new(AtomicBool::new(false));
    let (threads, attempts) = flood(&s, stop.clone());
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
