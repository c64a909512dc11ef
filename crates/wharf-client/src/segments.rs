//! One large file over several sessions at once (`get --segments N`): each session fetches one
//! byte range (REST + RETR, the data connection closed at the range's end), written in place
//! into `NAME.wharf-segments` at its offset; the file replaces `NAME` once every range is
//! complete and its size is the server's. That file has holes until then, so it is never
//! the partial file that `-c` continues: it is removed when the download fails or is stopped.

use std::collections::VecDeque;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncSeekExt;

use crate::client::{Client, Progress};
use crate::connector::Connector;
use crate::error::{Error, Result};
use crate::part::Counting;
use crate::retry::RetryPolicy;

/// Smallest range worth a session of its own.
const MIN_SEGMENT: u64 = 1024 * 1024;

/// What a segmented download did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentReport {
    pub bytes: u64,
    /// Ranges the file was cut into.
    pub segments: usize,
    /// Sessions that worked at once (fewer than asked when the server limits connections).
    pub sessions: usize,
}

/// A byte range still to fetch.
#[derive(Debug, Clone, Copy)]
struct Range {
    offset: u64,
    len: u64,
    /// Tries that failed and were given another.
    retries: u32,
}

/// How to cut a download.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// The file's size (SIZE).
    pub size: u64,
    /// Ranges (and sessions) wanted; fewer for a file under 1 MiB a range.
    pub segments: usize,
    /// Further tries of a range whose transfer broke.
    pub retries: u32,
}

/// Downloads `remote`, `plan.size` bytes, to `local` over up to `plan.segments` sessions
/// (`first` and more from `connector`). A range whose transfer breaks is tried again from
/// where it stopped, `plan.retries` times, on a new session. A download that fails or is
/// dropped (Ctrl-C) leaves nothing behind.
pub async fn download(
    first: Client,
    connector: &Connector,
    remote: &[u8],
    local: &Path,
    plan: Plan,
    progress: Arc<dyn Progress>,
) -> Result<SegmentReport> {
    let Plan {
        size,
        segments,
        retries,
    } = plan;
    let ranges = cut(size, segments);
    let count = ranges.len();
    let part = {
        let mut name = local.file_name().unwrap_or_default().to_os_string();
        name.push(".wharf-segments");
        local.with_file_name(name)
    };
    let mut guard = RemoveOnDrop(Some(part.clone()));
    let file = create(&part, size).map_err(|e| Error::local(e).at(local))?;
    let clients = open_sessions(first, connector, count).await;
    let sessions = clients.len();
    let queue = Arc::new(Mutex::new(ranges));
    let failure: Arc<Mutex<Option<Error>>> = Arc::new(Mutex::new(None));
    // Dropped (Ctrl-C, a caller giving up): the tasks stop with it.
    let mut tasks = AbortOnDrop(Vec::new());
    for client in clients {
        // Its own open file (not a dup): each task seeks its own offset.
        let handle = std::fs::File::options()
            .write(true)
            .open(&part)
            .map_err(|e| Error::local(e).at(local))?;
        let (queue, failure, progress) = (queue.clone(), failure.clone(), progress.clone());
        let (connector, remote) = (connector.clone(), remote.to_vec());
        tasks.0.push(tokio::spawn(async move {
            let result = worker(
                client, &connector, &remote, handle, &queue, retries, &*progress,
            )
            .await;
            if let Err(e) = result {
                if let Ok(mut f) = failure.lock() {
                    f.get_or_insert(e);
                }
                // The others stop at their next range.
                if let Ok(mut q) = queue.lock() {
                    q.clear();
                }
            }
        }));
    }
    for task in tasks.0.iter_mut() {
        if let Err(e) = task.await {
            return Err(Error::Protocol(format!("a segment task failed: {e}")));
        }
    }
    let failed = failure.lock().ok().and_then(|mut f| f.take());
    let checked = match failed {
        Some(e) => Err(e),
        None => check_assembled(&file, local, size),
    };
    drop(file);
    checked?;
    std::fs::rename(&part, local).map_err(|e| Error::local(e).at(local))?;
    guard.0 = None;
    Ok(SegmentReport {
        bytes: size,
        segments: count,
        sessions,
    })
}

/// `size` bytes cut into `segments` ranges, fewer when a range would be under
/// [`MIN_SEGMENT`]; the last range takes what the division leaves.
fn cut(size: u64, segments: usize) -> VecDeque<Range> {
    let most = usize::try_from(size / MIN_SEGMENT).unwrap_or(usize::MAX);
    let count = segments.clamp(1, most.max(1)) as u64;
    (0..count)
        .map(|i| {
            let offset = size / count * i;
            let end = if i + 1 == count {
                size
            } else {
                size / count * (i + 1)
            };
            Range {
                offset,
                len: end - offset,
                retries: 0,
            }
        })
        .collect()
}

