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

use wharf_net::digest::Digest;

use crate::client::{Client, Progress};
use crate::connector::Connector;
use crate::error::{Error, Result};
use crate::pool::{self, Job, JobKind};
use crate::tree::{self, TreeOptions, TreeReport};
use crate::verify;

mod sides;

use sides::{list_local, list_remote};

/// Which way the copy goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Download,
    Upload,
}

impl Direction {
    /// Which way `mirror SRC DST` goes, from which of the two is an `ftp://` URL: the URL, the
    /// local directory and the direction. An upload's source must be a directory.
    pub fn of<'a>(src: &'a str, dst: &'a str) -> Result<(&'a str, PathBuf, Direction)> {
        let (url, local, direction) = match (src.contains("://"), dst.contains("://")) {
            (true, false) => (src, PathBuf::from(dst), Direction::Download),
            (false, true) => (dst, PathBuf::from(src), Direction::Upload),
            _ => {
                return Err(Error::Usage(
                    "mirror needs one ftp:// URL and one local directory".into(),
                ));
            }
        };
        if direction == Direction::Upload && !local.is_dir() {
            return Err(Error::Usage(format!(
                "{}: not a directory",
                local.display()
            )));
        }
        Ok((url, local, direction))
    }
}

/// Settings of a mirror.
#[derive(Debug, Clone, Default)]
pub struct MirrorOptions {
    pub delete: bool,
    pub dry_run: bool,
    pub include: Vec<Vec<u8>>,
    pub exclude: Vec<Vec<u8>>,
    pub tree: TreeOptions,
    /// How two files of the same path are found the same.
    pub compare: Compare,
}

/// How a mirror tells that the destination's file is already the source's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compare {
    /// The same size and modification time (within a second): cheap, and what rsync does.
    #[default]
    SizeTime,
    /// The same size and the same hash (the server's HASH or `X` command against the local
    /// file read whole): finds a change that kept size and time, at the cost of reading every
    /// file of that size on both sides.
    Hash,
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

type Items = BTreeMap<Vec<u8>, Item>;

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
    if options.compare == Compare::Hash && client.hash_command().is_none() {
        return Err(Error::Usage(
            "--compare hash: the server offers no hash command (neither HASH nor XSHA256 and its kin in FEAT)".into(),
        ));
    }
    let remote_items = list_remote(&mut client, remote, options, direction).await?;
    let local_items = match direction {
        Direction::Download if !local.exists() => BTreeMap::new(),
        _ => list_local(local, options, direction, &mut report.transfers)?,
    };
    let (src, dst) = match direction {
        Direction::Download => (&remote_items, &local_items),
        Direction::Upload => (&local_items, &remote_items),
    };
    let mut run = Run {
        client,
        direction,
        remote,
        local,
        options,
        report,
    };
    run.delete_stale(src, dst).await?;
    let (jobs, total) = run.plan(src, dst).await?;
    let Run {
        client, mut report, ..
    } = run;
    if options.dry_run || jobs.is_empty() {
        client.quit().await;
        return Ok(report);
    }
    progress.set_total(total);
    let mut tree_options = options.tree;
    tree_options.mirror = true;
    let before = std::mem::take(&mut report.transfers);
    let mut transfers =
        pool::run_pool(client, connector, jobs, tree_options, progress, before).await?;
    transfers.failures.sort_by(|a, b| a.0.cmp(&b.0));
    report.transfers = transfers;
    Ok(report)
}

/// What the destination has and the source lacks, or has as the other kind: each directory
/// once, without what is under it (it goes whole).
fn stale<'a>(src: &Items, dst: &'a Items) -> Vec<&'a Vec<u8>> {
    let mut doomed: Vec<&Vec<u8>> = Vec::new();
    for (rel, item) in dst {
        let lacks = src.get(rel).is_none_or(|s| s.dir != item.dir);
        // Sorted order puts `a.txt` between `a` and `a/b`: look at every doomed directory.
        let under_doomed = doomed.iter().any(|d| is_under(rel, d));
        if lacks && !under_doomed {
            doomed.push(rel);
        }
    }
    doomed
}

/// One mirror run: its session, its two roots, and what it has done so far.
struct Run<'a> {
    client: Client,
    direction: Direction,
    remote: &'a [u8],
    local: &'a Path,
    options: &'a MirrorOptions,
    report: MirrorReport,
}

