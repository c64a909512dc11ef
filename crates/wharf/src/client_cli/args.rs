//! The arguments of the client commands.

use std::path::PathBuf;

use wharf_client::tree::TreeOptions;
use wharf_client::verify::Verify;
use wharf_client::{Error, FtpUrl};

/// Flags every client command takes.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// Passive mode only (EPSV, then PASV)
    #[arg(long, conflicts_with = "active")]
    pub passive: bool,
    /// Active mode only (EPRT, then PORT)
    #[arg(long)]
    pub active: bool,
    /// Print the connection log (Status/Command/Response lines) to stderr
    #[arg(short = 'v', long = "log", visible_alias = "verbose")]
    pub log: bool,
    /// No result lines (errors and warnings are still printed)
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Seconds to wait for a connection, for each reply and for data to move
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: u64,
    /// Read the password from the first line of stdin (else WHARF_PASSWORD, else ~/.netrc,
    /// else a prompt)
    #[arg(long)]
    pub password_stdin: bool,
    /// Read logins and passwords from this file instead of ~/.netrc
    #[arg(long, value_name = "FILE")]
    pub netrc_file: Option<PathBuf>,
    /// Limit the whole command to RATE bytes a second, all sessions together (500k, 2M, 1G;
    /// k = 1024)
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub limit_rate: Option<u64>,
    /// Connect to the address a PASV reply announces even when it is not the server's own
    /// (by default the server's own address is used: a server cannot steer the client elsewhere)
    #[arg(long)]
    pub trust_pasv_address: bool,
    #[command(flatten)]
    pub tls: TlsFlags,
}

/// `--verify` (on) or `--verify=required`.
fn parse_verify(text: &str) -> Result<Verify, String> {
    match text {
        "on" => Ok(Verify::On),
        "required" => Ok(Verify::Required),
        _ => Err(format!("{text:?}: --verify takes no value, or =required")),
    }
}

/// `500k`, `2M`, `1.5G`, `100000` (k, M, G are powers of 1024, as curl reads them).
fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (number, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&t[..i], &t[i..]),
        None => (t, ""),
    };
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        _ => return Err(format!("{text:?}: the unit must be k, M or G")),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a rate (like 500k or 2M)"))?;
    let rate = value * scale as f64;
    if !(1.0..=1e13).contains(&rate) {
        return Err(format!(
            "{text:?}: the rate must be at least 1 byte a second"
        ));
    }
    Ok(rate as u64)
}

/// FTPS flags, shared by the client commands and `wharf check`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsFlags {
    /// Use explicit TLS (AUTH TLS) with an ftp:// URL, as ftpes:// does
    #[arg(long)]
    pub(crate) tls: bool,
    /// Trust only the CA certificates in this PEM file (instead of the system's)
    #[arg(long, value_name = "FILE")]
    pub(crate) ca_file: Option<std::path::PathBuf>,
    /// Do not verify the server's certificate (its name and who issued it); still encrypted
    #[arg(long)]
    pub(crate) insecure: bool,
}

impl TlsFlags {
    /// The TLS settings the URL and flags ask for; `None` for plain FTP.
    pub fn settings(
        &self,
        url: &FtpUrl,
        accept_invalid: bool,
    ) -> Result<Option<wharf_client::TlsSettings>, Error> {
        use wharf_client::url::Security;
        let implicit = match (url.security, self.tls) {
            (Security::Implicit, _) => true,
            (Security::Explicit, _) | (Security::None, true) => false,
            (Security::None, false) => {
                if self.ca_file.is_some() || self.insecure {
                    return Err(Error::Usage(
                        "--ca-file and --insecure need TLS: use ftpes://, ftps:// or --tls".into(),
                    ));
                }
                return Ok(None);
            }
        };
        let trust = match &self.ca_file {
            Some(p) => wharf_client::Trust::CaFile(p.clone()),
            None => wharf_client::Trust::System,
        };
        wharf_client::TlsSettings::new(&url.host, implicit, &trust, accept_invalid || self.insecure)
            .map(Some)
    }
}

#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// ftp://[user@]host[:port]/path (a directory, a file, or a pattern like /logs/*.gz)
    pub(crate) url: String,
    /// Long form: type, size, modification time (UTC), name
    #[arg(short = 'l')]
    pub(crate) long: bool,
    /// One JSON array: an object per entry with the MLSD facts (type, size, modify, perm, …)
    #[arg(long, conflicts_with = "long")]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) common: Common,
}

#[derive(clap::Args, Debug, Clone)]
pub struct TransferFlags {
    /// Resume: continue a partial file (NAME.wharf-part, or a shorter NAME) from its size (REST;
    /// APPE for uploads where needed)
    #[arg(short = 'c', long = "continue")]
    pub(crate) resume: bool,
    /// Copy a directory tree
    #[arg(short = 'r', long)]
    pub(crate) recursive: bool,
    /// Transfer in ASCII mode (TYPE A: line endings converted)
    #[arg(long, conflicts_with = "resume")]
    pub(crate) ascii: bool,
    #[command(flatten)]
    pub(crate) pool: PoolFlags,
}

/// How many sessions work at once, and how often a broken transfer is tried again.
#[derive(clap::Args, Debug, Clone)]
pub struct PoolFlags {
    /// Sessions used at once for a tree (-r), several files or a mirror; fewer when the server
    /// limits connections
    #[arg(long, value_name = "N", default_value_t = 2,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(crate) parallel: u16,
    /// When a transfer breaks (network, timeout, 421/425/426/450/451), reconnect and resume it
    /// with REST, up to N times, waiting 1, 2, 4 … 30 s between tries
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=100))]
    pub(crate) retry: u32,
}

