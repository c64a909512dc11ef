//! A PostgreSQL server of the test's own: Debian's binaries (`scripts/install-peers`), run as
//! the `postgres` user on a loopback port with its data in a temporary directory, stopped (by
//! its own `pg_ctl`) when dropped. Needs root (to act as `postgres`).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::output_within;

pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    uid: u32,
    gid: u32,
    _dir: tempfile::TempDir,
}

/// The directory of Debian's PostgreSQL binaries (the newest version installed).
fn bin_dir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|p| p.join("pg_ctl").is_file());
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("PostgreSQL is not installed (/usr/lib/postgresql/*/bin/pg_ctl): run scripts/install-peers")
    })
}

fn postgres_ids() -> (u32, u32) {
    let out = Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .expect("id");
    let uid = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no `postgres` user: run scripts/install-peers"));
    let out = Command::new("id")
        .args(["-g", "postgres"])
        .output()
        .expect("id");
    let gid = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("gid");
    (uid, gid)
}

impl Postgres {
    /// initdb and start; panics with the server's own words if it cannot.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let (uid, gid) = postgres_ids();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("data dir");
        std::os::unix::fs::chown(&data, Some(uid), Some(gid)).expect("chown");
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let pg = Postgres {
            port,
            bin,
            data,
            uid,
            gid,
            _dir: dir,
        };
        let out = pg.run(
            "initdb",
            &[
                "-D",
                &pg.data(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.start_again();
        pg
    }

    fn data(&self) -> String {
        self.data.to_string_lossy().into_owned()
    }

    fn run(&self, program: &str, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(self.bin.join(program));
        cmd.args(args)
            .uid(self.uid)
            .gid(self.gid)
            .current_dir(&self.data)
            .stdin(Stdio::null());
        output_within(&mut cmd, Duration::from_secs(60))
    }

    /// Starts the server (again, after [`Postgres::stop`]) and waits until it accepts.
    pub fn start_again(&self) {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off",
            self.port,
            self.data()
        );
        let log = Path::new(&self.data).join("server.log");
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log.to_string_lossy(),
                "-w",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server (fast: connections are cut).
    pub fn stop(&self) {
        let out = self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }
}
