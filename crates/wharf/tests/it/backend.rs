//! The storage backends the command and transfer tests run against: the local file system
//! (the real `wharf serve` binary, files on disk), MemFs (the same server in this process,
//! files in memory) and S3 (`wharf serve` on a bucket of its own in SeaweedFS). Each test gets
//! a [`Served`] and reaches its files through it — on S3 with curl, straight to the store — so
//! the same assertions hold on all three, and where S3 differs by design the test says so.

use std::net::SocketAddr;
use std::sync::Arc;

use wharf_server::config::{FileConfig, Overrides, Settings};
use wharf_server::{Authenticator, MemFs, MemProvider, Services};
use wharf_testkit::seaweed::{Bucket, Seaweed};
use wharf_testkit::{Server, write_file};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `wharf serve` on a temporary directory.
    Local,
    /// The server in this process, on [`MemFs`].
    Mem,
    /// `wharf serve` on an S3 bucket (SeaweedFS).
    S3,
}

/// Runs each named test `fn name(b: Backend)` once per backend, as `local::name`,
/// `mem::name` and `s3::name`.
#[macro_export]
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod local {
            $( #[test] fn $name() { super::$name($crate::backend::Backend::Local) } )*
        }
        mod mem {
            $( #[test] fn $name() { super::$name($crate::backend::Backend::Mem) } )*
        }
        mod s3 {
            $( #[test] fn $name() { super::$name($crate::backend::Backend::S3) } )*
        }
    };
}

/// How to start a server: the flags of `wharf serve` and a config file.
pub struct Setup {
    backend: Backend,
    args: Vec<String>,
    config: Option<String>,
    listen: String,
    /// In memory only: this authenticator instead of the users of the settings.
    auth: Option<Arc<dyn Authenticator>>,
}

pub fn served(backend: Backend) -> Setup {
    Setup {
        backend,
        args: Vec::new(),
        config: None,
        listen: "127.0.0.1:0".into(),
        auth: None,
    }
}

/// A writable anonymous server.
pub fn writable_on(backend: Backend) -> Served {
    served(backend).arg("-w").start()
}

impl Setup {
    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }

    pub fn args(mut self, a: &[&str]) -> Self {
        self.args.extend(a.iter().map(|s| s.to_string()));
        self
    }

    /// A TOML config; `{root}` is replaced by the served directory.
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_string());
        self
    }

    /// Logins go to `auth` (in-memory servers only).
    pub fn auth(mut self, auth: Arc<dyn Authenticator>) -> Self {
        assert_eq!(
            self.backend,
            Backend::Mem,
            "a custom authenticator runs in process"
        );
        self.auth = Some(auth);
        self
    }

    pub fn listen(mut self, addr: &str) -> Self {
        self.listen = addr.to_string();
        self
    }

    pub fn start(self) -> Served {
        match self.backend {
            Backend::Local => {
                let mut b =
                    crate::server().args(&self.args.iter().map(String::as_str).collect::<Vec<_>>());
                if let Some(c) = &self.config {
                    b = b.config(c);
                }
                let server = b.listen(&self.listen).start();
                Served {
                    addr: server.addr,
                    kind: Kind::Local(server),
                }
            }
            Backend::Mem => self.start_in_memory(),
            Backend::S3 => {
                let bucket = Seaweed::shared().bucket();
                let config = format!(
                    "{}\n{}",
                    self.config.as_deref().unwrap_or(""),
                    bucket.storage_toml("")
                );
                let server = crate::server()
                    .args(&self.args.iter().map(String::as_str).collect::<Vec<_>>())
                    .config(&config)
                    .listen(&self.listen)
                    .start();
                Served {
                    addr: server.addr,
                    kind: Kind::S3 {
                        _server: server,
                        bucket,
                    },
                }
            }
        }
    }

    /// The same server as `wharf serve` would run with these flags, in this process, on MemFs.
    fn start_in_memory(self) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let file = match &self.config {
            Some(toml) => {
                FileConfig::parse(&toml.replace("{root}", &root.to_string_lossy())).expect("config")
            }
            None => FileConfig::default(),
        };
        let mut cli = Overrides {
            root: Some(root.clone()),
            listen: vec![self.listen.clone()],
            ..Overrides::default()
        };
        let mut args = self.args.iter();
        while let Some(a) = args.next() {
            let mut value = || args.next().expect("a value").clone();
            match a.as_str() {
                "-w" | "--write" => cli.write = true,
                "--anonymous" => cli.anonymous = true,
                "--user" => cli.users.push(value()),
                "--passive-ports" => cli.passive_ports = Some(value()),
                "--passive-address" => cli.passive_address = Some(value()),
                "--active-source-port" => {
                    cli.active_source_port = Some(value().parse().expect("a port"))
                }
                "--log-level" => drop(value()),
                other => panic!("in-memory server: flag {other} not handled"),
            }
        }
        let settings = Settings::build(file, cli).expect("settings");
        let provider = Arc::new(MemProvider::new());
        let fs = provider.home(&settings.root);
        let mut services = Services {
            storage: provider,
            ..Services::new(&settings).expect("services")
        };
        if let Some(auth) = self.auth.clone() {
            services.auth = auth;
        }
        let listen = settings.listen[0];
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = wharf_server::bind(listen).expect("bind");
                addr_tx
                    .send(listener.local_addr().expect("addr"))
                    .expect("send");
                let stop = async {
                    let _ = stop_rx.await;
                };
                wharf_server::run(settings, services, vec![listener], Vec::new(), stop).await;
            });
        });
        let addr = addr_rx
            .recv_timeout(wharf_testkit::IO_TIMEOUT)
            .expect("in-memory server started");
        Served {
            addr,
            kind: Kind::Mem {
                fs,
                _stop: stop_tx,
                _dir: dir,
            },
        }
    }
}