impl PoolFlags {
    pub(crate) fn tree_options(&self) -> TreeOptions {
        TreeOptions {
            parallel: usize::from(self.parallel),
            retries: self.retry,
            ..TreeOptions::default()
        }
    }
}

impl TransferFlags {
    pub(crate) fn tree_options(&self) -> TreeOptions {
        TreeOptions {
            resume: self.resume,
            ..self.pool.tree_options()
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// Compare the file with the server's hash (HASH, else XSHA512 and its kin) after it came:
    /// one that differs fails and stays NAME.wharf-part; a server without hashes is a warning,
    /// or a failure with --verify=required
    #[arg(long, value_name = "required", num_args = 0..=1, require_equals = true,
          default_missing_value = "on", value_parser = parse_verify)]
    pub(crate) verify: Option<Verify>,
    /// ftp://[user@]host[:port]/path; a pattern in the last part (quoted: 'ftp://h/logs/*.gz')
    /// gets every file it matches
    pub(crate) url: String,
    /// Local file or directory (default: the remote name in the current directory; - for stdout)
    pub(crate) local: Option<PathBuf>,
    /// Download one file over N sessions at once, each a byte range
    #[arg(long, value_name = "N", conflicts_with_all = ["recursive", "ascii", "resume"],
          value_parser = clap::value_parser!(u16).range(1..=32))]
    pub(crate) segments: Option<u16>,
    #[command(flatten)]
    pub(crate) flags: TransferFlags,
    #[command(flatten)]
    pub(crate) common: Common,
}

#[derive(clap::Args, Debug)]
pub struct PutArgs {
    /// Compare the server's file with the local one by the server's hash (HASH, else XSHA512
    /// and its kin) once stored; a server without hashes is a warning, or a failure with
    /// --verify=required
    #[arg(long, value_name = "required", num_args = 0..=1, require_equals = true,
          default_missing_value = "on", value_parser = parse_verify)]
    pub(crate) verify: Option<Verify>,
    /// Local file (or directory with -r; - for stdin)
    pub(crate) local: PathBuf,
    /// ftp://[user@]host[:port]/path (ending in / : into that directory)
    pub(crate) url: String,
    /// Create the remote directories the path names that are missing (MKD each)
    #[arg(long)]
    pub(crate) create_dirs: bool,
    /// With -r: upload what symbolic links leading out of the tree point to (skipped otherwise)
    #[arg(long)]
    pub(crate) follow_links: bool,
    #[command(flatten)]
    pub(crate) flags: TransferFlags,
    #[command(flatten)]
    pub(crate) common: Common,
}

#[derive(clap::Args, Debug)]
pub struct PathArgs {
    /// ftp://[user@]host[:port]/path, one or more (rm: a pattern in the last part deletes every
    /// file it matches)
    #[arg(required = true)]
    pub(crate) urls: Vec<String>,
    /// mkdir: create missing parent directories too, and do not fail when it exists
    #[arg(short = 'p', long)]
    pub(crate) parents: bool,
    #[command(flatten)]
    pub(crate) common: Common,
}

#[derive(clap::Args, Debug)]
pub struct MvArgs {
    /// ftp://[user@]host[:port]/path
    pub(crate) url: String,
    /// New path on the same server (relative to the login directory, or absolute with /), or a
    /// URL of the same server
    pub(crate) new_path: String,
    #[command(flatten)]
    pub(crate) common: Common,
}

#[derive(clap::Args, Debug)]
pub struct MirrorArgs {
    /// Source: an ftp:// URL of a directory or a local directory
    pub(crate) src: String,
    /// Destination: a local directory or an ftp:// URL of a directory (the other kind than SRC)
    pub(crate) dst: String,
    /// Delete what DST has and SRC lacks
    #[arg(long)]
    pub(crate) delete: bool,
    /// Print what would be done, and do nothing
    #[arg(short = 'n', long)]
    pub(crate) dry_run: bool,
    /// Only files matching GLOB (name, or path with /); repeatable
    #[arg(long, value_name = "GLOB")]
    pub(crate) include: Vec<String>,
    /// Leave out files and directories matching GLOB (name, or path with /); repeatable
    #[arg(long, value_name = "GLOB")]
    pub(crate) exclude: Vec<String>,
    /// Upload what symbolic links leading out of the tree point to (skipped otherwise)
    #[arg(long)]
    pub(crate) follow_links: bool,
    /// Compare each file transferred with the server's hash (HASH, else XSHA512 and its kin):
    /// one that differs fails; a server without hashes is a warning, or a failure with
    /// --verify=required
    #[arg(long, value_name = "required", num_args = 0..=1, require_equals = true,
          default_missing_value = "on", value_parser = parse_verify)]
    pub(crate) verify: Option<Verify>,
    /// How a file already at DST is found the same: size-time (size and modification time),
    /// or hash (size and the server's hash against the local file's, read whole)
    #[arg(long, value_name = "HOW", default_value = "size-time",
          value_parser = ["size-time", "hash"])]
    pub(crate) compare: String,
    #[command(flatten)]
    pub(crate) pool: PoolFlags,
    #[command(flatten)]
    pub(crate) common: Common,
}
