//! SeaweedFS (`weed mini`, from `scripts/install-peers`: `target/peers/seaweedfs/bin/weed`): a
//! real S3-compatible store on loopback ports of its own, its data in a temporary directory.
//! [`Seaweed::shared`] is one store for the whole test process, stopped by a watchdog when the
//! process ends. Each test takes a [`Bucket`] of its own, and reads and writes it with curl
//! (`--aws-sigv4`), not through Wharf.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::peers::installed;

/// The credentials every store here accepts.
pub const ACCESS_KEY: &str = "wharf-test-key";
pub const SECRET_KEY: &str = "wharf-test-secret";

pub struct Seaweed {
    /// `http://127.0.0.1:PORT`, the S3 API.
    pub endpoint: String,
    /// The data directory (removed by the watchdog).
    dir: PathBuf,
}

use crate::free_port;

/// The `weed mini` command line: every port given (nothing on a default port), loopback
/// only, no telemetry, no admin UI, no WebDAV, Iceberg or Lance.
fn weed_args(dir: &std::path::Path, ports: &[u16]) -> Vec<String> {
    let names = [
        "s3.port",
        "s3.port.grpc",
        "master.port",
        "master.port.grpc",
        "filer.port",
        "filer.port.grpc",
        "volume.port",
        "volume.port.grpc",
        "admin.port",
        "admin.port.grpc",
    ];
    let mut args = vec![
        "mini".to_string(),
        format!("-dir={}", dir.join("data").display()),
        "-ip=127.0.0.1".into(),
        "-ip.bind=127.0.0.1".into(),
        format!("-s3.config={}", dir.join("s3.json").display()),
        "-master.telemetry=false".into(),
        "-admin.ui=false".into(),
        "-webdav=false".into(),
        "-s3.port.iceberg=0".into(),
        "-s3.port.lance=0".into(),
    ];
    for (name, port) in names.iter().zip(ports) {
        args.push(format!("-{name}={port}"));
    }
    args
}

fn write_identity(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("data")).expect("data dir");
    let identity = format!(
        r#"{{"identities":[{{"name":"wharf","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
    );
    std::fs::write(dir.join("s3.json"), identity).expect("s3.json");
}

static SHARED: OnceLock<Seaweed> = OnceLock::new();
static BUCKETS: AtomicUsize = AtomicUsize::new(0);

impl Seaweed {
    /// One store for every test of this process. A watchdog shell stops it (and removes its
    /// data) when this process has gone.
    pub fn shared() -> &'static Seaweed {
        SHARED.get_or_init(|| {
            let weed = installed("seaweedfs/bin/weed");
            let dir = std::env::temp_dir().join(format!("wharf-seaweed-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            write_identity(&dir);
            let ports: Vec<u16> = (0..10).map(|_| free_port()).collect();
            let quoted: Vec<String> = weed_args(&dir, &ports)
                .iter()
                .map(|a| format!("'{a}'"))
                .collect();
            let script = format!(
                "'{weed}' {args} >'{log}' 2>&1 & w=$!\n\
                 while kill -0 {parent} 2>/dev/null && kill -0 $w 2>/dev/null; do sleep 0.5; done\n\
                 kill $w 2>/dev/null; wait $w; rm -rf '{dir}'",
                weed = weed.display(),
                args = quoted.join(" "),
                log = dir.join("weed.log").display(),
                parent = std::process::id(),
                dir = dir.display(),
            );
            let child = Command::new("sh")
                .args(["-c", &script])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the SeaweedFS watchdog");
            // The watchdog outlives this handle on purpose; it is never waited for.
            drop(child);
            let s = Seaweed {
                endpoint: format!("http://127.0.0.1:{}", ports[0]),
                dir,
            };
            s.wait_ready();
            s
        })
    }

    /// What `weed` wrote.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("weed.log")).unwrap_or_default()
    }

