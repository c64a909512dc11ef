//! `wharf mirror SRC DST`: brings a local directory to a remote one or the other way round, by
//! size and modification time. Files that differ are transferred (several sessions at once,
//! `.wharf-part` files of an earlier run continued), times are kept (set locally after a download;
//! MFMT, or vsftpd's two-argument MDTM, after an upload), `delete` removes what the source lacks,
//! and `dry_run` only makes the plan. Filters: a file is taken when it matches an include
//! pattern (or there are none) and no exclude pattern; a directory that matches an exclude
//! pattern is left out whole. Excluded entries are never deleted.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use wharf_proto::{FileKind, glob};

use crate::client::{Client, Progress};
use crate::error::{Error, Result};
use crate::tree::{self, Connector, Job, JobKind, TreeOptions, TreeReport};

/// Which way the copy goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Download,
    Upload,
}

/// Settings of a mirror.
#[derive(Debug, Clone, Default)]
pub struct MirrorOptions {
    pub delete: bool,
    pub dry_run: bool,
    pub include: Vec<Vec<u8>>,
    pub exclude: Vec<Vec<u8>>,
    pub tree: TreeOptions,
}

/// What a mirror did (or, on a dry run, would do).
#[derive(Debug, Default)]
pub struct MirrorReport {
    /// One line per change: `get a/b`, `put a/b`, `mkdir a`, `delete a/c`.
    pub plan: Vec<String>,
    /// Files already the same on both sides.
    pub up_to_date: u64,
    pub deleted: u64,
    pub dirs_made: u64,
    /// The transfers (files, bytes, failures); deletions and mkdirs that failed are there too.
    pub transfers: TreeReport,
}

/// One entry of either side, by its path relative to the mirrored directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Item {
    dir: bool,
    /// `None` when the server did not say (an MLSD line without `size`).
    size: Option<u64>,
    mtime: Option<i64>,
}

