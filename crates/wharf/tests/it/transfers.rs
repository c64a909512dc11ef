//! Transfers: bytes on disk, both types, resume, append, unique names, broken uploads, ABOR,
//! active mode, IPv6, names as bytes.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use wharf_testkit::{Ftp, IO_TIMEOUT, pattern};

use crate::backend::{Backend, served, writable_on};

fn binary_round_trip_is_byte_exact(b: Backend) {
    let s = writable_on(b);
    let data = pattern(3 << 20, 7);
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    assert_eq!(ftp.upload("STOR bin.dat", &data).code, 226);
    assert_eq!(s.read("bin.dat"), data);
    let (back, r) = ftp.download("RETR bin.dat");
    assert_eq!(r.code, 226);
    assert_eq!(back, data);
}

fn type_a_converts_line_endings_both_ways(b: Backend) {
    let s = writable_on(b);
    s.put("unix.txt", b"one\ntwo\n\nthree");
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    assert_eq!(ftp.cmd("TYPE A").code, 200);
    let (wire, _) = ftp.download("RETR unix.txt");
    assert_eq!(wire, b"one\r\ntwo\r\n\r\nthree");
    assert_eq!(ftp.upload("STOR up.txt", b"a\r\nb\r\nc\rd\r\n").code, 226);
    assert_eq!(s.read("up.txt"), b"a\nb\nc\rd\n");
    assert_eq!(ftp.cmd("TYPE I").code, 200);
    let (raw, _) = ftp.download("RETR unix.txt");
    assert_eq!(raw, b"one\ntwo\n\nthree");
}

fn rest_stor_resumes_and_appe_appends(b: Backend) {
    let s = writable_on(b);
    let full = pattern(100_000, 3);
    s.put("part.bin", &full[..40_000]);
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    assert_eq!(
        ftp.upload_from("STOR part.bin", &full[40_000..], 40_000)
            .code,
        226
    );
    assert_eq!(s.read("part.bin"), full);
    assert_eq!(ftp.upload("APPE log.txt", b"one\n").code, 226);
    assert_eq!(ftp.upload("APPE log.txt", b"two\n").code, 226);
    assert_eq!(s.read("log.txt"), b"one\ntwo\n");
}

fn stou_creates_a_unique_file(b: Backend) {
    let s = writable_on(b);
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let mut data = ftp.passive();
    let r = ftp.cmd("STOU");
    assert_eq!(r.code, 150);
    let name = r
        .text
        .strip_prefix("150 FILE: ")
        .expect("150 FILE: name")
        .to_string();
    data.write_all(b"unique").unwrap();
    drop(data);
    assert_eq!(ftp.read_reply().code, 226);
    assert_eq!(s.read(&name), b"unique");
}

/// Starts an upload of `name` and sends `bytes` without finishing it.
fn start_upload(ftp: &mut Ftp, name: &str, bytes: &[u8]) -> TcpStream {
    let mut data = ftp.passive();
    assert_eq!(ftp.cmd(&format!("STOR {name}")).code, 150);
    data.write_all(bytes).unwrap();
    data.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    data
}

fn aborted_overwrite_keeps_the_old_file(b: Backend) {
    let s = writable_on(b);
    s.put("keep.txt", b"the old contents");
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let _data = start_upload(&mut ftp, "keep.txt", b"new but partial");
    assert_eq!(ftp.cmd("ABOR").code, 426);
    assert_eq!(ftp.read_reply().code, 226);
    assert_eq!(s.read("keep.txt"), b"the old contents");
    assert_eq!(s.names(), vec!["keep.txt"], "temporary file left behind");
}

fn reset_data_connection_keeps_the_old_file(b: Backend) {
    let s = writable_on(b);
    s.put("keep.txt", b"the old contents");
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let data = start_upload(&mut ftp, "keep.txt", &pattern(64 * 1024, 1));
    socket2::SockRef::from(&data)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(data); // RST, not FIN: the upload broke
    let r = ftp.read_reply();
    assert_eq!(r.code, 426, "{}", r.text);
    assert_eq!(s.read("keep.txt"), b"the old contents");
    assert_eq!(s.names(), vec!["keep.txt"]);
    // A complete overwrite replaces it.
    assert_eq!(ftp.upload("STOR keep.txt", b"replaced").code, 226);
    assert_eq!(s.read("keep.txt"), b"replaced");
    assert_eq!(s.names(), vec!["keep.txt"]);
}

fn broken_new_upload_stays_for_resume(b: Backend) {
    let s = writable_on(b);
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let data = start_upload(&mut ftp, "new.bin", b"first half");
    socket2::SockRef::from(&data)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(data);
    assert_eq!(ftp.read_reply().code, 426);
    if b == Backend::S3 {
        // An object appears only when its upload completed: nothing to resume, start again.
        assert!(!s.exists("new.bin"), "a broken upload left an object");
        assert_eq!(ftp.cmd("SIZE new.bin").code, 550);
        assert_eq!(ftp.upload("STOR new.bin", b"whole").code, 226);
        assert_eq!(s.read("new.bin"), b"whole");
        return;
    }
    assert_eq!(s.read("new.bin"), b"first half");
    assert_eq!(ftp.cmd("SIZE new.bin").text, "213 10");
    assert_eq!(
        ftp.upload_from("STOR new.bin", b", second half", 10).code,
        226
    );
    assert_eq!(s.read("new.bin"), b"first half, second half");
}