    /// Until the S3 API answers a signed request (the identities load after the port opens).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.curl(&["-o", "/dev/null", "-w", "%{http_code}", &self.endpoint]);
            if out.trim() == "200" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not answer on {} within 60 s (last HTTP status {out:?}); its log:\n{}",
                self.endpoint,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// curl signed with the test credentials; its standard output.
    pub fn curl(&self, args: &[&str]) -> String {
        let user = format!("{ACCESS_KEY}:{SECRET_KEY}");
        let out = Command::new("curl")
            .args([
                "-sS",
                "--aws-sigv4",
                "aws:amz:us-east-1:s3",
                "--user",
                &user,
            ])
            .args(["--max-time", "60"])
            .args(args)
            .output()
            .expect("curl (scripts/install-peers installs it)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A new, empty bucket.
    pub fn bucket(&self) -> Bucket<'_> {
        let name = format!(
            "t{}-{}",
            std::process::id(),
            BUCKETS.fetch_add(1, Ordering::Relaxed)
        );
        let code = self.curl(&[
            "-X",
            "PUT",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{}/{name}", self.endpoint),
        ]);
        assert_eq!(
            code.trim(),
            "200",
            "creating bucket {name}:\n{}",
            self.log()
        );
        Bucket { store: self, name }
    }
}

/// One bucket of a store.
pub struct Bucket<'a> {
    pub store: &'a Seaweed,
    pub name: String,
}

/// `/` and other reserved bytes of a query value, percent-encoded (curl signs the query as
/// it is written, so it must already be in S3's canonical form).
fn query_value(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A key as a URL path (each part percent-encoded).
fn key_path(key: &str) -> String {
    key.split('/')
        .map(query_value)
        .collect::<Vec<_>>()
        .join("/")
}

impl Bucket<'_> {
    /// The TOML `[storage]` table of a Wharf node on this bucket, homes under `prefix`.
    pub fn storage_toml(&self, prefix: &str) -> String {
        format!(
            "[storage]\nbackend = \"s3\"\nendpoint = \"{}\"\nbucket = \"{}\"\nprefix = \"{prefix}\"\naccess_key_id = \"{ACCESS_KEY}\"\nsecret_access_key = \"{SECRET_KEY}\"\n",
            self.store.endpoint, self.name
        )
    }

    fn url(&self, key: &str) -> String {
        format!("{}/{}/{}", self.store.endpoint, self.name, key_path(key))
    }

    /// Writes an object.
    pub fn put(&self, key: &str, data: &[u8]) {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("body");
        std::fs::write(&file, data).expect("write");
        let code = self.store.curl(&[
            "-T",
            &file.to_string_lossy(),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &self.url(key),
        ]);
        assert_eq!(code.trim(), "200", "PUT {key}");
    }

    /// An object's bytes, `None` when there is none.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("body");
        let code = self.store.curl(&[
            "-o",
            &file.to_string_lossy(),
            "-w",
            "%{http_code}",
            &self.url(key),
        ]);
        match code.trim() {
            "200" => Some(std::fs::read(&file).expect("read")),
            "404" => None,
            other => panic!("GET {key}: HTTP {other}"),
        }
    }

    /// Every key under `prefix`, sorted.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            // The parameters in alphabetical order: curl signs them as written.
            let mut query = String::new();
            if let Some(t) = &token {
                query.push_str(&format!("continuation-token={}&", query_value(t)));
            }
            query.push_str(&format!("list-type=2&prefix={}", query_value(prefix)));
            let xml = self
                .store
                .curl(&[&format!("{}/{}?{query}", self.store.endpoint, self.name)]);
            assert!(xml.contains("<ListBucketResult"), "listing {prefix}: {xml}");
            keys.extend(xml_values(&xml, "Key"));
            token = xml_values(&xml, "NextContinuationToken").into_iter().next();
            if token.is_none() {
                break;
            }
        }
        keys.sort();
        keys
    }

    /// Multipart uploads begun and neither completed nor aborted, under `prefix`.
    pub fn unfinished_uploads(&self, prefix: &str) -> Vec<String> {
        let xml = self.store.curl(&[&format!(
            "{}/{}?prefix={}&uploads=",
            self.store.endpoint,
            self.name,
            query_value(prefix)
        )]);
        assert!(
            xml.contains("<ListMultipartUploadsResult"),
            "listing uploads: {xml}"
        );
        xml_values(&xml, "Key")
    }
}

/// The texts of `<tag>…</tag>` in an S3 XML answer, unescaped.
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(
            after[..j]
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&#34;", "\"")
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&amp;", "&"),
        );
        rest = &after[j + close.len()..];
    }
    out
}
