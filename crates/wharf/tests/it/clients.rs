//! The FTP clients people use, each installed by `scripts/install-peers`, against `wharf serve`:
//! rclone (Debian's 1.60 and upstream's 1.75) copy and sync both ways with parallel
//! connections, wget mirror, tnftp `mget`/`mput` with patterns, ncftp recursive put and get,
//! ftputil and aioftp trees up and down — passive and active, plain and TLS wherever the client
//! has them, every tree compared byte for byte.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use wharf_testkit::{
    Server, assert_same_tree, make_tree, output_within, pattern, peers, write_file,
};

use crate::server;
use crate::tls::{Tls, tls_server};

fn run(cmd: &mut Command) -> String {
    let out = output_within(cmd, Duration::from_secs(300));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?} failed:\n{said}");
    said
}

/// A writable server in clear text for user demo/secret.
fn plain_server() -> Server {
    server()
        .args(&["--user", "demo:secret", "-w", "--log-level", "debug"])
        .start()
}

/// A writable server for demo/secret: in clear, or with TLS required (and session reuse).
enum Fixture {
    Plain(Server),
    Tls(Tls),
}

impl Fixture {
    fn new(tls: bool) -> Fixture {
        if tls {
            Fixture::Tls(tls_server("required", &[]))
        } else {
            Fixture::Plain(plain_server())
        }
    }

    fn server(&self) -> &Server {
        match self {
            Fixture::Plain(s) => s,
            Fixture::Tls(t) => &t.server,
        }
    }

    /// The certificate the client is to trust, under TLS.
    fn cert(&self) -> Option<String> {
        match self {
            Fixture::Plain(_) => None,
            Fixture::Tls(t) => Some(t.cert.to_string_lossy().into_owned()),
        }
    }
}

/// [`make_tree`] and 24 more files, so that parallel clients run several connections at once.
fn many_files_tree(dir: &Path) {
    make_tree(dir);
    for i in 0..24u8 {
        let len = 1000 + usize::from(i) * 7919;
        write_file(&dir.join(format!("many/f{i:02}.dat")), &pattern(len, i));
    }
}

/// The rclone binaries: Debian's (1.60) and upstream's from PyPI (1.75).
fn rclones() -> Vec<PathBuf> {
    vec![
        wharf_testkit::require_tool("rclone"),
        peers::installed("rclone/bin/rclone"),
    ]
}

/// rclone shares one TLS session cache between its parallel connections, so its data
/// connections resume sessions of sibling control connections (of the same user, from the same
/// address), some of which are still logging in when the data connection arrives. Go's TLS 1.2
/// client resumes only with session tickets (`--ftp-disable-tls13`): the server's TLS 1.2
/// tickets name entries of its session store. With one attempt only (`--retries 1
/// --low-level-retries 1`), a single refused connection fails the run.
#[test]
fn rclone_copy_and_sync_both_ways_plain_and_tls() {
    for rclone in rclones() {
        for tls in [None, Some(Tls13), Some(Tls12)] {
            let f = Fixture::new(tls.is_some());
            rclone_round(&rclone, f.server(), tls);
        }
    }
}

/// The TLS version rclone may use.
#[derive(Debug, Clone, Copy)]
enum RcloneTls {
    Tls13,
    /// `--ftp-disable-tls13 --ftp-concurrency 4`.
    Tls12,
}
use RcloneTls::{Tls12, Tls13};