enum Kind {
    Local(Server),
    S3 {
        /// Kept running while the test runs.
        _server: Server,
        bucket: Bucket<'static>,
    },
    Mem {
        fs: MemFs,
        /// Dropped with the server: it shuts down.
        _stop: tokio::sync::oneshot::Sender<()>,
        _dir: tempfile::TempDir,
    },
}

/// A running server and its files.
pub struct Served {
    pub addr: SocketAddr,
    kind: Kind,
}

impl Served {
    /// Writes a file into the served root.
    pub fn put(&self, rel: &str, data: &[u8]) {
        match &self.kind {
            Kind::Local(s) => write_file(&s.path(rel), data),
            Kind::Mem { fs, .. } => fs.put(rel, data),
            Kind::S3 { bucket, .. } => bucket.put(rel, data),
        }
    }

    pub fn mkdir(&self, rel: &str) {
        match &self.kind {
            Kind::Local(s) => std::fs::create_dir(s.path(rel)).unwrap(),
            Kind::Mem { fs, .. } => fs.mkdir_all(rel),
            Kind::S3 { bucket, .. } => {
                bucket.put(&format!("{rel}/{}", wharf_server::storage::DIR_MARKER), b"")
            }
        }
    }

    /// A file's contents (the test fails if it is missing). The name is bytes.
    pub fn read(&self, rel: impl AsRef<[u8]>) -> Vec<u8> {
        let rel = rel.as_ref();
        match &self.kind {
            Kind::Local(s) => {
                use std::os::unix::ffi::OsStrExt;
                std::fs::read(s.root.join(std::ffi::OsStr::from_bytes(rel))).unwrap()
            }
            Kind::Mem { fs, .. } => fs
                .get(rel)
                .unwrap_or_else(|| panic!("{} is missing", String::from_utf8_lossy(rel))),
            Kind::S3 { bucket, .. } => {
                let key = std::str::from_utf8(rel).expect("S3 keys are UTF-8");
                bucket
                    .get(key)
                    .unwrap_or_else(|| panic!("{key} is missing"))
            }
        }
    }

    pub fn exists(&self, rel: &str) -> bool {
        match &self.kind {
            Kind::Local(s) => s.path(rel).exists(),
            Kind::Mem { fs, .. } => fs.exists(rel),
            Kind::S3 { bucket, .. } => bucket.get(rel).is_some() || self.is_dir(rel),
        }
    }

    pub fn is_dir(&self, rel: &str) -> bool {
        match &self.kind {
            Kind::Local(s) => s.path(rel).is_dir(),
            Kind::Mem { fs, .. } => fs.is_dir(rel),
            Kind::S3 { bucket, .. } => !bucket.keys(&format!("{rel}/")).is_empty(),
        }
    }

    /// Permission bits of a file.
    pub fn mode(&self, rel: &str) -> u32 {
        match &self.kind {
            Kind::Local(s) => {
                use std::os::unix::fs::PermissionsExt;
                std::fs::metadata(s.path(rel)).unwrap().permissions().mode() & 0o7777
            }
            Kind::Mem { fs, .. } => fs.info(rel).unwrap().mode,
            Kind::S3 { .. } => panic!("objects have no permission bits"),
        }
    }

    /// Everything in the root, hidden files (and temporary upload files) included, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = match &self.kind {
            Kind::Local(s) => std::fs::read_dir(&s.root)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Kind::Mem { fs, .. } => fs
                .names("/")
                .into_iter()
                .map(|n| String::from_utf8_lossy(&n).into_owned())
                .collect(),
            // The first part of every key; a directory once.
            Kind::S3 { bucket, .. } => {
                let mut v: Vec<String> = bucket
                    .keys("")
                    .iter()
                    .filter_map(|k| k.split('/').next().map(str::to_string))
                    .collect();
                v.dedup();
                v
            }
        };
        v.sort();
        v
    }
}
