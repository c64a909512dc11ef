//! Whole trees both ways: the listing walk (remote) or directory walk (local) that makes the
//! directories and queues the files, which the pool then transfers.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use wharf_proto::FileKind;

use wharf_proto::HashAlgorithm;

use crate::client::{Client, Progress};
use crate::connector::Connector;
use crate::error::{Error, Result};
use crate::part::{PART_SUFFIX, is_part_name};
use crate::pool::{Job, JobKind, run_pool};
use crate::verify::Verify;

/// Settings of a recursive copy.
#[derive(Debug, Clone, Copy)]
pub struct TreeOptions {
    /// Sessions working at once (at least 1).
    pub parallel: usize,
    /// Resume files that are partly there instead of transferring them again.
    pub resume: bool,
    /// Further tries of a file whose transfer broke (network, timeout, a transient 4xx), each
    /// on a new session after a pause (1, 2, 4 … 30 s) and resumed from where it stopped. With
    /// 0, a file whose session broke still gets one more try at once.
    pub retries: u32,
    /// `upload_tree`: follow symbolic links that lead out of the tree (else they are skipped
    /// with a warning).
    pub follow_links: bool,
    /// Downloads continue `.part` files left by an earlier run (mirror).
    pub mirror: bool,
    /// Each file compared with the server's hash (`--verify`).
    pub verify: Verify,
}

impl Default for TreeOptions {
    fn default() -> TreeOptions {
        TreeOptions {
            parallel: 2,
            resume: false,
            retries: 0,
            follow_links: false,
            mirror: false,
            verify: Verify::Off,
        }
    }
}

/// What a recursive copy did.
#[derive(Debug, Default)]
pub struct TreeReport {
    pub files: u64,
    pub already_complete: u64,
    pub bytes: u64,
    /// Files that failed, with why. The others were copied.
    pub failures: Vec<(String, Error)>,
    /// Entries left alone (symbolic links, special files, unsafe names), with why.
    pub skipped: Vec<String>,
    /// Sessions that worked at once (fewer than asked when the server limits connections).
    pub sessions: usize,
    /// Files checked against the server's hash (`--verify`), and the algorithm used.
    pub verified: u64,
    pub verified_by: Option<HashAlgorithm>,
    /// Files `--verify` could not check (without `=required`), and why.
    pub unverified: u64,
    pub unverified_why: Option<&'static str>,
}

/// Copies the remote directory `remote` into the local directory `local` (created if missing):
/// lists the tree with `client` (MLSD where offered, else LIST), creates the directories, then
/// transfers the files over up to `options.parallel` sessions.
pub async fn download_tree(
    mut client: Client,
    connector: &Connector,
    remote: &[u8],
    local: &Path,
    options: TreeOptions,
    progress: Arc<dyn Progress>,
) -> Result<TreeReport> {
    let mut report = TreeReport::default();
    let mut jobs = VecDeque::new();
    let mut total = 0u64;
    let mut seen = std::collections::HashSet::new();
    std::fs::create_dir_all(local).map_err(|e| Error::local(e).at(local))?;
    let mut dirs = vec![(remote.to_vec(), local.to_path_buf(), 0usize)];
    while let Some((rdir, ldir, depth)) = dirs.pop() {
        let shown_dir = String::from_utf8_lossy(&rdir).into_owned();
        // The top directory must list; a subdirectory that does not is one failure among others.
        let entries = match client.list(&rdir).await {
            Ok(entries) => entries,
            Err(e) if depth == 0 || !client.in_step() => return Err(e),
            Err(e) => {
                report.failures.push((shown_dir, e));
                continue;
            }
        };
        for entry in entries {
            let rpath = join_remote(&rdir, &entry.name);
            let shown = String::from_utf8_lossy(&rpath).into_owned();
            if !is_safe_name(&entry.name) {
                client.log_status(format!("Skipping {shown:?}: not a safe local file name"));
                report.skipped.push(format!("{shown}: unsafe name"));
                continue;
            }
            if is_part_name(&entry.name) {
                report.skipped.push(format!(
                    "{shown}: named like a partial download ({PART_SUFFIX})"
                ));
                continue;
            }
            let lpath = ldir.join(OsStr::from_bytes(&entry.name));
            if !seen.insert(lpath.clone()) {
                report.skipped.push(format!("{shown}: listed twice"));
                continue;
            }
            match entry.kind {
                FileKind::Dir if depth >= MAX_DEPTH => {
                    // Deeper than any real tree: a symbolic link loop shown as a directory.
                    report
                        .skipped
                        .push(format!("{shown}: deeper than {MAX_DEPTH} levels"));
                }
                FileKind::Dir => {
                    match std::fs::create_dir(&lpath) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && lpath.is_dir() => {}
                        Err(e) => {
                            report.failures.push((shown, Error::local(e).at(&lpath)));
                            continue;
                        }
                    }
                    dirs.push((rpath, lpath, depth + 1));
                }
                FileKind::File => {
                    total = total.saturating_add(entry.size.unwrap_or(0));
                    jobs.push_back(Job {
                        kind: JobKind::Download {
                            remote: rpath,
                            local: lpath,
                            size: entry.size,
                            mtime: None,
                        },
                        attempts: 0,
                        retries: 0,
                        started: false,
                    });
                }
                FileKind::Symlink | FileKind::Other => {
                    client.log_status(format!("Skipping {shown}: not a regular file"));
                    report.skipped.push(format!("{shown}: not a regular file"));
                }
            }
        }
    }
    progress.set_total(total);
    run_pool(client, connector, jobs, options, progress, report).await
}