fn rclone_round(rclone: &Path, s: &Server, tls: Option<RcloneTls>) {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let back = tmp.path().join("back");
    many_files_tree(&src);
    let obscured = run(Command::new(rclone).args(["obscure", "secret"]));
    let mut remote = format!(
        ":ftp,host={},port={},user=demo,pass={}",
        s.addr.ip(),
        s.addr.port(),
        obscured.trim()
    );
    match tls {
        None => {}
        Some(Tls13) => remote.push_str(",explicit_tls=true,no_check_certificate=true"),
        Some(Tls12) => remote.push_str(
            ",explicit_tls=true,no_check_certificate=true,disable_tls13=true,concurrency=4",
        ),
    }
    let remote = format!("{remote}:tree");
    // The command and its paths, then the flags (rclone 1.60 wants the command first).
    let rc = |args: &[&str]| {
        let mut cmd = Command::new(rclone);
        cmd.env("RCLONE_CONFIG", tmp.path().join("rclone.conf"))
            .args(args)
            .args([
                "--retries",
                "1",
                "--low-level-retries",
                "1",
                "--transfers",
                "4",
                "--checkers",
                "4",
                "--create-empty-src-dirs",
            ]);
        run(&mut cmd)
    };
    let what = format!("{} tls={tls:?}", rclone.display());
    let src_s = src.to_string_lossy().into_owned();
    let back_s = back.to_string_lossy().into_owned();
    rc(&["copy", &src_s, &remote]);
    assert_same_tree(&src, &s.path("tree"));
    rc(&["copy", &remote, &back_s]);
    assert_same_tree(&src, &back);
    // Sync up: a file gone, one new, one changed.
    std::fs::remove_file(src.join("a.bin")).unwrap();
    write_file(&src.join("new.txt"), b"new on the client\n");
    write_file(
        &src.join("docs/readme.txt"),
        b"changed, and longer than before\n",
    );
    rc(&["sync", &src_s, &remote]);
    assert_same_tree(&src, &s.path("tree"));
    // Sync down: the server's tree changed.
    write_file(&s.path("tree/from-server.bin"), &pattern(33_333, 77));
    std::fs::remove_file(s.path("tree/many/f03.dat")).unwrap();
    rc(&["sync", &remote, &back_s]);
    assert_same_tree(&s.path("tree"), &back);
    let log = s.log();
    assert!(!log.contains("did not resume"), "{what}: {log}");
}

/// wget mirrors a tree (download only) in all four combinations of passive/active and
/// plain/explicit TLS; the data connections resume the control connection's TLS session.
#[test]
fn wget_mirrors_passive_and_active_plain_and_tls() {
    let wget = wharf_testkit::require_tool("wget");
    for tls in [false, true] {
        for passive in [true, false] {
            let f = Fixture::new(tls);
            let s = f.server();
            make_tree(&s.path("tree"));
            let tmp = tempfile::tempdir().unwrap();
            let mut cmd = Command::new(&wget);
            cmd.args([
                "-nv",
                "-m",
                "-nH",
                "--remove-listing",
                "--user=demo",
                "--password=secret",
                "--tries=1",
                "--timeout=30",
            ])
            .arg("-P")
            .arg(tmp.path());
            if !passive {
                cmd.arg("--no-passive-ftp");
            }
            let scheme = match f.cert() {
                Some(cert) => {
                    cmd.arg(format!("--ca-certificate={cert}"));
                    "ftps"
                }
                None => "ftp",
            };
            cmd.arg(format!("{scheme}://{}/tree/", s.addr));
            run(&mut cmd);
            assert_same_tree(&s.path("tree"), &tmp.path().join("tree"));
        }
    }
}

