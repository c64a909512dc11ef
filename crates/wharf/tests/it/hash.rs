//! HASH and the `X` hash commands (XSHA1, XSHA256, XSHA512, XMD5, XCRC): digests from Python's
//! ftplib compared with hashlib and zlib on every backend, ranges, what is refused (unknown
//! algorithm, directory, missing file, another user's file, no read permission), and a hash of
//! a large file run like a transfer: ABOR answers at once, as do the session's end and the
//! user's turn.

use std::process::Command;
use std::time::{Duration, Instant};

use wharf_testkit::{Ftp, PW_HASH, Server, output_within, pattern, require_tool};

use crate::backend::{Backend, served};

/// Sends each command with ftplib's `sendcmd` and checks the reply against hashlib's and
/// zlib's digests of the same bytes (in the file named by the last argument). Prints `HASH OK`,
/// or the first mismatch.
const FTPLIB_CHECKS: &str = r#"
import ftplib, hashlib, sys, zlib
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
data = open(path, 'rb').read()
n = len(data)

def digest(name, b):
    if name == 'CRC32':
        return '%08x' % (zlib.crc32(b) & 0xffffffff)
    return hashlib.new({'SHA-1': 'sha1', 'SHA-256': 'sha256', 'SHA-512': 'sha512', 'MD5': 'md5'}[name], b).hexdigest()

def reply(cmd):
    try:
        return ftplib.FTP.sendcmd(f, cmd)
    except ftplib.all_errors as e:
        return str(e)

def expect(cmd, want):
    got = reply(cmd)
    if got != want:
        print('MISMATCH %r: got %r, want %r' % (cmd, got, want))
        sys.exit(1)

f = ftplib.FTP()
f.connect(host, port, timeout=60)
f.login('anonymous', 'x')
feat = f.sendcmd('FEAT')
assert ' HASH SHA-1;SHA-256*;SHA-512;MD5;CRC32\n' in feat, feat
for verb in ['XCRC', 'XMD5', 'XSHA1', 'XSHA256', 'XSHA512']:
    assert '\n ' + verb + '\n' in feat, feat
expect('OPTS HASH', '200 SHA-256')
expect('HASH data.bin', '213 SHA-256 0-%d %s data.bin' % (n, digest('SHA-256', data)))
for name in ['SHA-1', 'SHA-256', 'SHA-512', 'MD5', 'CRC32']:
    expect('OPTS HASH ' + name.lower(), '200 ' + name)
    expect('HASH /data.bin', '213 %s 0-%d %s /data.bin' % (name, n, digest(name, data)))
    expect('HASH sub/a name', '213 %s 0-3 %s sub/a name' % (name, digest(name, b'abc')))
    expect('HASH empty', '213 %s 0-0 %s empty' % (name, digest(name, b'')))
verbs = {'XSHA1': 'SHA-1', 'XSHA256': 'SHA-256', 'XSHA512': 'SHA-512', 'XMD5': 'MD5', 'XCRC': 'CRC32'}
for verb, name in verbs.items():
    expect(verb + ' data.bin', '250 ' + digest(name, data).upper())
    # A range across the chunks the server reads at a time, and one at the very end.
    expect('%s data.bin 1000 %d' % (verb, n - 7), '250 ' + digest(name, data[1000:n - 7]).upper())
    expect('%s data.bin %d %d' % (verb, n - 1, n), '250 ' + digest(name, data[n - 1:]).upper())
    expect(verb + ' sub/a name', '250 ' + digest(name, b'abc').upper())