/// Downloads a list of files (`remote`, `local`, size if known) over up to `options.parallel`
/// sessions: what `get` of a pattern does.
pub async fn download_files(
    client: Client,
    connector: &Connector,
    files: Vec<(Vec<u8>, PathBuf, Option<u64>)>,
    options: TreeOptions,
    progress: Arc<dyn Progress>,
) -> Result<TreeReport> {
    let total = files.iter().map(|f| f.2.unwrap_or(0)).sum();
    let jobs = files
        .into_iter()
        .map(|(remote, local, size)| Job {
            kind: JobKind::Download {
                remote,
                local,
                size,
                mtime: None,
            },
            attempts: 0,
            retries: 0,
            started: false,
        })
        .collect();
    progress.set_total(total);
    run_pool(
        client,
        connector,
        jobs,
        options,
        progress,
        TreeReport::default(),
    )
    .await
}

/// Deepest directory level a recursive copy descends to.
const MAX_DEPTH: usize = 64;

/// Copies the local directory `local` into the remote directory `remote` (created if missing).
/// Symbolic links to files are followed; links to directories and special files are skipped.
pub async fn upload_tree(
    mut client: Client,
    connector: &Connector,
    local: &Path,
    remote: &[u8],
    options: TreeOptions,
    progress: Arc<dyn Progress>,
) -> Result<TreeReport> {
    let mut report = TreeReport::default();
    let mut jobs = VecDeque::new();
    let mut total = 0u64;
    if !remote.is_empty() {
        ensure_remote_dir(&mut client, remote).await?;
    }
    let root = std::fs::canonicalize(local).map_err(|e| Error::local(e).at(local))?;
    let mut dirs = vec![(local.to_path_buf(), remote.to_vec())];
    while let Some((ldir, rdir)) = dirs.pop() {
        let read = std::fs::read_dir(&ldir).and_then(|d| d.collect::<io::Result<Vec<_>>>());
        let mut entries = match read {
            Ok(entries) => entries,
            Err(e) if ldir == local => return Err(Error::local(e).at(&ldir)),
            Err(e) => {
                let shown = ldir.display().to_string();
                report.failures.push((shown, Error::local(e).at(&ldir)));
                continue;
            }
        };
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name();
            let lpath = entry.path();
            let rpath = join_remote(&rdir, name.as_bytes());
            if name.as_bytes().iter().any(|&b| b == b'\r' || b == b'\n') {
                report
                    .skipped
                    .push(format!("{}: name has CR or LF", lpath.display()));
                continue;
            }
            let meta = match std::fs::symlink_metadata(&lpath) {
                Ok(m) => m,
                Err(e) => {
                    let shown = lpath.display().to_string();
                    report.failures.push((shown, Error::local(e).at(&lpath)));
                    continue;
                }
            };
            let file_type = meta.file_type();
            if file_type.is_symlink() && !options.follow_links {
                let inside = std::fs::canonicalize(&lpath).is_ok_and(|t| t.starts_with(&root));
                if !inside {
                    client.log_status(format!(
                        "Skipping {}: a symbolic link leading out of the tree",
                        lpath.display()
                    ));
                    report.skipped.push(format!(
                        "{}: a symbolic link leading out of the tree (--follow-links uploads what it points to)",
                        lpath.display()
                    ));
                    continue;
                }
            }
            if file_type.is_dir() {
                match ensure_remote_dir(&mut client, &rpath).await {
                    Ok(()) => dirs.push((lpath, rpath)),
                    Err(e) if client.in_step() => {
                        let shown = String::from_utf8_lossy(&rpath).into_owned();
                        report.failures.push((shown, e));
                    }
                    Err(e) => return Err(e),
                }
            } else if let Some(target) = (file_type.is_file() || file_type.is_symlink())
                .then(|| lpath.metadata().ok())
                .flatten()
                .filter(|m| m.is_file())
            {
                // A file, or a symbolic link to one (followed).
                total = total.saturating_add(target.len());
                jobs.push_back(Job {
                    kind: JobKind::Upload {
                        local: lpath,
                        remote: rpath,
                        mtime: None,
                    },
                    attempts: 0,
                    retries: 0,
                    started: false,
                });
            } else {
                client.log_status(format!("Skipping {}: not a regular file", lpath.display()));
                report
                    .skipped
                    .push(format!("{}: not a regular file", lpath.display()));
            }
        }
    }
    progress.set_total(total);
    run_pool(client, connector, jobs, options, progress, report).await
}