/// BSD ftp (tnftp) `mget f0*.dat` sends `NLST f0*.dat` and fetches what it names; `mput`
/// expands its pattern locally. Passive and active (tnftp has no TLS).
#[test]
fn tnftp_mget_and_mput_with_patterns_passive_and_active() {
    let tnftp = wharf_testkit::require_tool("tnftp");
    for passive in ["on", "off"] {
        let s = plain_server();
        for name in ["f01.dat", "f02.dat", "f10.dat", "other.txt"] {
            write_file(
                &s.path(&format!("tree/{name}")),
                &pattern(20_000, name.len() as u8),
            );
        }
        let tmp = tempfile::tempdir().unwrap();
        let down = tmp.path().join("down");
        let up = tmp.path().join("up");
        std::fs::create_dir(&down).unwrap();
        write_file(&up.join("u1.bin"), &pattern(50_000, 1));
        write_file(&up.join("u2.bin"), &pattern(60_000, 2));
        write_file(&up.join("skip.txt"), b"not matched");
        let script = format!(
            "user demo secret\nbinary\npassive {passive}\ncd tree\nlcd {down}\nmget f0*.dat\n\
             lcd {up}\nmkdir /up\ncd /up\nmput *.bin\nquit\n",
            down = down.display(),
            up = up.display()
        );
        let out = wharf_testkit::output_with_input(
            Command::new(&tnftp)
                .args(["-n", "-i", "-v"])
                .arg(s.addr.ip().to_string())
                .arg(s.addr.port().to_string()),
            Some(script.as_bytes()),
            Duration::from_secs(120),
        );
        let said = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        let mut got: Vec<_> = std::fs::read_dir(&down)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        got.sort();
        assert_eq!(got, ["f01.dat", "f02.dat"], "passive {passive}: {said}");
        for name in &got {
            assert_eq!(
                std::fs::read(down.join(name)).unwrap(),
                std::fs::read(s.path(&format!("tree/{name}"))).unwrap(),
                "{name}"
            );
        }
        let mut put: Vec<_> = std::fs::read_dir(s.path("up"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        put.sort();
        assert_eq!(put, ["u1.bin", "u2.bin"], "passive {passive}: {said}");
        assert_eq!(
            std::fs::read(s.path("up/u1.bin")).unwrap(),
            pattern(50_000, 1)
        );
        assert_eq!(
            std::fs::read(s.path("up/u2.bin")).unwrap(),
            pattern(60_000, 2)
        );
    }
}

/// ncftpput -R and ncftpget -R, passive (-F) and active (-E); ncftp has no TLS.
#[test]
fn ncftp_recursive_put_and_get_passive_and_active() {
    let put = wharf_testkit::require_tool("ncftpput");
    let get = wharf_testkit::require_tool("ncftpget");
    for mode in ["-F", "-E"] {
        let s = plain_server();
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("tree");
        let back = tmp.path().join("back");
        std::fs::create_dir(&back).unwrap();
        make_tree(&src);
        let port = s.addr.port().to_string();
        let host = s.addr.ip().to_string();
        run(Command::new(&put)
            .args([
                "-u", "demo", "-p", "secret", "-P", &port, mode, "-R", "-m", "-t", "30",
            ])
            .arg(&host)
            .arg("/ncup")
            .arg(&src));
        assert_same_tree(&src, &s.path("ncup/tree"));
        // -T: no "tar mode" (ncftp otherwise first asks for /ncup/tree.tar: 550, then goes on).
        run(Command::new(&get)
            .args([
                "-u", "demo", "-p", "secret", "-P", &port, mode, "-R", "-T", "-t", "30",
            ])
            .arg(&host)
            .arg(&back)
            .arg("/ncup/tree"));
        assert_same_tree(&src, &back.join("tree"));
    }
}

fn python_tree(script: &str, module: &str, s: &Server, extra: &[&str]) {
    let python = wharf_testkit::require_tool("python3");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let back = tmp.path().join("back");
    many_files_tree(&src);
    let out = run(Command::new(python)
        .env("PYTHONPATH", peers::python_path(module))
        .arg(peers::script(script))
        .arg(s.addr.ip().to_string())
        .arg(s.addr.port().to_string())
        .args(["demo", "secret"])
        .arg(&src)
        .arg("/tree")
        .arg(&back)
        .args(extra));
    assert!(out.contains(&format!("{module} OK")), "{out}");
    assert_same_tree(&src, &s.path("tree"));
    assert_same_tree(&src, &back);
}

/// ftputil (on ftplib) uploads a tree and downloads it back, passive and active, plain and TLS
/// (its session class passes the control connection's TLS session to the data connections).
#[test]
fn ftputil_tree_up_and_down_passive_active_plain_tls() {
    for tls in [false, true] {
        for active in [false, true] {
            let f = Fixture::new(tls);
            let mut args = Vec::new();
            if active {
                args.push("--active".to_string());
            }
            if let Some(cert) = f.cert() {
                args.extend(["--tls".to_string(), cert]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            python_tree("ftputil_tree.py", "ftputil", f.server(), &args);
        }
    }
}

/// aioftp (passive only) uploads a tree and downloads it back, plain and TLS: it starts each
/// data connection's TLS handshake before it sends the transfer command.
#[test]
fn aioftp_tree_up_and_down_plain_and_tls() {
    for tls in [false, true] {
        let f = Fixture::new(tls);
        let args = match f.cert() {
            Some(cert) => vec!["--tls".to_string(), cert],
            None => Vec::new(),
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        python_tree("aioftp_tree.py", "aioftp", f.server(), &args);
    }
}
