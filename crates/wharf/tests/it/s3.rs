//! Files in an S3 bucket (`[storage] backend = "s3"`, SeaweedFS): what FTP means over objects,
//! checked in the bucket itself with curl — keys under the home's prefix, directory markers,
//! multipart uploads that appear whole or not at all, copy-and-delete renames, MFMT as
//! metadata — and a configuration that cannot work, refused with the field named.

use std::io::Write;
use std::time::{Duration, Instant};

use wharf_testkit::seaweed::{Bucket, Seaweed};
use wharf_testkit::{Ftp, Server, pattern};

use crate::BIN;

/// `pw` for the users below.
const HASH: &str = "$6$saltsalt$pauPrmdmG4BTE9h2HPmywiw152IFch6BJCEsaY6D.PLTfpV8sqvXwWdyfsgVgozkYH9B80bAip/08R2BPH2xk/";

/// A node on `bucket` with homes under `homes`: alice's home is `/alice` (the key prefix
/// `homes/alice`), bob's is the root (`homes`), carol's `/carol` with a quota.
fn node(bucket: &Bucket) -> Server {
    let config = format!(
        "[[user]]\nname = \"alice\"\npassword_hash = \"{HASH}\"\nhome = \"/alice\"\npermissions = [\"all\"]\n\
         [[user]]\nname = \"bob\"\npassword_hash = \"{HASH}\"\npermissions = [\"read\"]\n\
         [[user]]\nname = \"carol\"\npassword_hash = \"{HASH}\"\nhome = \"/carol\"\npermissions = [\"all\"]\n\
         quota_bytes = 1000\nquota_files = 2\n{}",
        bucket.storage_toml("homes")
    );
    Server::builder(BIN).config(&config).start()
}