/// A STOR of a new name whose data connection never comes (or, under TLS, is refused) leaves
/// no empty file behind; an existing file stays as it was.
fn new_upload_that_never_connected_leaves_no_file(b: Backend) {
    let s = served(b)
        .arg("-w")
        .config("[limits]\naccept_timeout = 1\n")
        .start();
    s.put("old.bin", b"old bytes");
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    for name in ["new.bin", "old.bin"] {
        let _addr = ftp.pasv(); // never connected
        let r = ftp.cmd(&format!("STOR {name}"));
        assert_eq!(r.code, 425, "{}", r.text);
    }
    assert!(!s.exists("new.bin"), "an empty file was left");
    assert_eq!(s.read("old.bin"), b"old bytes");
}

/// Two STORs of a name that does not exist yet, at the same moment: both succeed (STOR means
/// create or replace), and the file is one of the two, whole.
fn simultaneous_stors_of_a_new_name_both_succeed(b: Backend) {
    let s = writable_on(b);
    let (one, two) = (pattern(300_000, 1), pattern(200_000, 2));
    for round in 0..10 {
        let name = format!("race{round}.bin");
        let mut a = Ftp::login_to(s.addr, "anonymous", "x");
        let mut c = Ftp::login_to(s.addr, "anonymous", "x");
        let (da, dc) = (a.passive(), c.passive());
        a.send(&format!("STOR {name}"));
        c.send(&format!("STOR {name}"));
        for (ftp, data, bytes) in [(&mut a, da, &one), (&mut c, dc, &two)] {
            let r = ftp.read_reply();
            assert_eq!(r.code, 150, "round {round}: {}", r.text);
            let mut data = data;
            std::io::Write::write_all(&mut data, bytes).unwrap();
            drop(data);
            let r = ftp.read_reply();
            assert_eq!(r.code, 226, "round {round}: {}", r.text);
        }
        let got = s.read(&name);
        assert!(got == one || got == two, "round {round}: a torn file");
    }
}

fn abor_with_telnet_ip_and_synch_during_download(b: Backend) {
    let s = served(b).start();
    s.put("big", &vec![0u8; 64 << 20]);
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let data = ftp.passive();
    assert_eq!(ftp.cmd("RETR big").code, 150);
    std::thread::sleep(Duration::from_millis(200));
    // What a Telnet-aware client sends: IAC IP, then IAC DM as urgent data, then ABOR.
    ftp.send_raw(&[0xff, 0xf4]);
    socket2::SockRef::from(ftp.stream())
        .send_out_of_band(&[0xff, 0xf2])
        .unwrap();
    ftp.send_raw(b"ABOR\r\n");
    let r = ftp.read_reply();
    assert_eq!(r.code, 426, "{}", r.text);
    assert_eq!(ftp.read_reply().code, 226);
    assert_eq!(ftp.cmd("NOOP").code, 200);
    drop(data);
    assert_eq!(ftp.cmd("ABOR").code, 225, "ABOR with nothing running");
}

fn stat_during_transfer_reports_progress(b: Backend) {
    let s = served(b).start();
    s.put("big", &vec![0u8; 32 << 20]);
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let mut data = ftp.passive();
    assert_eq!(ftp.cmd("RETR big").code, 150);
    let r = ftp.cmd("STAT");
    assert_eq!(r.code, 213, "{}", r.text);
    assert!(r.text.contains("bytes transferred"), "{}", r.text);
    let mut sink = Vec::new();
    data.read_to_end(&mut sink).unwrap();
    assert_eq!(sink.len(), 32 << 20);
    assert_eq!(ftp.read_reply().code, 226);
}

fn active_transfer(ftp: &mut Ftp, setup: &str, listener: &TcpListener, command: &str) -> Vec<u8> {
    assert_eq!(ftp.cmd(setup).code, 200, "{setup}");
    ftp.send(command);
    let r = ftp.read_reply();
    assert_eq!(r.code, 150, "{command}: {}", r.text);
    listener.set_nonblocking(false).unwrap();
    let (mut conn, _) = listener.accept().unwrap();
    conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut out = Vec::new();
    conn.read_to_end(&mut out).unwrap();
    assert_eq!(ftp.read_reply().code, 226);
    out
}

fn active_mode_port_and_eprt(b: Backend) {
    let s = served(b).start();
    s.put("f.txt", b"active data");
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let got = active_transfer(
        &mut ftp,
        &format!("PORT 127,0,0,1,{},{}", port >> 8, port & 255),
        &l,
        "RETR f.txt",
    );
    assert_eq!(got, b"active data");
    let got = active_transfer(&mut ftp, &format!("EPRT |1|127.0.0.1|{port}|"), &l, "NLST");
    assert_eq!(got, b"f.txt\r\n");
}