expect('XCRC data.bin 0 %d' % (n + 1), '501 The range goes beyond the end of the file.')
expect('XCRC data.bin %d %d' % (n + 5, n + 9), '501 The range goes beyond the end of the file.')
expect('XMD5 data.bin 9 9', '501 Syntax error in parameters or arguments.')
expect('OPTS HASH SHA-384', '501 Unknown hash algorithm; FEAT lists those known.')
expect('OPTS HASH', '200 CRC32')
expect('XSHA384 data.bin', '500 Unknown command.')
expect('HASH sub', '550 Not a plain file.')
expect('XSHA256 sub', '550 Not a plain file.')
expect('HASH nope', '550 No such file or directory.')
expect('XMD5 nope', '550 No such file or directory.')
expect('HASH ../../etc/passwd', '550 Invalid path: path climbs above the root.')
expect('HASH', '501 Syntax error: argument required.')
# REIN forgets the algorithm.
expect('REIN', '220 Ready for new user.')
f.login('anonymous', 'x')
expect('OPTS HASH', '200 SHA-256')
f.quit()
print('HASH OK')
"#;

fn hashes_match_hashlib(b: Backend) {
    let s = served(b).start();
    // Several of the server's 256 KiB chunks, and not a multiple of any.
    let data = pattern(3 * 256 * 1024 + 12_345, 9);
    s.put("data.bin", &data);
    s.put("sub/a name", b"abc");
    s.put("empty", b"");
    let local = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(local.path(), &data).unwrap();
    let out = output_within(
        Command::new(require_tool("python3"))
            .arg("-c")
            .arg(FTPLIB_CHECKS)
            .arg(s.addr.ip().to_string())
            .arg(s.addr.port().to_string())
            .arg(local.path()),
        Duration::from_secs(120),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("HASH OK"), "{text}");
}

crate::both!(hashes_match_hashlib);

/// Alice's home beside Bob's, and Wanda, who may write but not read.
fn two_homes() -> (Server, tempfile::TempDir) {
    let homes = tempfile::tempdir().unwrap();
    for name in ["alice", "bob", "wanda"] {
        std::fs::create_dir(homes.path().join(name)).unwrap();
    }
    std::fs::write(homes.path().join("bob/secret.txt"), b"bob's").unwrap();
    std::fs::write(homes.path().join("alice/own.txt"), b"alice's").unwrap();
    std::fs::write(homes.path().join("wanda/own.txt"), b"wanda's").unwrap();
    std::os::unix::fs::symlink("../bob/secret.txt", homes.path().join("alice/link.txt")).unwrap();
    let user = |name: &str, perms: &str| {
        format!(
            "[[user]]\nname = \"{name}\"\npassword_hash = \"{PW_HASH}\"\nhome = \"{}\"\npermissions = [{perms}]\n",
            homes.path().join(name).display()
        )
    };
    let config = format!(
        "{}{}{}",
        user("alice", "\"all\""),
        user("bob", "\"all\""),
        user("wanda", "\"write\"")
    );
    (crate::server().config(&config).start(), homes)
}

/// Another user's file is out of reach by every path, as for RETR; no read permission, no hash.
#[test]
fn another_users_file_and_no_read_permission() {
    let (s, _homes) = two_homes();
    let mut alice = Ftp::login_to(s.addr, "alice", "pw");
    assert_eq!(
        alice.cmd("XCRC own.txt").text,
        format!("250 {:08X}", crc32(b"alice's"))
    );
    for cmd in [
        "HASH ../bob/secret.txt",
        "HASH /bob/secret.txt",
        "XSHA256 ../bob/secret.txt",
        "HASH link.txt",
        "XMD5 link.txt",
    ] {
        let r = alice.cmd(cmd);
        assert_eq!(r.code, 550, "{cmd}: {}", r.text);
    }
    assert_eq!(alice.cmd("RETR link.txt").code, 550, "as RETR");
    let mut wanda = Ftp::login_to(s.addr, "wanda", "pw");
    for cmd in ["HASH own.txt", "XSHA1 own.txt"] {
        assert_eq!(wanda.cmd(cmd).text, "550 Permission denied.", "{cmd}");
    }
}

