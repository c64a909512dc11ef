//! Verified transfers (`get`/`put`/`mirror --verify`, the shell's `verify`): against `wharf
//! serve` and ProFTPD's mod_digest (both offer HASH), a file whose bytes differ from the server's (detected, exit 1, the
//! download kept as `.wharf-part`), and vsftpd, which offers no hash (a warning, or a failure
//! with `--verify=required`).
//!
//! A file that changes on the server between the transfer and the hash cannot be timed from
//! outside. The deterministic case of the same failure is a resumed transfer whose first part
//! came from an older version of the file: `get -c` continues a `.wharf-part` whose bytes the
//! server no longer has (and `put -c` a server file whose first bytes the local one no longer
//! has). Every byte count matches, so only the hash can tell.

use wharf_testkit::peers::{self, Peer};

use crate::BIN;
use crate::client::wharf;

/// A file of a few hundred KiB, so that a transfer takes several reads and writes.
fn content(seed: u8) -> Vec<u8> {
    (0..300_000u32)
        .map(|i| (i.wrapping_mul(31) as u8) ^ seed)
        .collect()
}

/// `get --verify` and `put --verify` both verify against `peer` with `algorithm`.
fn get_and_put_verified(peer: &Peer, algorithm: &str) {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let data = content(1);
    peer.seed("down.bin", &data);
    let run = wharf(dir, &["get", "--verify", &peer.url("down.bin")]);
    run.ok("get --verify");
    assert!(
        run.log_has(&format!("down.bin: verified ({algorithm})")),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read(dir.join("down.bin")).unwrap(), data);

    let up = content(2);
    std::fs::write(dir.join("up.bin"), &up).unwrap();
    let run = wharf(dir, &["put", "--verify", "up.bin", &peer.url("up.bin")]);
    run.ok("put --verify");
    assert!(
        run.log_has(&format!("up.bin: verified ({algorithm})")),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read(peer.path("up.bin")).unwrap(), up);

    // Resumed: the prefix is read back from disk, the rest hashed as it moves.
    std::fs::write(dir.join("down2.bin.wharf-part"), &data[..100_000]).unwrap();
    peer.seed("down2.bin", &data);
    let run = wharf(dir, &["get", "-c", "--verify", &peer.url("down2.bin")]);
    run.ok("get -c --verify");
    assert!(
        run.log_has(&format!("down2.bin: verified ({algorithm})")),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read(dir.join("down2.bin")).unwrap(), data);

    peer.seed("up2.bin", &up[..123_456]);
    std::fs::write(dir.join("up2.bin"), &up).unwrap();
    let run = wharf(
        dir,
        &["put", "-c", "--verify", "up2.bin", &peer.url("up2.bin")],
    );
    run.ok("put -c --verify");
    assert!(
        run.log_has(&format!("up2.bin: verified ({algorithm})")),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read(peer.path("up2.bin")).unwrap(), up);
}