fn active_source_port_is_used(b: Backend) {
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    let src = probe.local_addr().unwrap().port();
    drop(probe);
    let s = served(b)
        .args(&["--active-source-port", &src.to_string()])
        .start();
    s.put("f", b"x");
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    assert_eq!(ftp.cmd(&format!("EPRT |1|127.0.0.1|{port}|")).code, 200);
    ftp.send("RETR f");
    assert_eq!(ftp.read_reply().code, 150);
    let (_conn, from) = l.accept().unwrap();
    assert_eq!(from.port(), src);
    assert_eq!(ftp.read_reply().code, 226);
}

fn ipv6_epsv_and_eprt_work_and_pasv_gets_522(b: Backend) {
    if TcpListener::bind("[::1]:0").is_err() {
        panic!("IPv6 loopback is not available on this machine");
    }
    let s = served(b).listen("[::1]:0").start();
    s.put("six.txt", b"over IPv6");
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    assert_eq!(ftp.cmd("PASV").code, 522);
    assert_eq!(ftp.cmd("EPSV 1").code, 522);
    let (data, r) = ftp.download("RETR six.txt");
    assert_eq!(r.code, 226);
    assert_eq!(data, b"over IPv6");
    let l = TcpListener::bind("[::1]:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let got = active_transfer(
        &mut ftp,
        &format!("EPRT |2|::1|{port}|"),
        &l,
        "RETR six.txt",
    );
    assert_eq!(got, b"over IPv6");
    assert_eq!(
        ftp.cmd(&format!("PORT 127,0,0,1,{},{}", port >> 8, port & 255))
            .code,
        522
    );
}

fn names_are_bytes_end_to_end(b: Backend) {
    let s = writable_on(b);
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let name: &[u8] = b"caf\xe9-\xff.bin"; // Latin-1, not UTF-8
    if b == Backend::S3 {
        // Keys are UTF-8: such a name is refused before a byte moves, and UTF-8 names with
        // spaces, `#`, `%` and `+` go through as they are.
        let _data = ftp.passive();
        let mut cmd = b"STOR ".to_vec();
        cmd.extend_from_slice(name);
        assert_eq!(ftp.cmd_bytes(&cmd).code, 553);
        let utf8 = "café über #1 %20+x.bin";
        assert_eq!(ftp.upload(&format!("STOR {utf8}"), b"utf8").code, 226);
        assert_eq!(s.read(utf8), b"utf8");
        let (list, _) = ftp.download("NLST");
        assert_eq!(list, format!("{utf8}\r\n").into_bytes());
        return;
    }
    let mut data = ftp.passive();
    let mut cmd = b"STOR ".to_vec();
    cmd.extend_from_slice(name);
    assert_eq!(ftp.cmd_bytes(&cmd).code, 150);
    data.write_all(b"latin").unwrap();
    drop(data);
    assert_eq!(ftp.read_reply().code, 226);
    assert_eq!(s.read(name), b"latin");
    let (list, _) = ftp.download("NLST");
    assert_eq!(list, [name, b"\r\n"].concat());
}

fn failed_resume_does_not_cut_the_file(b: Backend) {
    let s = served(b)
        .arg("-w")
        .config("[limits]\naccept_timeout = 1\n")
        .start();
    let data = pattern(1000, 4);
    s.put("r.bin", &data);
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let _addr = ftp.pasv(); // never connected
    assert_eq!(ftp.cmd("REST 100").code, 350);
    assert_eq!(ftp.cmd("STOR r.bin").code, 425);
    assert_eq!(s.read("r.bin"), data, "a failed resume cut the file");
}

fn flooding_commands_during_a_transfer_closes_the_session(b: Backend) {
    let s = served(b).start();
    s.put("big", &vec![0u8; 64 << 20]);
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let _data = ftp.passive();
    assert_eq!(ftp.cmd("RETR big").code, 150);
    ftp.send_raw(&b"NOOP\r\n".repeat(100));
    let r = ftp.read_reply();
    assert_eq!(r.code, 421, "{}", r.text);
}

crate::both!(
    binary_round_trip_is_byte_exact,
    type_a_converts_line_endings_both_ways,
    rest_stor_resumes_and_appe_appends,
    stou_creates_a_unique_file,
    aborted_overwrite_keeps_the_old_file,
    reset_data_connection_keeps_the_old_file,
    broken_new_upload_stays_for_resume,
    new_upload_that_never_connected_leaves_no_file,
    simultaneous_stors_of_a_new_name_both_succeed,
    abor_with_telnet_ip_and_synch_during_download,
    stat_during_transfer_reports_progress,
    active_mode_port_and_eprt,
    active_source_port_is_used,
    ipv6_epsv_and_eprt_work_and_pasv_gets_522,
    names_are_bytes_end_to_end,
    failed_resume_does_not_cut_the_file,
    flooding_commands_during_a_transfer_closes_the_session,
);