/// CRC-32 as zlib computes it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A server whose `alice` reads a 4 GiB sparse file: long enough to hash (seconds) that a
/// prompt answer can only come from a stop.
fn big_file_server() -> Server {
    let s = crate::server()
        .config(&format!(
            "[[user]]\nname = \"alice\"\npassword_hash = \"{PW_HASH}\"\n"
        ))
        .start();
    let f = std::fs::File::create(s.path("big.bin")).unwrap();
    f.set_len(4 << 30).unwrap();
    std::fs::write(s.path("small.txt"), b"hello world\n").unwrap();
    s
}

/// Sends `line` and waits until the server has started hashing (STAT says so).
fn start_hash(ftp: &mut Ftp, line: &str) {
    ftp.send(line);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = ftp.cmd("STAT");
        assert_eq!(r.code, 213, "STAT during the hash: {}", r.text);
        if r.text.contains("bytes hashed") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the hash never started: {}",
            r.text
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// ABOR during a hash of a large file: 426 for the hash and 226 for ABOR at once, and the
/// session goes on.
#[test]
fn abor_stops_a_hash_at_once() {
    let s = big_file_server();
    let mut ftp = Ftp::login_to(s.addr, "alice", "pw");
    assert_eq!(ftp.cmd("OPTS HASH SHA-512").code, 200);
    start_hash(&mut ftp, "HASH big.bin");
    // Commands other than STAT and ABOR wait for the hash, as during a transfer.
    ftp.send("NOOP");
    let asked = Instant::now();
    ftp.send("ABOR");
    assert_eq!(ftp.read_reply().text, "426 Transfer aborted.");
    assert_eq!(ftp.read_reply().text, "226 ABOR successful.");
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "ABOR answered after {took:?}"
    );
    assert_eq!(ftp.read_reply().text, "200 NOOP ok.", "the queued NOOP");
    assert_eq!(ftp.cmd("NOOP").code, 200);
    assert_eq!(
        ftp.cmd("XCRC small.txt").text,
        format!("250 {:08X}", crc32(b"hello world\n")),
        "the user's turn was given back"
    );
    // The log line of the hash, as a transfer's.
    assert!(s.wait_log("result=\"aborted\"", 1), "{}", s.log());
    let log = s.log();
    let line = log
        .lines()
        .find(|l| l.contains("result=\"aborted\""))
        .unwrap();
    for part in [
        " hash ",
        "verb=\"HASH\"",
        "path=\"/big.bin\"",
        "algorithm=\"SHA-512\"",
        "ms=",
    ] {
        assert!(line.contains(part), "{part} in {line}");
    }
}

/// A user hashes one file at a time: a second session's hash waits for the first, and goes on
/// as soon as the first is aborted. Closing the control connection stops a hash too.
#[test]
fn one_hash_at_a_time_per_user_and_the_session_end_stops_it() {
    let s = big_file_server();
    let mut first = Ftp::login_to(s.addr, "alice", "pw");
    let mut second = Ftp::login_to(s.addr, "alice", "pw");
    start_hash(&mut first, "XSHA512 big.bin");
    second.send("XCRC small.txt");
    assert!(
        nothing_within(&second, Duration::from_millis(700)),
        "the second hash waits for the user's turn"
    );
    let r = second.cmd("STAT");
    assert!(
        r.text.contains("XCRC in progress, 0 bytes hashed"),
        "{}",
        r.text
    );
    first.send("ABOR");
    assert_eq!(first.read_reply().code, 426);
    assert_eq!(first.read_reply().code, 226);
    let asked = Instant::now();
    assert_eq!(
        second.read_reply().text,
        format!("250 {:08X}", crc32(b"hello world\n"))
    );
    assert!(asked.elapsed() < Duration::from_secs(2));
    // The session's end stops its hash: the next hash of the user starts at once.
    start_hash(&mut first, "HASH big.bin");
    drop(first);
    assert!(s.wait_log("control connection lost", 1), "{}", s.log());
    let asked = Instant::now();
    assert_eq!(second.cmd("XCRC small.txt").code, 250);
    assert!(asked.elapsed() < Duration::from_secs(2));
}