/// Until `cond` holds (an abort runs after the reply), at most 10 s.
fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn directories_renames_appends_and_times_are_objects_under_the_home() {
    let store = Seaweed::shared();
    let bucket = store.bucket();
    let server = node(&bucket);
    let mut ftp = Ftp::login_to(server.addr, "alice", "pw");
    let feat = ftp.cmd("FEAT").text;
    assert!(
        feat.contains(" MFMT") && feat.contains(" REST STREAM"),
        "{feat}"
    );
    let help = ftp.cmd("SITE HELP").text;
    assert!(!help.contains("CHMOD"), "{help}");

    // MKD writes a marker; the directory lists empty, and a file goes into it.
    assert_eq!(ftp.cmd("MKD docs").code, 257);
    assert_eq!(ftp.cmd("MKD docs").code, 550, "exists");
    assert_eq!(bucket.keys(""), vec!["homes/alice/docs/.wharf-dir"]);
    let (list, r) = ftp.download("NLST docs");
    assert_eq!((list.as_slice(), r.code), (&b""[..], 226));
    assert_eq!(ftp.upload("STOR docs/a.txt", b"hello").code, 226);
    assert_eq!(bucket.get("homes/alice/docs/a.txt").unwrap(), b"hello");
    let _data = ftp.passive();
    assert_eq!(ftp.cmd("STOR nodir/x.txt").code, 550, "no such directory");
    drop(_data);

    // The marker is never listed and never written by a client.
    let (mlsd, _) = ftp.download("MLSD docs");
    let mlsd = String::from_utf8_lossy(&mlsd).into_owned();
    assert!(
        mlsd.contains("type=file;size=5;") && mlsd.contains(" a.txt"),
        "{mlsd}"
    );
    assert!(!mlsd.contains(".wharf-dir"), "{mlsd}");
    let _data = ftp.passive();
    assert_eq!(ftp.cmd("STOR docs/.wharf-dir").code, 553);
    drop(_data);

    // RMD refuses a directory with a file; DELE of its last file keeps the directory.
    assert_eq!(ftp.cmd("RMD docs").code, 550);
    assert_eq!(ftp.cmd("DELE docs/a.txt").code, 250);
    assert_eq!(ftp.cmd("CWD docs").code, 250);
    assert_eq!(ftp.cmd("CWD /").code, 250);
    assert_eq!(ftp.cmd("RMD docs").code, 250);
    assert!(bucket.keys("homes/alice/docs").is_empty());

    // APPE and REST+STOR make a new object of the old one's first bytes and the new ones.
    assert_eq!(ftp.upload("STOR log.txt", b"one,").code, 226);
    assert_eq!(ftp.upload("APPE log.txt", b"two,").code, 226);
    assert_eq!(bucket.get("homes/alice/log.txt").unwrap(), b"one,two,");
    assert_eq!(ftp.upload_from("STOR log.txt", b"TWO", 4).code, 226);
    assert_eq!(bucket.get("homes/alice/log.txt").unwrap(), b"one,TWO");
    assert_eq!(ftp.upload("APPE new.txt", b"fresh").code, 226);
    assert_eq!(bucket.get("homes/alice/new.txt").unwrap(), b"fresh");
    let (tail, r) = ftp.download_from("RETR log.txt", 4);
    assert_eq!((tail.as_slice(), r.code), (&b"TWO"[..], 226));
    let _data = ftp.passive();
    assert_eq!(ftp.cmd("REST 99").code, 350);
    assert_eq!(ftp.cmd("RETR log.txt").code, 554, "REST past the end");
    drop(_data);

    // A directory of objects written by another tool is a directory.
    bucket.put("homes/alice/tree/x/1.bin", b"1");
    bucket.put("homes/alice/tree/2.bin", b"22");
    let (list, _) = ftp.download("MLSD tree");
    let list = String::from_utf8_lossy(&list).into_owned();
    assert!(
        list.contains("type=dir;") && list.contains(" x\r\n"),
        "{list}"
    );
    assert!(
        list.contains("size=2;") && list.contains(" 2.bin\r\n"),
        "{list}"
    );

    // RNFR/RNTO of a directory moves every object under it (copy, then delete).
    assert_eq!(ftp.cmd("RNFR tree").code, 350);
    assert_eq!(ftp.cmd("RNTO moved").code, 250);
    assert_eq!(
        bucket.keys("homes/alice/"),
        vec![
            "homes/alice/log.txt",
            "homes/alice/moved/2.bin",
            "homes/alice/moved/x/1.bin",
            "homes/alice/new.txt",
        ]
    );
    assert_eq!(ftp.cmd("RNFR moved").code, 350);
    assert_eq!(ftp.cmd("RNTO moved/inside").code, 553, "into itself");
    assert_eq!(ftp.cmd("RNFR new.txt").code, 350);
    assert_eq!(
        ftp.cmd("RNTO log.txt").code,
        250,
        "all permissions: replaces"
    );
    assert_eq!(bucket.get("homes/alice/log.txt").unwrap(), b"fresh");
    assert_eq!(bucket.get("homes/alice/new.txt"), None);

    // MFMT is metadata on the object; MDTM and MLST read it back.
    assert_eq!(
        ftp.cmd("MFMT 20200102030405 log.txt").text,
        "213 Modify=20200102030405; log.txt"
    );
    assert_eq!(ftp.cmd("MDTM log.txt").text, "213 20200102030405");
    let mlst = ftp.cmd("MLST log.txt").text;
    assert!(mlst.contains("modify=20200102030405;"), "{mlst}");
    let head = store.curl(&[
        "-I",
        &format!("{}/{}/homes/alice/log.txt", store.endpoint, bucket.name),
    ]);
    assert!(
        head.to_ascii_lowercase()
            .contains("x-amz-meta-wharf-mtime: 1577934245"),
        "{head}"
    );
    assert_eq!(bucket.get("homes/alice/log.txt").unwrap(), b"fresh");
    assert_eq!(ftp.cmd("SITE CHMOD 600 log.txt").code, 502);

    // bob's home is the prefix itself: he sees alice's directory, and may not write.
    let mut bob = Ftp::login_to(server.addr, "bob", "pw");
    // Not `docs` nor `tree`: SeaweedFS still lists those emptied folders; Wharf does not.
    let (names, _) = bob.download("NLST alice");
    assert_eq!(String::from_utf8_lossy(&names), "log.txt\r\nmoved\r\n");
    assert_eq!(bob.cmd("CWD alice/docs").code, 550);
    assert_eq!(bob.cmd("DELE alice/log.txt").code, 550);
    assert!(bucket.unfinished_uploads("").is_empty());
}

