//! The transfer log in the xferlog format that wu-ftpd, ProFTPD, vsftpd and Pure-FTPd write, so
//! that existing analyzers read it: one line per file transfer,
//!
//! ```text
//! Wed Dec  2 04:50:29 2026 1 192.0.2.7 1048576 /pub/file.bin b _ o r alice ftp 0 * c
//! ```
//!
//! current time (UTC), transfer seconds (at least 1), client address, bytes, absolute virtual
//! path (whitespace as `_`, so that the fields stay apart), `a`/`b` (TYPE A or I), `_` (no
//! special action), `o`/`i` (to the client / from it), `a`/`r` (anonymous or real user), the
//! user name, `ftp`, `0` (no RFC 931 check), `*`, `c`/`i` (complete or incomplete).
//!
//! The file is opened in append mode; [`reopen_all`] (on SIGUSR1, after logrotate moved it)
//! opens every transfer log again at its path.

use std::fs::File;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

/// One transfer, as the xferlog line tells it.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// When it ended, seconds since the Unix epoch.
    pub unix_time: i64,
    pub secs: u64,
    pub host: IpAddr,
    pub bytes: u64,
    pub path: &'a str,
    pub ascii: bool,
    /// From the client (an upload).
    pub incoming: bool,
    pub anonymous: bool,
    pub user: &'a str,
    pub complete: bool,
}

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `ctime(3)`'s form, in UTC: `Wed Dec  2 04:50:29 2026`.
fn ctime(unix: i64) -> String {
    let t = wharf_proto::UtcTime::from_unix(unix);
    let weekday = DAYS
        .get(unix.div_euclid(86_400).rem_euclid(7) as usize)
        .unwrap_or(&"???");
    let month = MONTHS
        .get(t.month.saturating_sub(1) as usize)
        .unwrap_or(&"???");
    format!(
        "{weekday} {month} {:>2} {:02}:{:02}:{:02} {}",
        t.day, t.hour, t.minute, t.second, t.year
    )
}

/// A field without whitespace (which would split it) or control characters.
fn field(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect()
}

/// The xferlog line of `e`, without the newline.
pub fn line(e: &Entry<'_>) -> String {
    format!(
        "{} {} {} {} {} {} _ {} {} {} ftp 0 * {}",
        ctime(e.unix_time),
        e.secs.max(1),
        e.host,
        e.bytes,
        field(e.path),
        if e.ascii { 'a' } else { 'b' },
        if e.incoming { 'i' } else { 'o' },
        if e.anonymous { 'a' } else { 'r' },
        field(e.user),
        if e.complete { 'c' } else { 'i' },
    )
}

/// An open transfer log.
#[derive(Debug)]
pub struct XferLog {
    path: PathBuf,
    file: Mutex<File>,
}

/// Every transfer log of the process, for [`reopen_all`].
static OPEN: Mutex<Vec<Weak<XferLog>>> = Mutex::new(Vec::new());

fn open_append(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

impl XferLog {
    /// Opens (creates) `path` for appending.
    pub fn open(path: &Path) -> std::io::Result<Arc<XferLog>> {
        let log = Arc::new(XferLog {
            path: path.to_path_buf(),
            file: Mutex::new(open_append(path)?),
        });
        let mut open = OPEN.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|w| w.strong_count() > 0);
        open.push(Arc::downgrade(&log));
        Ok(log)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line (a failed write is reported once to the caller, who logs it).
    pub fn record(&self, e: &Entry<'_>) -> std::io::Result<()> {
        let mut text = line(e);
        text.push('\n');
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(text.as_bytes())
    }

    /// Opens the file at its path again (logrotate moved the old one away).
    pub fn reopen(&self) -> std::io::Result<()> {
        let fresh = open_append(&self.path)?;
        *self.file.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }
}

/// Reopens every transfer log of the process; the errors, by path.
pub fn reopen_all() -> Vec<(PathBuf, std::io::Error)> {
    let logs: Vec<Arc<XferLog>> = OPEN
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    logs.iter()
        .filter_map(|l| l.reopen().err().map(|e| (l.path.clone(), e)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_in_the_xferlog_format() {
        let e = Entry {
            unix_time: 1_796_185_829, // 2026-12-02 04:30:29 UTC, a Wednesday
            secs: 0,
            host: "192.0.2.7".parse().unwrap(),
            bytes: 1_048_576,
            path: "/pub/my file.bin",
            ascii: false,
            incoming: false,
            anonymous: false,
            user: "alice",
            complete: true,
        };
        assert_eq!(
            line(&e),
            "Wed Dec  2 04:30:29 2026 1 192.0.2.7 1048576 /pub/my_file.bin b _ o r alice ftp 0 * c"
        );
        let up = Entry {
            incoming: true,
            anonymous: true,
            complete: false,
            ascii: true,
            secs: 12,
            user: "anonymous",
            ..e
        };
        assert!(
            line(&up)
                .ends_with(" 12 192.0.2.7 1048576 /pub/my_file.bin a _ i a anonymous ftp 0 * i")
        );
        assert_eq!(ctime(0), "Thu Jan  1 00:00:00 1970");
    }
}