/// Runs the mirror between the remote directory `remote` and the local directory `local`.
pub async fn mirror(
    mut client: Client,
    connector: &Connector,
    direction: Direction,
    remote: &[u8],
    local: &Path,
    options: &MirrorOptions,
    progress: Arc<dyn Progress>,
) -> Result<MirrorReport> {
    let mut report = MirrorReport::default();
    let remote_items = list_remote(&mut client, remote, options, direction).await?;
    let local_items = match direction {
        Direction::Download if !local.exists() => BTreeMap::new(),
        _ => list_local(local, options, direction, &mut report.transfers)?,
    };
    let (src, dst) = match direction {
        Direction::Download => (&remote_items, &local_items),
        Direction::Upload => (&local_items, &remote_items),
    };
    let remote_path = |rel: &[u8]| {
        if rel.is_empty() {
            remote.to_vec()
        } else {
            tree::join_remote(remote, rel)
        }
    };
    let local_path = |rel: &[u8]| local.join(OsStr::from_bytes(rel));
    let shown = |rel: &[u8]| String::from_utf8_lossy(rel).into_owned();

    // What the destination has and the source lacks, or has as the other kind: deleted first
    // (with `delete`; a kind conflict is a failure without it). A directory goes whole.
    let mut doomed: Vec<&Vec<u8>> = Vec::new();
    for (rel, item) in dst {
        let lacks = match src.get(rel) {
            None => true,
            Some(s) => s.dir != item.dir,
        };
        // Sorted order puts `a.txt` between `a` and `a/b`: look at every doomed directory.
        let under_doomed = doomed.iter().any(|d| is_under(rel, d));
        if lacks && !under_doomed {
            doomed.push(rel);
        }
    }
    for rel in doomed {
        let conflict = src.contains_key(rel);
        if !options.delete {
            if conflict {
                report.transfers.failures.push((
                    shown(rel),
                    Error::Usage(
                        "a file on one side, a directory on the other (--delete replaces it)"
                            .into(),
                    ),
                ));
            }
            continue;
        }
        report.plan.push(format!("delete {}", shown(rel)));
        if options.dry_run {
            report.deleted += 1;
            continue;
        }
        let dir = dst.get(rel).is_some_and(|i| i.dir);
        let result = match direction {
            Direction::Download => {
                let p = local_path(rel);
                if dir {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                }
                .map_err(|e| Error::local(e).at(&p))
            }
            Direction::Upload => {
                let sub: Vec<(&Vec<u8>, &Item)> = dst
                    .iter()
                    .filter(|(r, _)| *r == rel || is_under(r, rel))
                    .collect();
                delete_remote(&mut client, &sub, &remote_path).await
            }
        };
        match result {
            Ok(()) => report.deleted += 1,
            Err(e) if client.in_step() => report.transfers.failures.push((shown(rel), e)),
            Err(e) => return Err(e),
        }
    }

    // Directories the destination lacks, parents first (the map is sorted).
    if direction == Direction::Download && !options.dry_run {
        std::fs::create_dir_all(local).map_err(|e| Error::local(e).at(local))?;
    }
    if direction == Direction::Upload && !remote.is_empty() && !options.dry_run {
        tree::mkdir_p(&mut client, remote).await?;
    }
    let mut jobs = VecDeque::new();
    let mut total = 0u64;
    // Local directories that are symbolic links: never written through (they may lead out of
    // the tree), nor anything under them.
    let mut blocked: Vec<&Vec<u8>> = Vec::new();
    for (rel, item) in src {
        if blocked.iter().any(|b| is_under(rel, b)) {
            continue;
        }
        let there = dst.get(rel).filter(|d| d.dir == item.dir);
        let link =
            std::fs::symlink_metadata(local_path(rel)).is_ok_and(|m| m.file_type().is_symlink());
        if direction == Direction::Download && item.dir && link {
            report.transfers.failures.push((
                shown(rel),
                Error::Usage(
                    "a symbolic link is where the server has a directory: left alone".into(),
                ),
            ));
            blocked.push(rel);
            continue;
        }
        if item.dir {
            if there.is_some() {
                continue;
            }
            report.plan.push(format!("mkdir {}", shown(rel)));
            report.dirs_made += 1;
            if options.dry_run {
                continue;
            }
            let made = match direction {
                Direction::Download => {
                    let p = local_path(rel);
                    std::fs::create_dir_all(&p).map_err(|e| Error::local(e).at(&p))
                }
                Direction::Upload => tree::ensure_remote_dir(&mut client, &remote_path(rel)).await,
            };
            if let Err(e) = made {
                if !client.in_step() {
                    return Err(e);
                }
                report.transfers.failures.push((shown(rel), e));
            }
            continue;
        }
        let mut mtime = item.mtime;
        if let Some(d) = there {
            let same_size = d.size == item.size;
            if same_size && direction == Direction::Download && !client.features().mlst {
                // A LIST time is to the minute at best: ask MDTM before calling it the same.
                mtime = client.mdtm(&remote_path(rel)).await?.or(mtime);
            }
            let dst_mtime =
                if same_size && direction == Direction::Upload && !client.features().mlst {
                    client.mdtm(&remote_path(rel)).await?.or(d.mtime)
                } else {
                    d.mtime
                };
            let same_time = match (mtime, dst_mtime) {
                (Some(a), Some(b)) => (a - b).abs() <= 1,
                _ => false,
            };
            if same_size && same_time {
                report.up_to_date += 1;
                continue;
            }
        } else if direction == Direction::Download && !client.features().mlst {
            mtime = client.mdtm(&remote_path(rel)).await?.or(mtime);
        }
        report.plan.push(match direction {
            Direction::Download => format!("get {} ({})", shown(rel), bytes(item.size)),
            Direction::Upload => format!("put {} ({})", shown(rel), bytes(item.size)),
        });
        total = total.saturating_add(item.size.unwrap_or(0));
        jobs.push_back(Job {
            kind: match direction {
                Direction::Download => JobKind::Download {
                    remote: remote_path(rel),
                    local: local_path(rel),
                    size: item.size,
                    mtime,
                },
                Direction::Upload => JobKind::Upload {
                    local: local_path(rel),
                    remote: remote_path(rel),
                    mtime,
                },
            },
            attempts: 0,
            retries: 0,
            started: false,
        });
    }
    if options.dry_run || jobs.is_empty() {
        client.quit().await;
        return Ok(report);
    }
    progress.set_total(total);
    let mut tree_options = options.tree;
    tree_options.mirror = true;
    let before = std::mem::take(&mut report.transfers);
    let mut transfers =
        tree::run_pool(client, connector, jobs, tree_options, progress, before).await?;
    transfers.failures.sort_by(|a, b| a.0.cmp(&b.0));
    report.transfers = transfers;
    Ok(report)
}

/// `12 bytes`, or `size unknown`.
fn bytes(size: Option<u64>) -> String {
    size.map_or_else(|| "size unknown".into(), |s| format!("{s} bytes"))
}

/// `rel` is inside the directory `dir` (both relative paths).
fn is_under(rel: &[u8], dir: &[u8]) -> bool {
    rel.len() > dir.len() && rel.starts_with(dir) && rel.get(dir.len()) == Some(&b'/')
}

/// Deletes a remote subtree (`items`: the entry and everything under it, sorted): files first,
/// then directories deepest first.
async fn delete_remote(
    client: &mut Client,
    items: &[(&Vec<u8>, &Item)],
    remote_path: &impl Fn(&[u8]) -> Vec<u8>,
) -> Result<()> {
    for (rel, item) in items {
        if !item.dir {
            client.delete(&remote_path(rel)).await?;
        }
    }
    for (rel, item) in items.iter().rev() {
        if item.dir {
            client.rmdir(&remote_path(rel)).await?;
        }
    }
    Ok(())
}