impl Run<'_> {
    fn remote_path(&self, rel: &[u8]) -> Vec<u8> {
        if rel.is_empty() {
            self.remote.to_vec()
        } else {
            tree::join_remote(self.remote, rel)
        }
    }

    fn local_path(&self, rel: &[u8]) -> PathBuf {
        self.local.join(OsStr::from_bytes(rel))
    }

    /// A failure of one entry: recorded while the session is in step, else the run's end.
    fn failed(&mut self, rel: &[u8], e: Error) -> Result<()> {
        if !self.client.in_step() {
            return Err(e);
        }
        self.report.transfers.failures.push((shown(rel), e));
        Ok(())
    }

    /// Deletes what the destination has and the source lacks (with `delete`; a kind
    /// conflict is a failure without it), before anything is copied.
    async fn delete_stale(&mut self, src: &Items, dst: &Items) -> Result<()> {
        for rel in stale(src, dst) {
            let conflict = src.contains_key(rel);
            if !self.options.delete {
                if conflict {
                    let why = "a file on one side, a directory on the other (--delete replaces it)";
                    let e = Error::Usage(why.into());
                    self.report.transfers.failures.push((shown(rel), e));
                }
                continue;
            }
            self.report.plan.push(format!("delete {}", shown(rel)));
            if self.options.dry_run {
                self.report.deleted += 1;
                continue;
            }
            match self.delete(rel, dst).await {
                Ok(()) => self.report.deleted += 1,
                Err(e) => self.failed(rel, e)?,
            }
        }
        Ok(())
    }

    async fn delete(&mut self, rel: &[u8], dst: &Items) -> Result<()> {
        let dir = dst.get(rel).is_some_and(|i| i.dir);
        match self.direction {
            Direction::Download => {
                let p = self.local_path(rel);
                if dir {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                }
                .map_err(|e| Error::local(e).at(&p))
            }
            Direction::Upload => {
                let sub: Vec<(Vec<u8>, &Item)> = dst
                    .iter()
                    .filter(|(r, _)| *r == rel || is_under(r, rel))
                    .map(|(r, i)| (self.remote_path(r), i))
                    .collect();
                delete_remote(&mut self.client, &sub).await
            }
        }
    }

    /// Makes the directories the destination lacks (parents first: the map is sorted) and
    /// queues the files that differ; the jobs and their bytes in all.
    async fn plan(&mut self, src: &Items, dst: &Items) -> Result<(VecDeque<Job>, u64)> {
        let (download, dry_run) = (self.direction == Direction::Download, self.options.dry_run);
        if download && !dry_run {
            let local = self.local;
            std::fs::create_dir_all(local).map_err(|e| Error::local(e).at(local))?;
        }
        if !download && !self.remote.is_empty() && !dry_run {
            tree::mkdir_p(&mut self.client, self.remote).await?;
        }
        let mut jobs = VecDeque::new();
        let mut total = 0u64;
        // Local directories that are symbolic links: never written through (they may lead out
        // of the tree), nor anything under them.
        let mut blocked: Vec<&Vec<u8>> = Vec::new();
        for (rel, item) in src {
            if blocked.iter().any(|b| is_under(rel, b)) {
                continue;
            }
            let there = dst.get(rel).filter(|d| d.dir == item.dir);
            let link = std::fs::symlink_metadata(self.local_path(rel))
                .is_ok_and(|m| m.file_type().is_symlink());
            if download && item.dir && link {
                let why = "a symbolic link is where the server has a directory: left alone";
                let e = Error::Usage(why.into());
                self.report.transfers.failures.push((shown(rel), e));
                blocked.push(rel);
            } else if item.dir {
                if there.is_none() {
                    self.make_dir(rel).await?;
                }
            } else if let Some(mtime) = self.differs(rel, item, there).await? {
                self.report.plan.push(match self.direction {
                    Direction::Download => format!("get {} ({})", shown(rel), bytes(item.size)),
                    Direction::Upload => format!("put {} ({})", shown(rel), bytes(item.size)),
                });
                total = total.saturating_add(item.size.unwrap_or(0));
                jobs.push_back(self.job(rel, item, mtime));
            }
        }
        Ok((jobs, total))
    }

    async fn make_dir(&mut self, rel: &[u8]) -> Result<()> {
        self.report.plan.push(format!("mkdir {}", shown(rel)));
        self.report.dirs_made += 1;
        if self.options.dry_run {
            return Ok(());
        }
        let made = match self.direction {
            Direction::Download => {
                let p = self.local_path(rel);
                std::fs::create_dir_all(&p).map_err(|e| Error::local(e).at(&p))
            }
            Direction::Upload => {
                let path = self.remote_path(rel);
                tree::ensure_remote_dir(&mut self.client, &path).await
            }
        };
        match made {
            Ok(()) => Ok(()),
            Err(e) => self.failed(rel, e),
        }
    }

    /// Whether the source's file `rel` must be copied: `None` when the destination's (`there`)
    /// has its size and time (within a second), else `Some` of the time to give the copy.
    /// Without MLST a LIST time is to the minute at best: MDTM is asked before calling two
    /// files the same, and for the time a download gets.
    async fn differs(
        &mut self,
        rel: &[u8],
        item: &Item,
        there: Option<&Item>,
    ) -> Result<Option<Option<i64>>> {
        let mlst = self.client.features().mlst;
        let download = self.direction == Direction::Download;
        let mut mtime = item.mtime;
        let Some(d) = there else {
            if download && !mlst {
                mtime = self.client.mdtm(&self.remote_path(rel)).await?.or(mtime);
            }
            return Ok(Some(mtime));
        };
        let same_size = d.size == item.size;
        if self.options.compare == Compare::Hash {
            if same_size && self.same_hash(rel).await? {
                self.report.up_to_date += 1;
                return Ok(None);
            }
            return Ok(Some(mtime));
        }
        let mut dst_mtime = d.mtime;
        if same_size && !mlst {
            let asked = self.client.mdtm(&self.remote_path(rel)).await?;
            if download {
                mtime = asked.or(mtime);
            } else {
                dst_mtime = asked.or(dst_mtime);
            }
        }
        let same_time = match (mtime, dst_mtime) {
            (Some(a), Some(b)) => (a - b).abs() <= 1,
            _ => false,
        };
        if same_size && same_time {
            self.report.up_to_date += 1;
            return Ok(None);
        }
        Ok(Some(mtime))
    }

    /// Whether the server's hash of `rel` is the local file's (read whole here).
    async fn same_hash(&mut self, rel: &[u8]) -> Result<bool> {
        let Some(how) = self.client.hash_command() else {
            return Ok(false);
        };
        let local = self.local_path(rel);
        let len = std::fs::metadata(&local)
            .map_err(|e| Error::local(e).at(&local))?
            .len();
        let mut digest = Digest::new(how.algorithm());
        verify::hash_prefix(&local, len, &mut digest).await?;
        let remote = self.remote_path(rel);
        let theirs = self.client.hash_with(how, &remote, Some(len)).await?;
        Ok(theirs == digest.finish())
    }

    fn job(&self, rel: &[u8], item: &Item, mtime: Option<i64>) -> Job {
        let (remote, local) = (self.remote_path(rel), self.local_path(rel));
        let kind = match self.direction {
            Direction::Download => JobKind::Download {
                remote,
                local,
                size: item.size,
                mtime,
            },
            Direction::Upload => JobKind::Upload {
                local,
                remote,
                mtime,
            },
        };
        Job {
            kind,
            attempts: 0,
            retries: 0,
            started: false,
        }
    }
}

