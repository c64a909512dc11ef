//! End to end against real clients: curl in all four data modes, Python's ftplib, lftp mirror.

use std::path::Path;
use std::process::Command;

use wharf_testkit::{assert_same_tree, make_tree, pattern, require_tool, write_file};

use crate::server;

fn run(cmd: &mut Command) -> String {
    let out = wharf_testkit::output_within(cmd, std::time::Duration::from_secs(300));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn curl_in_all_four_modes() {
    let curl = require_tool("curl");
    let modes: [(&[&str], &str, &str); 4] = [
        (&["--ftp-pasv"], "verb=\"EPSV\"", "verb=\"EPSV\""),
        (
            &["--ftp-pasv", "--disable-epsv"],
            "verb=\"PASV\"",
            "verb=\"PASV\"",
        ),
        (&["-P", "-"], "verb=\"EPRT\"", "verb=\"EPRT\""),
        (
            &["-P", "-", "--disable-eprt"],
            "verb=\"PORT\"",
            "verb=\"PORT\"",
        ),
    ];
    let data = pattern(2 << 20, 9);
    for (flags, expect_log, _) in modes {
        let s = server().args(&["-w", "--log-level", "debug"]).start();
        write_file(&s.path("down.bin"), &data);
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out.bin");
        run(Command::new(&curl)
            .args(["-sS", "--max-time", "60"])
            .args(flags)
            .arg("-o")
            .arg(&out)
            .arg(format!("{}/down.bin", s.url())));
        assert_eq!(std::fs::read(&out).unwrap(), data, "{flags:?} download");
        let up = tmp.path().join("up.bin");
        std::fs::write(&up, &data[..100_000]).unwrap();
        run(Command::new(&curl)
            .args(["-sS", "--max-time", "60"])
            .args(flags)
            .arg("-T")
            .arg(&up)
            .arg(format!("{}/sub/up.bin", s.url()))
            .arg("--ftp-create-dirs"));
        assert_eq!(
            std::fs::read(s.path("sub/up.bin")).unwrap(),
            &data[..100_000],
            "{flags:?} upload"
        );
        let listing = run(Command::new(&curl)
            .args(["-sS", "--max-time", "60"])
            .args(flags)
            .arg(format!("{}/", s.url())));
        assert!(
            listing.contains(" down.bin") && listing.contains(" sub"),
            "{flags:?}: {listing}"
        );
        let names = run(Command::new(&curl)
            .args(["-sS", "-l", "--max-time", "60"])
            .args(flags)
            .arg(format!("{}/", s.url())));
        // curl lists in TYPE A and gives local line endings.
        assert_eq!(names, "down.bin\nsub\n", "{flags:?}");
        // Resume: curl -C - asks SIZE and REST.
        std::fs::write(&out, &data[..12345]).unwrap();
        run(Command::new(&curl)
            .args(["-sS", "--max-time", "60", "-C", "-"])
            .args(flags)
            .arg("-o")
            .arg(&out)
            .arg(format!("{}/down.bin", s.url())));
        assert_eq!(
            std::fs::read(&out).unwrap(),
            data,
            "{flags:?} resumed download"
        );
        assert!(
            s.log().contains(expect_log),
            "{flags:?} did not use the mode: {}",
            s.log()
        );
    }
}

#[test]
fn python_ftplib_passive_and_active() {
    let python = require_tool("python3");
    let s = server().arg("-w").start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/ftplib_session.py");
    let out = run(Command::new(python)
        .arg(script)
        .arg(s.addr.ip().to_string())
        .arg(s.addr.port().to_string())
        .arg(&s.root));
    assert!(out.contains("ftplib OK"), "{out}");
}

#[test]
fn lftp_mirror_up_and_down_passive_and_active() {
    let lftp = require_tool("lftp");
    for passive in ["on", "off"] {
        let s = server().arg("-w").start();
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        let back = tmp.path().join("back");
        make_tree(&src);
        let script = format!(
            "set cmd:fail-exit yes; set net:max-retries 1; set net:timeout 20; set ftp:passive-mode {passive}; \
             open -u anonymous,x {url}; mirror -R {src} /tree; mirror /tree {back}",
            url = s.url(),
            src = src.display(),
            back = back.display()
        );
        run(Command::new(&lftp).arg("-c").arg(&script));
        assert_same_tree(&src, &s.path("tree"));
        assert_same_tree(&src, &back);
    }
}

/// lftp in active mode over IPv6 announces the unspecified address (`EPRT |2|::|port|`: "the
/// address you see me at"). That is the client's own address, not a bounce: it is connected to.
#[test]
fn lftp_active_ipv6_with_the_unspecified_address() {
    let lftp = require_tool("lftp");
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        panic!("IPv6 loopback is not available on this machine");
    }
    let s = server().listen("[::1]:0").start();
    write_file(&s.path("six.txt"), b"over IPv6, actively");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("six.txt");
    let script = format!(
        "set cmd:fail-exit yes; set net:max-retries 1; set net:timeout 10; \
         set ftp:passive-mode off; open -u anonymous,x {url}; get six.txt -o {out}",
        url = s.url(),
        out = out.display()
    );
    let result = wharf_testkit::output_within(
        Command::new(&lftp).arg("-d").arg("-c").arg(&script),
        std::time::Duration::from_secs(120),
    );
    let said = String::from_utf8_lossy(&result.stderr).into_owned()
        + &String::from_utf8_lossy(&result.stdout);
    assert!(result.status.success(), "{said}");
    assert!(
        said.contains("EPRT |2|::|"),
        "lftp sent another EPRT: {said}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"over IPv6, actively");
}
