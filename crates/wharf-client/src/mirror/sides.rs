//! The two sides of a mirror, listed: the remote tree (MLSD where offered) and the local
//! one, each entry by its path relative to the mirrored directory, filtered.

use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use wharf_proto::{FileKind, glob};

use super::{Direction, Item, MirrorOptions};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::part::is_part_name;
use crate::tree::{self, TreeReport};

/// Whether the filters take `rel` (a file when `dir` is false).
pub(super) fn wanted(options: &MirrorOptions, rel: &[u8], dir: bool) -> bool {
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
pub(super) async fn list_remote(
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
            if !tree::is_safe_name(&entry.name) || is_part_name(&entry.name) {
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
pub(super) fn list_local(
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
            let partial = direction == Direction::Download && is_part_name(name);
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