/// Whether no byte arrives on the control connection for `wait`.
fn nothing_within(ftp: &Ftp, wait: Duration) -> bool {
    let stream = ftp.stream();
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut probe = [0u8; 1];
    let quiet = matches!(stream.peek(&mut probe), Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut));
    stream
        .set_read_timeout(Some(wharf_testkit::IO_TIMEOUT))
        .unwrap();
    quiet
}

/// On S3 a range is one ranged GET, and ABOR stops a hash of a large object at once.
#[test]
fn s3_range_and_abor() {
    let s = served(Backend::S3).start();
    let data = pattern(48 << 20, 4);
    s.put("big.bin", &data);
    let mut ftp = Ftp::login_to(s.addr, "anonymous", "x");
    let r = ftp.cmd("XCRC big.bin 5000000 5000100");
    assert_eq!(
        r.text,
        format!("250 {:08X}", crc32(&data[5_000_000..5_000_100]))
    );
    assert_eq!(ftp.cmd("OPTS HASH SHA-512").code, 200);
    start_hash(&mut ftp, "HASH big.bin");
    let asked = Instant::now();
    ftp.send("ABOR");
    let first = ftp.read_reply();
    // A fast store may finish first: then the hash's reply, and ABOR finds nothing to stop.
    if first.code == 213 {
        assert_eq!(ftp.read_reply().code, 225);
    } else {
        assert_eq!(first.text, "426 Transfer aborted.");
        assert_eq!(ftp.read_reply().text, "226 ABOR successful.");
    }
    assert!(asked.elapsed() < Duration::from_secs(2));
    assert_eq!(ftp.cmd("NOOP").code, 200);
}

/// The reply forms are ProFTPD's (1.3.8, mod_digest): the same commands on the same file get
/// the same final reply line from both (ProFTPD sends a `Computing …` line first).
#[test]
fn replies_match_proftpd() {
    use wharf_testkit::peers;
    let proftpd = peers::proftpd_with(&["LoadModule mod_digest.c", "DigestEngine on"]);
    let wharf = crate::server().start();
    let data = pattern(100_000, 5);
    proftpd.seed("f.bin", &data);
    std::fs::write(wharf.path("f.bin"), &data).unwrap();
    let mut theirs = Ftp::login_to(proftpd.addr, peers::USER, peers::PASSWORD);
    let mut ours = Ftp::login_to(wharf.addr, "anonymous", "x");
    let last = |ftp: &mut Ftp, cmd: &str| {
        let r = ftp.cmd(cmd);
        r.text.lines().last().unwrap_or_default().to_string()
    };
    let mut cmds = vec!["OPTS HASH SHA-256".to_string(), "HASH f.bin".to_string()];
    for verb in ["XSHA1", "XSHA256", "XSHA512", "XMD5", "XCRC"] {
        cmds.push(format!("{verb} f.bin"));
        cmds.push(format!("{verb} f.bin 3 99999"));
        cmds.push(format!("{verb} f.bin 99999 100000"));
    }
    for algorithm in ["SHA-1", "SHA-512", "MD5", "CRC32"] {
        cmds.push(format!("OPTS HASH {algorithm}"));
        cmds.push("HASH f.bin".to_string());
    }
    for cmd in &cmds {
        assert_eq!(last(&mut ours, cmd), last(&mut theirs, cmd), "{cmd}");
    }
    // Refused alike (the texts differ).
    for cmd in [
        "XMD5 f.bin 5 2",
        "XMD5 f.bin 0 100001",
        "XCRC nope",
        "OPTS HASH FOO",
    ] {
        let (a, b) = (ours.cmd(cmd).code, theirs.cmd(cmd).code);
        assert_eq!(a, b, "{cmd}");
    }
}
