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
use crate::error::{Error, Result};
use crate::tree::{self, Connector};

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
    let count = segments.clamp(
        1,
        usize::try_from(size / MIN_SEGMENT)
            .unwrap_or(usize::MAX)
            .max(1),
    );
    let count64 = count as u64;
    let mut ranges = VecDeque::new();
    for i in 0..count64 {
        let offset = size / count64 * i;
        let end = if i + 1 == count64 {
            size
        } else {
            size / count64 * (i + 1)
        };
        ranges.push_back(Range {
            offset,
            len: end - offset,
            retries: 0,
        });
    }
    let part = {
        let mut name = local.file_name().unwrap_or_default().to_os_string();
        name.push(".wharf-segments");
        local.with_file_name(name)
    };
    let mut guard = RemoveOnDrop(Some(part.clone()));
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::File::options()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&part)
            .map_err(|e| Error::local(e).at(local))?
    };
    file.set_len(size).map_err(|e| Error::local(e).at(local))?;
    let mut clients = vec![first];
    while clients.len() < count {
        match connector.open().await {
            Ok(c) => clients.push(c),
            Err(e) => {
                connector.options.log(crate::LogLine::Status(format!(
                    "Could not open session {} ({e}); going on with {}",
                    clients.len() + 1,
                    clients.len()
                )));
                break;
            }
        }
    }
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
        None => file
            .sync_all()
            .and_then(|()| file.metadata())
            .map_err(|e| Error::local(e).at(local))
            .and_then(|m| {
                if m.len() == size {
                    Ok(())
                } else {
                    Err(Error::Protocol(format!(
                        "{}: assembled {} bytes, but the file has {size}",
                        local.display(),
                        m.len()
                    )))
                }
            }),
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
        let mut out = tree::Counting::new(&mut file);
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
            Err(e) if tree::is_transient(&e) && range.retries < retries => {
                let next = Range {
                    offset: range.offset + written,
                    len: range.len - written.min(range.len),
                    retries: range.retries + 1,
                };
                let wait = tree::backoff(next.retries);
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
            Err(e) => return Err(e),
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