/// Quotas count the objects of the home (a listing), markers aside.
#[test]
fn quotas_count_the_objects_of_the_home() {
    let store = Seaweed::shared();
    let bucket = store.bucket();
    let server = node(&bucket);
    bucket.put("homes/alice/big.bin", &[0; 5000]); // someone else's: not carol's
    let mut ftp = Ftp::login_to(server.addr, "carol", "pw");
    assert_eq!(ftp.cmd("MKD d").code, 257);
    assert_eq!(ftp.upload("STOR d/a.bin", &[1; 600]).code, 226);
    let r = ftp.upload("STOR b.bin", &[2; 600]);
    assert_eq!(r.text, "552 Quota exceeded; the file is as it was before.");
    assert_eq!(bucket.get("homes/carol/b.bin"), None);
    assert_eq!(ftp.upload("STOR c.bin", &[3; 300]).code, 226);
    // Two files: a third is refused before a byte moves; a replacement is not.
    let _data = ftp.passive();
    let r = ftp.cmd("STOR e.bin");
    assert_eq!(r.code, 552, "{}", r.text);
    drop(_data);
    assert_eq!(ftp.upload("STOR c.bin", &[4; 350]).code, 226);
    // 950 of 1000 bytes used: a resume (REST+STOR) or an append past the quota leaves the
    // object as it was.
    let r = ftp.upload_from("STOR c.bin", &[5; 200], 350);
    assert_eq!(r.text, "552 Quota exceeded; the file is as it was before.");
    assert_eq!(bucket.get("homes/carol/c.bin").unwrap(), vec![4; 350]);
    let r = ftp.upload("APPE c.bin", &[6; 200]);
    assert_eq!(r.text, "552 Quota exceeded; the file is as it was before.");
    assert_eq!(bucket.get("homes/carol/c.bin").unwrap(), vec![4; 350]);
    // Within the quota, both still work.
    assert_eq!(ftp.upload("APPE c.bin", &[6; 20]).code, 226);
    assert_eq!(bucket.get("homes/carol/c.bin").unwrap().len(), 370);
    assert!(bucket.unfinished_uploads("").is_empty());
    assert_eq!(
        bucket.keys("homes/carol/"),
        vec![
            "homes/carol/c.bin",
            "homes/carol/d/.wharf-dir",
            "homes/carol/d/a.bin"
        ]
    );
}

/// Resumes across part boundaries (the old bytes copied in while the upload is created and
/// its parts go up), and empty uploads.
#[test]
fn large_resumes_and_empty_uploads_are_byte_exact() {
    let store = Seaweed::shared();
    let bucket = store.bucket();
    let server = node(&bucket);
    let mut ftp = Ftp::login_to(server.addr, "alice", "pw");
    let old = pattern(20 << 20, 3);
    assert_eq!(ftp.upload("STOR r.bin", &old).code, 226);
    assert!(bucket.get("homes/alice/r.bin").unwrap() == old);
    // REST 12 MiB + STOR of 10 MiB: 12 MiB of the old object, then the new bytes.
    let new = pattern(10 << 20, 4);
    assert_eq!(ftp.upload_from("STOR r.bin", &new, 12 << 20).code, 226);
    let want = [&old[..12 << 20], &new[..]].concat();
    assert!(
        bucket.get("homes/alice/r.bin").unwrap() == want,
        "REST+STOR"
    );
    // APPE of nothing, and REST at the end with nothing: the object as it was.
    assert_eq!(ftp.upload("APPE r.bin", b"").code, 226);
    assert_eq!(
        ftp.upload_from("STOR r.bin", b"", want.len() as u64).code,
        226
    );
    assert!(
        bucket.get("homes/alice/r.bin").unwrap() == want,
        "empty resume"
    );
    // An empty file is an empty object.
    assert_eq!(ftp.upload("STOR empty", b"").code, 226);
    assert_eq!(bucket.get("homes/alice/empty").unwrap(), b"");
    assert_eq!(ftp.cmd("SIZE empty").text, "213 0");
    assert!(bucket.unfinished_uploads("").is_empty());
}

