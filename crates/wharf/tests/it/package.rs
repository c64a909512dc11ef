//! The Debian package `scripts/package` builds from the binary this suite already built:
//! its files, modes, owners and conffiles; its binary; its units (`systemd-analyze verify`, and
//! `security --offline=true` scored at most 2.0); its man pages (rendered without a warning,
//! naming every subcommand and config key); its completions (loaded by bash); lintian; and the
//! package installed with `dpkg -i`, then purged, leaving nothing but the `wharf` user.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use wharf_testkit::{output_within, require_tool};

use crate::BIN;

const LIMIT: Duration = Duration::from_secs(120);

fn run(cmd: &mut Command) -> String {
    let out = output_within(cmd, LIMIT);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{cmd:?}:\n{text}");
    text
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

#[test]
fn debian_package_builds_checks_installs_and_purges() {
    assert!(
        wharf_testkit::is_root(),
        "this test installs the package with dpkg -i: run the tests as root (CI does)"
    );
    for tool in ["dpkg-deb", "lintian", "systemd-analyze", "man", "strip"] {
        require_tool(tool);
    }
    let out = tempfile::tempdir().unwrap();
    let built = run(Command::new(workspace().join("scripts/package"))
        .args(["--bin", BIN, "--fast", "--out"])
        .arg(out.path()));
    let deb = PathBuf::from(built.lines().last().unwrap().trim());
    let arch = run(Command::new("dpkg").arg("--print-architecture"));
    let name = format!("wharf_{}_{}.deb", env!("CARGO_PKG_VERSION"), arch.trim());
    assert!(deb.exists() && deb.ends_with(&name), "{built}");

    // Files, modes, owners.
    let listing = run(Command::new("dpkg-deb").arg("-c").arg(&deb));
    for (mode, path) in [
        ("-rwxr-xr-x root/root", "./usr/bin/wharf"),
        ("-rw-r--r-- root/root", "./lib/systemd/system/wharf.service"),
        ("-rw-r--r-- root/root", "./lib/systemd/system/wharf.socket"),
        ("-rw-r--r-- root/root", "./etc/wharf/wharf.toml"),
        ("-rw-r--r-- root/root", "./etc/logrotate.d/wharf"),
        ("-rw-r--r-- root/root", "./usr/share/man/man1/wharf.1.gz"),
        (
            "-rw-r--r-- root/root",
            "./usr/share/man/man1/wharf-serve.1.gz",
        ),
        (
            "-rw-r--r-- root/root",
            "./usr/share/man/man5/wharf.toml.5.gz",
        ),
        (
            "-rw-r--r-- root/root",
            "./usr/share/bash-completion/completions/wharf",
        ),
        (
            "-rw-r--r-- root/root",
            "./usr/share/zsh/vendor-completions/_wharf",
        ),
        (
            "-rw-r--r-- root/root",
            "./usr/share/fish/vendor_completions.d/wharf.fish",
        ),
        ("-rw-r--r-- root/root", "./usr/share/doc/wharf/copyright"),
    ] {
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with(mode) && l.ends_with(path)),
            "{mode} {path}\n{listing}"
        );
    }
    let info = run(Command::new("dpkg-deb").arg("-I").arg(&deb));
    assert!(
        info.contains("Package: wharf") && info.contains("Depends: libc6"),
        "{info}"
    );
    let x = tempfile::tempdir().unwrap();
    run(Command::new("dpkg-deb")
        .arg("-e")
        .arg(&deb)
        .arg(x.path().join("DEBIAN")));
    assert_eq!(
        std::fs::read_to_string(x.path().join("DEBIAN/conffiles")).unwrap(),
        "/etc/wharf/wharf.toml\n/etc/logrotate.d/wharf\n"
    );
    // Its binary runs, extracted.
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(x.path()));
    let version = run(Command::new(x.path().join("usr/bin/wharf")).arg("--version"));
    assert!(version.starts_with("wharf "), "{version}");

    // Man pages: no warning, every subcommand, every config key.
    let man = |page: &str| {
        let out = output_within(
            Command::new("man")
                .args(["--warnings", "-l"])
                .arg(x.path().join(page))
                .env("MANWIDTH", "100"),
            LIMIT,
        );
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success() && err.trim().is_empty(),
            "{page}: {err}"
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let main_page = man("usr/share/man/man1/wharf.1.gz");
    for sub in [
        "serve", "passwd", "ls", "get", "put", "rm", "mkdir", "rmdir", "mv", "mirror", "shell",
        "check", "bench", "cert", "users",
    ] {
        assert!(
            main_page.contains(&format!("wharf-{sub}(1)")),
            "{sub}\n{main_page}"
        );
        man(&format!("usr/share/man/man1/wharf-{sub}.1.gz"));
    }
    let serve_page = man("usr/share/man/man1/wharf-serve.1.gz");
    assert!(serve_page.contains("--check"), "{serve_page}");
    let config_page = man("usr/share/man/man5/wharf.toml.5.gz");
    for key in wharf_server::config_keys::parser_keys() {
        let leaf = key.rsplit('.').next().unwrap();
        assert!(config_page.contains(leaf), "{key} not in wharf.toml(5)");
    }
    // Completions, loaded by bash.
    let completion = x.path().join("usr/share/bash-completion/completions/wharf");
    let loaded = run(Command::new("bash").arg("-c").arg(format!(
        "source {} && complete -p wharf",
        completion.display()
    )));
    assert!(loaded.contains("wharf"), "{loaded}");

    // Lintian: no error (its warnings are listed in the test output).
    let lint = output_within(
        Command::new("lintian")
            .args(["--tag-display-limit", "0"])
            .arg(&deb),
        Duration::from_secs(300),
    );
    let said = String::from_utf8_lossy(&lint.stdout).into_owned();
    println!("lintian:\n{said}");
    assert!(!said.lines().any(|l| l.starts_with("E:")), "{said}");

    // Installed, its units verified and scored; purged, nothing left.
    let _ = output_within(Command::new("dpkg").args(["--purge", "wharf"]), LIMIT);
    run(Command::new("dpkg").arg("-i").arg(&deb));
    let installed = std::panic::catch_unwind(|| {
        let verify = output_within(
            Command::new("systemd-analyze").args([
                "verify",
                "/lib/systemd/system/wharf.socket",
                "/lib/systemd/system/wharf.service",
            ]),
            LIMIT,
        );
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&verify.stdout),
            String::from_utf8_lossy(&verify.stderr)
        );
        assert!(verify.status.success() && said.trim().is_empty(), "{said}");
        let security = run(Command::new("systemd-analyze").args([
            "security",
            "--offline=true",
            "/lib/systemd/system/wharf.service",
        ]));
        let score: f64 = security
            .lines()
            .find_map(|l| l.split("exposure level for wharf.service: ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no score:\n{security}"));
        println!("systemd-analyze security: {score}");
        assert!(score <= 2.0, "{security}");
        // The service's own check, as its user, on the packaged configuration.
        let check = run(Command::new("runuser").args([
            "-u",
            "wharf",
            "--",
            "/usr/bin/wharf",
            "serve",
            "--config",
            "/etc/wharf/wharf.toml",
            "--check",
        ]));
        assert!(check.contains("Runs as: wharf"), "{check}");
        // As root, as an admin types it: it switches to wharf (run_as) and makes nothing (a
        // transfer log made by root would stop the service).
        let as_root = run(Command::new("/usr/bin/wharf").args([
            "serve",
            "--config",
            "/etc/wharf/wharf.toml",
            "--check",
        ]));
        assert!(as_root.contains("Runs as: wharf"), "{as_root}");
        assert!(!Path::new("/var/log/wharf/xferlog").exists());
        for (path, mode, owner) in [
            ("/var/lib/wharf", 0o700, "wharf"),
            ("/var/log/wharf", 0o750, "wharf"),
            ("/etc/wharf/wharf.toml", 0o640, "root"),
        ] {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(path).unwrap();
            assert_eq!(m.mode() & 0o777, mode, "{path}");
            let (uid, _) = wharf_testkit::user_ids(owner).unwrap();
            assert_eq!(m.uid(), uid, "{path}");
        }
    });
    run(Command::new("dpkg").args(["--purge", "wharf"]));
    if let Err(e) = installed {
        std::panic::resume_unwind(e);
    }
    for gone in [
        "/usr/bin/wharf",
        "/etc/wharf",
        "/var/lib/wharf",
        "/var/log/wharf",
        "/lib/systemd/system/wharf.service",
        "/usr/share/man/man1/wharf.1.gz",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} left after purge");
    }
}