/// A resumed download and upload whose first part is an older version of the file: the sizes
/// agree, the hashes do not.
fn a_difference_is_detected(peer: &Peer) {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let new = content(3);
    let old = content(4);
    peer.seed("changed.bin", &new);
    std::fs::write(dir.join("changed.bin.wharf-part"), &old[..150_000]).unwrap();
    let run = wharf(dir, &["get", "-c", "--verify", &peer.url("changed.bin")]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("changed.bin: verification FAILED"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("the download is kept as changed.bin.wharf-part"),
        "{}",
        run.stderr
    );
    assert!(!dir.join("changed.bin").exists(), "not under its real name");
    assert_eq!(
        std::fs::metadata(dir.join("changed.bin.wharf-part"))
            .unwrap()
            .len(),
        new.len() as u64
    );
    // Without --verify the same resume "succeeds": what the check is for.
    std::fs::remove_file(dir.join("changed.bin.wharf-part")).unwrap();
    std::fs::write(dir.join("changed.bin.wharf-part"), &old[..150_000]).unwrap();
    wharf(dir, &["get", "-c", &peer.url("changed.bin")]).ok("get -c");
    assert_ne!(std::fs::read(dir.join("changed.bin")).unwrap(), new);

    // An upload resumed onto a server file whose first bytes are another version's.
    peer.seed("changed-up.bin", &old[..100_000]);
    std::fs::write(dir.join("changed-up.bin"), &new).unwrap();
    let run = wharf(
        dir,
        &[
            "put",
            "-c",
            "--verify",
            "changed-up.bin",
            &peer.url("changed-up.bin"),
        ],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("changed-up.bin: verification FAILED"),
        "{}",
        run.stderr
    );
}

#[test]
fn verified_against_wharf() {
    let peer = peers::wharf(BIN, "127.0.0.1:0", None);
    get_and_put_verified(&peer, "SHA-512");
    a_difference_is_detected(&peer);
}

/// ProFTPD's mod_digest, with its cache off: it would otherwise answer a file's hash from
/// memory after the file changed.
fn proftpd_digest() -> Peer {
    peers::proftpd_with(&[
        "ModulePath /usr/lib/proftpd",
        "LoadModule mod_digest.c",
        "DigestEngine on",
        "DigestCache off",
    ])
}

#[test]
fn verified_against_proftpd_mod_digest() {
    let peer = proftpd_digest();
    get_and_put_verified(&peer, "SHA-512");
    a_difference_is_detected(&peer);
    // A file changed on the server after it was downloaded: `get -c` finds the local copy
    // complete by size, and the check (reading it back) sees the change.
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    peer.seed("later.bin", &content(5));
    wharf(dir, &["get", "--verify", &peer.url("later.bin")]).ok("get --verify");
    peer.seed("later.bin", &content(6));
    let run = wharf(dir, &["get", "-c", "--verify", &peer.url("later.bin")]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("later.bin: verification FAILED"),
        "{}",
        run.stderr
    );
    // The draft's HASH, after OPTS HASH chose SHA-512 over ProFTPD's default.
    let run = wharf(
        dir,
        &["get", "-v", "--verify", &peer.url("later.bin"), "again.bin"],
    );
    run.ok("get -v --verify");
    assert!(run.log_has("Command: OPTS HASH SHA-512"), "{}", run.stderr);
    assert!(run.log_has("Command: HASH later.bin"), "{}", run.stderr);
    assert!(
        run.log_starts("Response: 213 SHA-512 0-300000 "),
        "{}",
        run.stderr
    );
}

#[test]
fn no_hash_on_vsftpd_is_a_warning_unless_required() {
    let peer = peers::vsftpd(&[]);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let data = content(7);
    peer.seed("plain.bin", &data);
    let run = wharf(dir, &["get", "--verify", &peer.url("plain.bin")]);
    run.ok("get --verify without hashes");
    assert!(
        run.log_starts(
            "wharf: warning: plain.bin: not verified: the server offers no hash command"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read(dir.join("plain.bin")).unwrap(), data);

    std::fs::remove_file(dir.join("plain.bin")).unwrap();
    let run = wharf(dir, &["get", "--verify=required", &peer.url("plain.bin")]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("plain.bin: cannot verify: the server offers no hash command"),
        "{}",
        run.stderr
    );
    assert!(!dir.join("plain.bin").exists());

    std::fs::write(dir.join("up.bin"), &data).unwrap();
    let run = wharf(dir, &["put", "--verify", "up.bin", &peer.url("up.bin")]);
    run.ok("put --verify without hashes");
    assert!(
        run.log_starts("wharf: warning: up.bin: not verified"),
        "{}",
        run.stderr
    );
    let run = wharf(
        dir,
        &["put", "--verify=required", "up.bin", &peer.url("up2.bin")],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);

    // `--verify` takes no value but `=required`; a URL after it is not its value.
    let run = wharf(dir, &["get", "--verify=maybe", &peer.url("plain.bin")]);
    assert_eq!(run.code, 2, "{}", run.stderr);
}

#[test]
fn the_shells_verify_setting() {
    let peer = peers::wharf(BIN, "127.0.0.1:0", None);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let data = content(8);
    peer.seed("s.bin", &data);
    peer.seed("bad.bin", &data);
    std::fs::write(dir.join("bad.bin.wharf-part"), &content(9)[..1000]).unwrap();
    std::fs::write(dir.join("u.bin"), &data).unwrap();
    let script = "get s.bin\nverify\nverify on\nget s.bin s2.bin\nput u.bin\nget -c bad.bin\n\
                  verify off\nget s.bin s3.bin\nverify sometimes\n";
    let run = crate::client::wharf_in(dir, &["shell", &peer.url("")], Some(script.as_bytes()));
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(out.contains("verify off\nverify on\n"), "{out}");
    assert!(
        out.contains("verify off\n") && out.matches("verify off").count() == 2,
        "{out}"
    );
    // Only the files got with the setting on are verified.
    assert!(!run.log_has("s.bin: verified (SHA-512)"), "{}", run.stderr);
    assert!(run.log_has("s2.bin: verified (SHA-512)"), "{}", run.stderr);
    assert!(run.log_has("u.bin: verified (SHA-512)"), "{}", run.stderr);
    assert!(!run.log_starts("s3.bin: verified"), "{}", run.stderr);
    assert!(
        run.stderr.contains("bad.bin: verification FAILED"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("verify [on|off|required]"),
        "{}",
        run.stderr
    );
    assert!(dir.join("bad.bin.wharf-part").exists() && !dir.join("bad.bin").exists());
    assert_eq!(std::fs::read(dir.join("s3.bin")).unwrap(), data);
}

/// Trees (`get -r`, `put -r`, a pattern) and `mirror` verify each file through the pool of
/// sessions, and say it in one line.
#[test]
fn trees_and_mirror_verify_each_file() {
    let peer = peers::wharf(BIN, "127.0.0.1:0", None);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    for (i, name) in ["t/a.bin", "t/b.bin", "t/sub/c.bin"].iter().enumerate() {
        peer.seed(name, &content(10 + i as u8));
    }
    let run = wharf(dir, &["get", "-r", "--verify", &peer.url("t"), "t"]);
    run.ok("get -r --verify");
    assert!(run.log_has("3 files verified (SHA-512)"), "{}", run.stderr);

    let run = wharf(dir, &["put", "-r", "--verify", "t", &peer.url("t2")]);
    run.ok("put -r --verify");
    assert!(run.log_has("3 files verified (SHA-512)"), "{}", run.stderr);

    let run = wharf(dir, &["get", "--verify", &peer.url("t/*.bin"), "pat"]);
    run.ok("get PATTERN --verify");
    assert!(run.log_has("2 files verified (SHA-512)"), "{}", run.stderr);

    let run = wharf(dir, &["mirror", "--verify", &peer.url("t"), "m"]);
    run.ok("mirror --verify");
    assert!(
        run.log_has("mirror: 3 files verified (SHA-512)"),
        "{}",
        run.stderr
    );

    // A change on the server that kept the size and the time: only --compare hash sees it.
    let server_file = peer.path("t/a.bin");
    let time = std::fs::metadata(&server_file).unwrap().modified().unwrap();
    std::fs::write(&server_file, content(42)).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&server_file)
        .unwrap()
        .set_modified(time)
        .unwrap();
    let run = wharf(dir, &["mirror", &peer.url("t"), "m"]);
    run.ok("mirror by size and time");
    assert!(
        run.log_starts("mirror: transferred 0 files"),
        "{}",
        run.stderr
    );
    let run = wharf(dir, &["mirror", "--compare", "hash", &peer.url("t"), "m"]);
    run.ok("mirror --compare hash");
    assert!(
        run.log_starts("mirror: transferred 1 files") && run.stderr.contains("2 up to date"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read(dir.join("m/a.bin")).unwrap(), content(42));
    // Uploading, the same way round.
    std::fs::write(dir.join("m/b.bin"), content(43)).unwrap();
    let run = wharf(dir, &["mirror", "--compare", "hash", "m", &peer.url("t")]);
    run.ok("mirror --compare hash, up");
    assert!(
        run.log_starts("mirror: transferred 1 files"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read(peer.path("t/b.bin")).unwrap(), content(43));

    // A tree resumed onto a partial file that another version of the file left.
    std::fs::create_dir_all(dir.join("r/sub")).unwrap();
    std::fs::write(dir.join("r/b.bin.wharf-part"), &content(99)[..5000]).unwrap();
    let run = wharf(dir, &["get", "-r", "-c", "--verify", &peer.url("t"), "r"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("verification FAILED"), "{}", run.stderr);
    assert!(run.log_has("2 files verified (SHA-512)"), "{}", run.stderr);
    assert!(dir.join("r/b.bin.wharf-part").exists() && !dir.join("r/b.bin").exists());

    let vsftpd = peers::vsftpd(&[]);
    vsftpd.seed("v/a.bin", &content(20));
    vsftpd.seed("v/b.bin", &content(21));
    let run = wharf(dir, &["get", "-r", "--verify", &vsftpd.url("v"), "v"]);
    run.ok("get -r --verify without hashes");
    assert!(
        run.log_starts("wharf: warning: 2 files not verified: the server offers no hash command"),
        "{}",
        run.stderr
    );
    let run = wharf(
        dir,
        &["get", "-r", "--verify=required", &vsftpd.url("v"), "v2"],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("cannot verify"), "{}", run.stderr);
    let run = wharf(
        dir,
        &["mirror", "--compare", "hash", &vsftpd.url("v"), "v3"],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("--compare hash: the server offers no hash command"),
        "{}",
        run.stderr
    );
}

/// A server that offers only the weak `X` commands (XMD5, XCRC) and serves `abc.txt` ("abc"),
/// answering XMD5 with `md5` (upper-case hex, as ProFTPD writes it).
mod weak {
    use std::io::{BufRead, BufReader, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::time::Duration;

    pub fn start(md5: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Sessions are served until the test process ends; each is bounded by its timeout.
        std::thread::spawn(move || {
            for _ in 0..4 {
                let Ok((s, _)) = listener.accept() else {
                    return;
                };
                std::thread::spawn(move || session(s, md5));
            }
        });
        addr
    }

    fn session(control: TcpStream, md5: &str) {
        control
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut out = control.try_clone().unwrap();
        let mut reader = BufReader::new(control);
        let mut data: Option<TcpListener> = None;
        let _ = out.write_all(b"220 weak ready\r\n");
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
            let reply = match (verb, arg) {
                ("USER", _) => "331 password".to_string(),
                ("PASS", _) => "230 in".to_string(),
                ("TYPE", _) => "200 ok".to_string(),
                ("FEAT", _) => {
                    "211-Features:\r\n EPSV\r\n SIZE\r\n XCRC\r\n XMD5\r\n211 End".into()
                }
                ("SIZE", "abc.txt") => "213 3".to_string(),
                ("XMD5", "abc.txt") => format!("250 {md5}"),
                ("EPSV", _) => {
                    let l = TcpListener::bind("127.0.0.1:0").unwrap();
                    let port = l.local_addr().unwrap().port();
                    data = Some(l);
                    format!("229 Entering Extended Passive Mode (|||{port}|)")
                }
                ("RETR", "abc.txt") => {
                    let Some(l) = data.take() else {
                        let _ = out.write_all(b"425 no data connection\r\n");
                        continue;
                    };
                    let _ = out.write_all(b"150 here it comes\r\n");
                    let Ok((mut d, _)) = l.accept() else { return };
                    let _ = d.write_all(b"abc");
                    drop(d);
                    "226 done".to_string()
                }
                ("QUIT", _) => {
                    let _ = out.write_all(b"221 bye\r\n");
                    return;
                }
                _ => "502 not here".to_string(),
            };
            let _ = out.write_all(format!("{reply}\r\n").as_bytes());
        }
    }
}

#[test]
fn only_md5_offered_is_used_with_a_warning() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    // MD5 of "abc" (RFC 1321).
    let addr = weak::start("900150983CD24FB0D6963F7D28E17F72");
    let url = format!("ftp://{addr}/abc.txt");
    let run = wharf(dir, &["get", "--verify", &url]);
    run.ok("get --verify, MD5 only");
    assert!(
        run.log_starts("wharf: warning: abc.txt: the server offers only MD5 for verifying"),
        "{}",
        run.stderr
    );
    assert!(run.log_has("abc.txt: verified (MD5)"), "{}", run.stderr);
    assert_eq!(std::fs::read(dir.join("abc.txt")).unwrap(), b"abc");

    let addr = weak::start("00000000000000000000000000000000");
    let url = format!("ftp://{addr}/abc.txt");
    let out = tempfile::tempdir().unwrap();
    let run = wharf(out.path(), &["get", "--verify", &url]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "abc.txt: verification FAILED: MD5 here is 900150983cd24fb0d6963f7d28e17f72, \
             the server's is 00000000000000000000000000000000"
        ),
        "{}",
        run.stderr
    );
    assert!(out.path().join("abc.txt.wharf-part").exists());
}

/// The other single-file paths: several sessions (`--segments`: the file read back whole),
/// stdout (hashed as written, across tries) and stdin.
#[test]
fn segments_stdout_and_stdin_verified() {
    let peer = peers::wharf(BIN, "127.0.0.1:0", None);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let data = content(50);
    peer.seed("seg.bin", &data);
    let run = wharf(
        dir,
        &["get", "--segments", "3", "--verify", &peer.url("seg.bin")],
    );
    run.ok("get --segments --verify");
    assert!(run.log_has("seg.bin: verified (SHA-512)"), "{}", run.stderr);
    assert!(
        run.log_has("wharf: seg.bin: reading the file back to verify it (its ranges came over several sessions)"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read(dir.join("seg.bin")).unwrap(), data);

    let run = wharf(dir, &["get", "--verify", &peer.url("seg.bin"), "-"]);
    run.ok("get --verify to stdout");
    assert_eq!(run.stdout, data);
    assert!(run.log_has("seg.bin: verified (SHA-512)"), "{}", run.stderr);

    let run = crate::client::wharf_in(
        dir,
        &["put", "--verify", "-", &peer.url("in.bin")],
        Some(&data),
    );
    run.ok("put --verify from stdin");
    assert!(run.log_has("in.bin: verified (SHA-512)"), "{}", run.stderr);
    assert_eq!(std::fs::read(peer.path("in.bin")).unwrap(), data);
}