/// The file the ranges are written into, `size` bytes long (holes until they come); never
/// through a symbolic link planted there.
fn create(part: &Path, size: u64) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(part)?;
    file.set_len(size)?;
    Ok(file)
}

/// `first` and up to `count - 1` more sessions: fewer when the server turns one away.
async fn open_sessions(first: Client, connector: &Connector, count: usize) -> Vec<Client> {
    let mut clients = vec![first];
    while clients.len() < count {
        match connector.open().await {
            Ok(c) => clients.push(c),
            Err(e) => {
                connector.log_status(format!(
                    "Could not open session {} ({e}); going on with {}",
                    clients.len() + 1,
                    clients.len()
                ));
                break;
            }
        }
    }
    clients
}

/// The assembled file must have the server's size: a range cut short would leave a hole.
fn check_assembled(file: &std::fs::File, local: &Path, size: u64) -> Result<()> {
    let len = file
        .sync_all()
        .and_then(|()| file.metadata())
        .map_err(|e| Error::local(e).at(local))?
        .len();
    if len != size {
        return Err(Error::Protocol(format!(
            "{}: assembled {len} bytes, but the file has {size}",
            local.display()
        )));
    }
    Ok(())
}

/// Takes ranges from the queue until it is empty; a range that breaks goes back with what is
/// left of it.
async fn worker(
    first: Client,
    connector: &Connector,
    remote: &[u8],
    file: std::fs::File,
    queue: &Mutex<VecDeque<Range>>,
    retries: u32,
    progress: &dyn Progress,
) -> Result<()> {
    let mut client = Some(first);
    let mut file = tokio::fs::File::from_std(file);
    while let Some(range) = queue.lock().ok().and_then(|mut q| q.pop_front()) {
        let session = match client.as_mut() {
            Some(c) => c,
            None => client.insert(connector.open().await?),
        };
        file.seek(io::SeekFrom::Start(range.offset))
            .await
            .map_err(Error::local)?;
        let mut out = Counting::new(&mut file);
        let result = session
            .retrieve_range(remote, range.offset, range.len, &mut out, progress)
            .await;
        let written = out.written;
        match result {
            Ok(n) if n == range.len => {}
            Ok(n) => {
                return Err(Error::Protocol(format!(
                    "{}: the file ended {} bytes into a range of {}: it changed on the server",
                    String::from_utf8_lossy(remote),
                    n,
                    range.len
                )));
            }
            Err(e) => {
                let Some(wait) = RetryPolicy::new(retries).again(&e, range.retries, true) else {
                    return Err(e);
                };
                let next = Range {
                    offset: range.offset + written,
                    len: range.len - written.min(range.len),
                    retries: range.retries + 1,
                };
                session.log_status(format!(
                    "Range at {}: {e}; trying again from {} in {} s",
                    range.offset,
                    next.offset,
                    wait.as_secs()
                ));
                if let Some(c) = client.take() {
                    c.quit().await;
                }
                tokio::time::sleep(wait).await;
                if let Ok(mut q) = queue.lock() {
                    q.push_back(next);
                }
                continue;
            }
        }
        if !session.in_step() {
            client = None;
        }
    }
    if let Some(c) = client {
        c.quit().await;
    }
    Ok(())
}

/// Aborts its tasks when dropped.
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Removes a file when dropped (a failed or interrupted download), unless disarmed.
struct RemoveOnDrop(Option<std::path::PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_file_once() {
        // (size, segments asked) → lengths of the ranges
        let mib = MIN_SEGMENT;
        let cases: [(u64, usize, &[u64]); 5] = [
            (10, 4, &[10]),
            (2 * mib, 4, &[mib, mib]),
            (3 * mib + 1, 2, &[3 * mib / 2, 3 * mib / 2 + 1]),
            (8 * mib, 0, &[8 * mib]),
            (0, 3, &[0]),
        ];
        for (size, segments, want) in cases {
            let ranges = cut(size, segments);
            let lens: Vec<u64> = ranges.iter().map(|r| r.len).collect();
            assert_eq!(lens, want, "{size} in {segments}");
            let mut at = 0;
            for r in &ranges {
                assert_eq!(r.offset, at);
                at += r.len;
            }
            assert_eq!(at, size);
        }
    }
}