/// A relative path as text, for the plan and failures.
fn shown(rel: &[u8]) -> String {
    String::from_utf8_lossy(rel).into_owned()
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
async fn delete_remote(client: &mut Client, items: &[(Vec<u8>, &Item)]) -> Result<()> {
    for (path, item) in items {
        if !item.dir {
            client.delete(path).await?;
        }
    }
    for (path, item) in items.iter().rev() {
        if item.dir {
            client.rmdir(path).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::sides::wanted;
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

    fn items(list: &[(&str, bool)]) -> Items {
        list.iter()
            .map(|&(rel, dir)| {
                let item = Item {
                    dir,
                    size: None,
                    mtime: None,
                };
                (rel.as_bytes().to_vec(), item)
            })
            .collect()
    }

    #[test]
    fn stale_entries_once_each() {
        // (source, destination) → what the destination loses
        type Side<'a> = &'a [(&'a str, bool)];
        let cases: [(Side, Side, &[&str]); 4] = [
            (&[("a", false)], &[("a", false), ("b", false)], &["b"]),
            (
                &[("keep", false)],
                &[
                    ("d", true),
                    ("d.txt", false),
                    ("d/x", false),
                    ("keep", false),
                ],
                &["d", "d.txt"],
            ),
            // The other kind on each side goes, and what is under the directory with it.
            (&[("k", true)], &[("k", false)], &["k"]),
            (&[("k", false)], &[("k", true), ("k/y", false)], &["k"]),
        ];
        for (src, dst, want) in cases {
            let (src, dst) = (items(src), items(dst));
            let got: Vec<String> = stale(&src, &dst).into_iter().map(|r| shown(r)).collect();
            assert_eq!(
                got,
                want,
                "{:?}",
                dst.keys().map(|k| shown(k)).collect::<Vec<_>>()
            );
        }
    }
}