#[test]
fn an_interrupted_upload_leaves_no_object_and_no_parts() {
    let store = Seaweed::shared();
    let bucket = store.bucket();
    let server = node(&bucket);
    bucket.put("homes/alice/keep.bin", b"the old contents");
    let big = pattern(20 << 20, 7); // more than two parts: a multipart upload has begun
    // Reset by the client, or the client gone, after the first parts went up.
    for (name, how) in [
        ("new.bin", "reset"),
        ("keep.bin", "reset"),
        ("lost.bin", "control lost"),
    ] {
        let mut ftp = Ftp::login_to(server.addr, "alice", "pw");
        let mut data = ftp.passive();
        assert_eq!(ftp.cmd(&format!("STOR {name}")).code, 150);
        data.write_all(&big[..18 << 20]).unwrap();
        // The multipart upload has begun: the store lists it.
        eventually("a multipart upload began", || {
            !bucket.unfinished_uploads("homes/alice/").is_empty()
        });
        std::thread::sleep(Duration::from_millis(300));
        if how == "reset" {
            socket2::SockRef::from(&data)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(data);
            let r = ftp.read_reply();
            assert_eq!(r.code, 426, "{name}: {}", r.text);
        } else {
            // The client vanishes: control first, the data connection reset after.
            socket2::SockRef::from(ftp.stream())
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(ftp);
            std::thread::sleep(Duration::from_millis(300));
            socket2::SockRef::from(&data)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(data);
        }
    }
    eventually("the broken uploads were aborted", || {
        bucket.unfinished_uploads("").is_empty()
    });
    assert_eq!(bucket.keys(""), vec!["homes/alice/keep.bin"]);
    assert_eq!(
        bucket.get("homes/alice/keep.bin").unwrap(),
        b"the old contents"
    );
    // A whole upload of the same size appears, byte-exact, in parts.
    let mut ftp = Ftp::login_to(server.addr, "alice", "pw");
    assert_eq!(ftp.upload("STOR new.bin", &big).code, 226);
    assert!(bucket.get("homes/alice/new.bin").unwrap() == big);
    assert!(bucket.unfinished_uploads("").is_empty());
    let (back, r) = ftp.download("RETR new.bin");
    assert_eq!(r.code, 226);
    assert!(back == big, "RETR bytes differ");
}

#[test]
fn s3_settings_are_checked_and_a_dead_store_is_a_clear_error() {
    let cases = [
        ("[storage]\nbackend = \"s3\"\n", "storage.bucket"),
        ("[storage]\nbackend = \"nfs\"\n", "storage.backend"),
        ("[storage]\nbucket = \"b\"\n", "storage.bucket"),
        (
            "[storage]\nbackend = \"s3\"\nbucket = \"b\"\nendpoint = \"127.0.0.1:9000\"\n",
            "storage.endpoint",
        ),
        (
            "[storage]\nbackend = \"s3\"\nbucket = \"b\"\nprefix = \"a/../b\"\n",
            "storage.prefix",
        ),
        (
            "[storage]\nbackend = \"s3\"\nbucket = \"b\"\naccess_key_id = \"k\"\n",
            "storage.secret_access_key",
        ),
    ];
    for (toml, field) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wharf.toml");
        std::fs::write(&path, toml).unwrap();
        let out = std::process::Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{toml}");
        assert!(err.contains(field), "{toml}: {err}");
    }
    // A store that does not answer: said at start; a command then gets 451 (storage
    // unavailable), not a hang.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let config = format!(
        "anonymous = true\n[limits]\nbackend_timeout = 10\n[storage]\nbackend = \"s3\"\nendpoint = \"http://127.0.0.1:{port}\"\nbucket = \"b\"\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\n"
    );
    let server = Server::builder(BIN).config(&config).start();
    assert!(server.log().contains("does not answer"), "{}", server.log());
    assert!(!server.log().contains("\"s\""), "the secret was logged");
    let mut ftp = Ftp::login_to(server.addr, "anonymous", "x");
    let started = Instant::now();
    let r = ftp.cmd("SIZE f.txt");
    assert_eq!(r.code, 451, "{}", r.text);
    assert!(started.elapsed() < Duration::from_secs(30));
}