/// Whether the filters take `rel` (a file when `dir` is false).
fn wanted(options: &MirrorOptions, rel: &[u8], dir: bool) -> bool {
    let name = rel.rsplit(|&b| b == b'/').next().unwrap_or(rel);
    let hit = |pattern: &Vec<u8>| {
        if pattern.contains(&b'/') {
            let (p, r): (Vec<&[u8]>, Vec<&[u8]>) = (
                pattern.split(|&b| b == b'/').collect(),
                rel.split(|&b| b == b'/').collect(),
            );
            p.len() == r.len() && p.iter().zip(&r).all(|(p, r)| glob::matches(p, r))
        } else {
            glob::matches(pattern, name)
        }
    };
    if options.exclude.iter().any(hit) {
        return false;
    }
    dir || options.include.is_empty() || options.include.iter().any(hit)
}

/// The remote tree under `root` (MLSD or LIST), by relative path. A root that does not exist is
/// an empty tree when uploading (it is created), an error when downloading.
async fn list_remote(
    client: &mut Client,
    root: &[u8],
    options: &MirrorOptions,
    direction: Direction,
) -> Result<BTreeMap<Vec<u8>, Item>> {
    let mut items = BTreeMap::new();
    let mut dirs: Vec<(Vec<u8>, usize)> = vec![(Vec::new(), 0)];
    while let Some((rel, depth)) = dirs.pop() {
        let path = if rel.is_empty() {
            root.to_vec()
        } else {
            tree::join_remote(root, &rel)
        };
        let entries = match client.list(&path).await {
            Ok(e) => e,
            // A destination that is not there yet (550, or pyftpdlib's 501) is empty: the
            // upload creates it.
            Err(e)
                if rel.is_empty()
                    && direction == Direction::Upload
                    && e.reply_code().is_some()
                    && client.in_step() =>
            {
                if client.is_dir(&path).await? {
                    return Err(e);
                }
                return Ok(items);
            }
            Err(e) => return Err(e),
        };
        for entry in entries {
            // Unsafe names never; a name like a partial download's would be taken for one.
            if !tree::is_safe_name(&entry.name) || tree::is_part_name(&entry.name) {
                continue;
            }
            let child = tree::join_remote(&rel, &entry.name);
            let dir = match entry.kind {
                FileKind::Dir => true,
                FileKind::File => false,
                FileKind::Symlink | FileKind::Other => continue,
            };
            if !wanted(options, &child, dir) {
                continue;
            }
            if dir && depth < 64 {
                dirs.push((child.clone(), depth + 1));
            }
            items.insert(
                child,
                Item {
                    dir,
                    size: entry.size,
                    mtime: entry.mtime,
                },
            );
        }
    }
    Ok(items)
}

/// The local tree under `root`, by relative path: directories and regular files (a symbolic
/// link to a file inside the tree counts as that file; others are skipped, with a note), and
/// not the `.wharf-part` files of downloads in progress.
fn list_local(
    root: &Path,
    options: &MirrorOptions,
    direction: Direction,
    report: &mut TreeReport,
) -> Result<BTreeMap<Vec<u8>, Item>> {
    let canonical = std::fs::canonicalize(root).map_err(|e| Error::local(e).at(root))?;
    let mut items = BTreeMap::new();
    let mut dirs: Vec<(PathBuf, Vec<u8>)> = vec![(root.to_path_buf(), Vec::new())];
    while let Some((dir, rel)) = dirs.pop() {
        let read = std::fs::read_dir(&dir).map_err(|e| Error::local(e).at(&dir))?;
        for entry in read {
            let entry = entry.map_err(|e| Error::local(e).at(&dir))?;
            let name = entry.file_name();
            let name = name.as_bytes();
            let partial = direction == Direction::Download && tree::is_part_name(name);
            if partial || name.iter().any(|&b| b == b'\r' || b == b'\n') {
                continue;
            }
            let child = tree::join_remote(&rel, name);
            let path = entry.path();
            let Ok(link_meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if link_meta.file_type().is_symlink() {
                let inside = std::fs::canonicalize(&path).is_ok_and(|t| t.starts_with(&canonical));
                if !inside && !options.tree.follow_links {
                    report.skipped.push(format!(
                        "{}: a symbolic link leading out of the tree (--follow-links uploads what it points to)",
                        path.display()
                    ));
                    continue;
                }
            }
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let dir = meta.is_dir();
            if !(dir || meta.is_file()) || (dir && link_meta.file_type().is_symlink()) {
                continue;
            }
            if !wanted(options, &child, dir) {
                continue;
            }
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .and_then(|d| i64::try_from(d.as_secs()).ok());
            if dir {
                dirs.push((path, child.clone()));
            }
            items.insert(
                child,
                Item {
                    dir,
                    size: (!dir).then_some(meta.len()),
                    mtime,
                },
            );
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        let o = MirrorOptions {
            include: vec![b"*.log".to_vec()],
            exclude: vec![b"tmp".to_vec(), b"a/*.log".to_vec()],
            ..MirrorOptions::default()
        };
        assert!(wanted(&o, b"x/y.log", false));
        assert!(!wanted(&o, b"x/y.txt", false));
        assert!(wanted(&o, b"x", true));
        assert!(!wanted(&o, b"tmp", true));
        assert!(!wanted(&o, b"a/b.log", false));
        assert!(is_under(b"a/b", b"a") && !is_under(b"ab", b"a") && !is_under(b"a", b"a"));
    }
}