/// MKD of each missing directory along `path` (`mkdir -p`): a component that exists already
/// is passed.
pub async fn mkdir_p(client: &mut Client, path: &[u8]) -> Result<()> {
    let mut prefix = Vec::new();
    if path.starts_with(b"/") {
        prefix.push(b'/');
    }
    for component in path.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
        if !prefix.is_empty() && !prefix.ends_with(b"/") {
            prefix.push(b'/');
        }
        prefix.extend_from_slice(component);
        if component == b"." || component == b".." {
            continue;
        }
        ensure_remote_dir(client, &prefix).await?;
    }
    Ok(())
}

/// The directory part of a remote path (`a/b/c` → `a/b`; `c` → empty, the login directory).
pub fn remote_parent(path: &[u8]) -> &[u8] {
    match path.iter().rposition(|&b| b == b'/') {
        Some(0) => b"/",
        Some(i) => path.get(..i).unwrap_or_default(),
        None => b"",
    }
}

/// MKD, and when that is refused, whether the directory is there already.
pub(crate) async fn ensure_remote_dir(client: &mut Client, path: &[u8]) -> Result<()> {
    match client.mkdir(path).await {
        Ok(()) => Ok(()),
        Err(e) if client.in_step() => {
            if client.is_dir(path).await? {
                Ok(())
            } else {
                Err(e)
            }
        }
        Err(e) => Err(e),
    }
}
/// and no NUL. A hostile server cannot write outside the target directory with it.
pub fn is_safe_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.iter().any(|&b| b == b'/' || b == 0)
}

/// `dir/name`, or `name` when `dir` is empty (the login directory).
pub fn join_remote(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = dir.to_vec();
    if !out.is_empty() && !out.ends_with(b"/") {
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// `1 session`, `2 sessions`.
pub fn plural(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_names_refused() {
        for bad in [&b""[..], b".", b"..", b"../x", b"a/b", b"/etc", b"a\0b"] {
            assert!(!is_safe_name(bad), "{bad:?}");
        }
        assert!(is_safe_name(b"..."));
        assert!(is_safe_name(b"a b\\c"));
    }

    #[test]
    fn joins() {
        assert_eq!(join_remote(b"", b"a"), b"a");
        assert_eq!(join_remote(b"pub", b"a"), b"pub/a");
        assert_eq!(join_remote(b"/", b"a"), b"/a");
    }
}
