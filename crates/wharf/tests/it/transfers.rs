//! Transfers: bytes on disk, both types, resume, append, unique names, broken uploads, ABOR,
//! active mode, IPv6, names as bytes.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use wharf_testkit::{Ftp, IO_TIMEOUT, pattern, write_file};

use crate::{server, writable};

#[test]
fn binary_round_trip_is_byte_exact() {
    let s = writable();
    let data = pattern(3 << 20, 7);
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    assert_eq!(ftp.upload("STOR bin.dat", &data).code, 226);
    assert_eq!(std::fs::read(s.path("bin.dat")).unwrap(), data);
    let (back, r) = ftp.download("RETR bin.dat");
    assert_eq!(r.code, 226);
    assert_eq!(back, data);
}

#[test]
fn type_a_converts_line_endings_both_ways() {
    let s = writable();
    write_file(&s.path("unix.txt"), b"one\ntwo\n\nthree");
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    assert_eq!(ftp.cmd("TYPE A").code, 200);
    let (wire, _) = ftp.download("RETR unix.txt");
    assert_eq!(wire, b"one\r\ntwo\r\n\r\nthree");
    assert_eq!(ftp.upload("STOR up.txt", b"a\r\nb\r\nc\rd\r\n").code, 226);
    assert_eq!(std::fs::read(s.path("up.txt")).unwrap(), b"a\nb\nc\rd\n");
    assert_eq!(ftp.cmd("TYPE I").code, 200);
    let (raw, _) = ftp.download("RETR unix.txt");
    assert_eq!(raw, b"one\ntwo\n\nthree");
}

#[test]
fn rest_stor_resumes_and_appe_appends() {
    let s = writable();
    let full = pattern(100_000, 3);
    write_file(&s.path("part.bin"), &full[..40_000]);
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    assert_eq!(
        ftp.upload_from("STOR part.bin", &full[40_000..], 40_000)
            .code,
        226
    );
    assert_eq!(std::fs::read(s.path("part.bin")).unwrap(), full);
    assert_eq!(ftp.upload("APPE log.txt", b"one\n").code, 226);
    assert_eq!(ftp.upload("APPE log.txt", b"two\n").code, 226);
    assert_eq!(std::fs::read(s.path("log.txt")).unwrap(), b"one\ntwo\n");
}

#[test]
fn stou_creates_a_unique_file() {
    let s = writable();
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
    assert_eq!(std::fs::read(s.path(&name)).unwrap(), b"unique");
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

fn dir_names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn aborted_overwrite_keeps_the_old_file() {
    let s = writable();
    write_file(&s.path("keep.txt"), b"the old contents");
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let _data = start_upload(&mut ftp, "keep.txt", b"new but partial");
    assert_eq!(ftp.cmd("ABOR").code, 426);
    assert_eq!(ftp.read_reply().code, 226);
    assert_eq!(
        std::fs::read(s.path("keep.txt")).unwrap(),
        b"the old contents"
    );
    assert_eq!(
        dir_names(&s.root),
        vec!["keep.txt"],
        "temporary file left behind"
    );
}

#[test]
fn reset_data_connection_keeps_the_old_file() {
    let s = writable();
    write_file(&s.path("keep.txt"), b"the old contents");
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let data = start_upload(&mut ftp, "keep.txt", &pattern(64 * 1024, 1));
    socket2::SockRef::from(&data)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(data); // RST, not FIN: the upload broke
    let r = ftp.read_reply();
    assert_eq!(r.code, 426, "{}", r.text);
    assert_eq!(
        std::fs::read(s.path("keep.txt")).unwrap(),
        b"the old contents"
    );
    assert_eq!(dir_names(&s.root), vec!["keep.txt"]);
    // A complete overwrite replaces it.
    assert_eq!(ftp.upload("STOR keep.txt", b"replaced").code, 226);
    assert_eq!(std::fs::read(s.path("keep.txt")).unwrap(), b"replaced");
    assert_eq!(dir_names(&s.root), vec!["keep.txt"]);
}

#[test]
fn broken_new_upload_stays_for_resume() {
    let s = writable();
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let data = start_upload(&mut ftp, "new.bin", b"first half");
    socket2::SockRef::from(&data)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(data);
    assert_eq!(ftp.read_reply().code, 426);
    assert_eq!(std::fs::read(s.path("new.bin")).unwrap(), b"first half");
    assert_eq!(ftp.cmd("SIZE new.bin").text, "213 10");
    assert_eq!(
        ftp.upload_from("STOR new.bin", b", second half", 10).code,
        226
    );
    assert_eq!(
        std::fs::read(s.path("new.bin")).unwrap(),
        b"first half, second half"
    );
}

#[test]
fn abor_with_telnet_ip_and_synch_during_download() {
    let s = server().start();
    write_file(&s.path("big"), &vec![0u8; 64 << 20]);
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

#[test]
fn stat_during_transfer_reports_progress() {
    let s = server().start();
    write_file(&s.path("big"), &vec![0u8; 32 << 20]);
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

#[test]
fn active_mode_port_and_eprt() {
    let s = server().start();
    write_file(&s.path("f.txt"), b"active data");
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

#[test]
fn active_source_port_is_used() {
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    let src = probe.local_addr().unwrap().port();
    drop(probe);
    let s = server()
        .args(&["--active-source-port", &src.to_string()])
        .start();
    write_file(&s.path("f"), b"x");
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

#[test]
fn ipv6_epsv_and_eprt_work_and_pasv_gets_522() {
    if TcpListener::bind("[::1]:0").is_err() {
        panic!("IPv6 loopback is not available on this machine");
    }
    let s = server().listen("[::1]:0").start();
    write_file(&s.path("six.txt"), b"over IPv6");
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

#[test]
fn names_are_bytes_end_to_end() {
    let s = writable();
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let name: &[u8] = b"caf\xe9-\xff.bin"; // Latin-1, not UTF-8
    let mut data = ftp.passive();
    let mut cmd = b"STOR ".to_vec();
    cmd.extend_from_slice(name);
    assert_eq!(ftp.cmd_bytes(&cmd).code, 150);
    data.write_all(b"latin").unwrap();
    drop(data);
    assert_eq!(ftp.read_reply().code, 226);
    let on_disk = s.root.join(std::ffi::OsStr::from_bytes(name));
    assert_eq!(std::fs::read(on_disk).unwrap(), b"latin");
    let (list, _) = ftp.download("NLST");
    assert_eq!(list, [name, b"\r\n"].concat());
}

#[test]
fn failed_resume_does_not_cut_the_file() {
    let s = server()
        .arg("-w")
        .config("[limits]\naccept_timeout = 1\n")
        .start();
    let data = pattern(1000, 4);
    write_file(&s.path("r.bin"), &data);
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let _addr = ftp.pasv(); // never connected
    assert_eq!(ftp.cmd("REST 100").code, 350);
    assert_eq!(ftp.cmd("STOR r.bin").code, 425);
    assert_eq!(
        std::fs::read(s.path("r.bin")).unwrap(),
        data,
        "a failed resume cut the file"
    );
}

#[test]
fn flooding_commands_during_a_transfer_closes_the_session() {
    let s = server().start();
    write_file(&s.path("big"), &vec![0u8; 64 << 20]);
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let _data = ftp.passive();
    assert_eq!(ftp.cmd("RETR big").code, 150);
    ftp.send_raw(&b"NOOP\r\n".repeat(100));
    let r = ftp.read_reply();
    assert_eq!(r.code, 421, "{}", r.text);
}
