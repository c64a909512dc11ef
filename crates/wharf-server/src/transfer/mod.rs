//! The transfer engine: one path for every command that moves data (RETR, STOR/APPE/STOU,
//! LIST/NLST/MLSD). The driver sets up the data channel ([`channel`]), sends the preliminary
//! reply and runs the TLS handshake; [`run`] then moves the body one way, paced by a
//! [`Throttle`], and closes the data connection the way FTPS peers expect.
//!
//! Downloads of a local file in binary mode over a plain connection go by `sendfile(2)` on a
//! corked socket (no copy through user space, full segments); everything else goes through
//! `wharf-net`'s copy loops, which the client uses too.

pub mod channel;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::time::timeout;
use wharf_net::Stream;
use wharf_net::copy::{self, CopyError, CopyOptions, Throttle};
use wharf_proto::FileInfo;
use wharf_proto::listing::{self, FactSet, MlsxRole, PermFacts};
use wharf_proto::server::{Body, ListForm};

use crate::storage::{EntryStream, ReadBody, ReadHandle, WriteHandle};

/// What an open action left for the transfer.
#[derive(Default)]
pub(crate) enum Held {
    #[default]
    None,
    Read(Box<ReadHandle>),
    Write(Box<dyn WriteHandle>),
    List(Box<Listing>),
}

/// A listing to send: a directory's entries, or one file's own facts (LIST of a file).
pub(crate) struct Listing {
    /// The directory itself (MLSD sends it first, as `type=cdir`).
    pub dir: Option<FileInfo>,
    pub source: ListSource,
}

pub(crate) enum ListSource {
    Entries(Box<dyn EntryStream>),
    Single(FileInfo),
}

/// The entries of a directory whose names match a pattern (LIST/NLST with `*`, `?`, `[...]`),
/// each name after a prefix. [`Matching::start`] reads until the first match, so that "nothing
/// matches" is known (550) before the data connection is used; the rest streams as the
/// directory does, in bounded memory.
pub(crate) struct Matching {
    inner: Box<dyn EntryStream>,
    pattern: Vec<u8>,
    prefix: Vec<u8>,
    first: Option<Vec<FileInfo>>,
}

impl Matching {
    pub(crate) async fn start(
        mut inner: Box<dyn EntryStream>,
        pattern: Vec<u8>,
        prefix: Vec<u8>,
    ) -> Result<Matching, crate::storage::StorageError> {
        loop {
            let Some(batch) = inner.next_batch().await? else {
                return Err(crate::storage::StorageError::NotFound);
            };
            let found = filter(batch, &pattern, &prefix);
            if !found.is_empty() {
                return Ok(Matching {
                    inner,
                    pattern,
                    prefix,
                    first: Some(found),
                });
            }
        }
    }
}

fn filter(batch: Vec<FileInfo>, pattern: &[u8], prefix: &[u8]) -> Vec<FileInfo> {
    batch
        .into_iter()
        .filter(|e| wharf_proto::glob::matches(pattern, &e.name))
        .map(|mut e| {
            if !prefix.is_empty() {
                let mut name = prefix.to_vec();
                name.extend_from_slice(&e.name);
                e.name = name;
            }
            e
        })
        .collect()
}

impl EntryStream for Matching {
    fn next_batch(
        &mut self,
    ) -> crate::storage::BoxFuture<'_, Result<Option<Vec<FileInfo>>, crate::storage::StorageError>>
    {
        Box::pin(async move {
            if let Some(first) = self.first.take() {
                return Ok(Some(first));
            }
            match self.inner.next_batch().await? {
                Some(batch) => Ok(Some(filter(batch, &self.pattern, &self.prefix))),
                None => Ok(None),
            }
        })
    }
}

/// How one transfer runs.
pub(crate) struct Job<'a> {
    pub body: &'a Body,
    pub ascii: bool,
    pub require_close_notify: bool,
    /// The data connection may stall this long per read or write.
    pub stall: Duration,
    pub throttle: &'a dyn Throttle,
    /// Bytes moved so far (STAT during the transfer).
    pub progress: &'a AtomicU64,
    /// An upload's byte limit.
    pub cap: Option<Cap>,
}

/// An upload's limits: the bytes its file may still grow by, and the room the user's quota
/// left when it opened, which the user's other uploads share: those in progress (their bytes
/// are in `state.inflight` as they are written) and those completed since (`state.committed`
/// moved from `committed_at_open`).
#[derive(Debug)]
pub(crate) struct Cap {
    pub size_left: Option<u64>,
    pub quota_room: Option<u64>,
    pub committed_at_open: i64,
    /// Bytes of the file the upload replaces or rewrites (freed when it lands).
    pub freed: u64,
    pub state: Arc<crate::users::UserState>,
    /// Bytes this upload wrote; the driver settles them when the upload ends (see
    /// [`CapSettle`]).
    pub written: Arc<AtomicU64>,
}

/// Why a capped upload stopped (the error inside the `io::Error`; a real EDQUOT or EFBIG from
/// the file system is not this, and does not discard the upload).
#[derive(Debug)]
pub(crate) struct CapExceeded {
    pub quota: bool,
}

impl std::fmt::Display for CapExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.quota {
            "quota exceeded"
        } else {
            "file size limit exceeded"
        })
    }
}

impl std::error::Error for CapExceeded {}

/// The limit an upload error stands for (`Some(true)`: the quota), if it is one.
pub(crate) fn cap_exceeded(e: &io::Error) -> Option<bool> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<CapExceeded>())
        .map(|c| c.quota)
}

/// Settles a capped upload's bytes when dropped: they leave the user's uploads in progress and,
/// if the upload was committed, join what its uploads added (less what the file replaced).
pub(crate) struct CapSettle {
    pub state: Arc<crate::users::UserState>,
    pub written: Arc<AtomicU64>,
    /// Bytes of the file the upload replaces or rewrites (freed when it lands).
    pub freed: u64,
    pub committed: bool,
}

impl Drop for CapSettle {
    fn drop(&mut self) {
        let w = self.written.load(Ordering::Acquire);
        if self.committed {
            let net = i64::try_from(w).unwrap_or(i64::MAX) - i64::try_from(self.freed).unwrap_or(0);
            self.state.committed.fetch_add(net, Ordering::AcqRel);
        }
        self.state.inflight.fetch_sub(w, Ordering::AcqRel);
    }
}

impl Cap {
    /// Claims room for `n` more bytes after the `written` this upload already wrote, or fails
    /// with [`CapExceeded`] having claimed nothing. Claimed first, so that two uploads cannot
    /// both take the last of the room; [`Cap::settle`] keeps what was written.
    fn claim(&self, written: u64, n: u64) -> io::Result<()> {
        if self.size_left.is_some_and(|left| written + n > left) {
            return Err(io::Error::other(CapExceeded { quota: false }));
        }
        let before = self.state.inflight.fetch_add(n, Ordering::AcqRel);
        let landed = self.state.committed.load(Ordering::Acquire) - self.committed_at_open;
        let wanted = i64::try_from(before + n)
            .unwrap_or(i64::MAX)
            .saturating_add(landed);
        if self
            .quota_room
            .is_some_and(|room| wanted > i64::try_from(room).unwrap_or(i64::MAX))
        {
            self.state.inflight.fetch_sub(n, Ordering::AcqRel);
            return Err(io::Error::other(CapExceeded { quota: true }));
        }
        Ok(())
    }

    /// Of `claimed` bytes, `took` were written: those stay in progress (the driver settles them
    /// when the upload ends), the rest is given back.
    fn settle(&self, claimed: u64, took: u64) {
        self.state
            .inflight
            .fetch_sub(claimed - took, Ordering::AcqRel);
        self.written.fetch_add(took, Ordering::AcqRel);
    }
}

/// An upload's sink under a [`Cap`]: a write past it fails (with [`CapExceeded`]) without
/// writing anything.
struct Capped<'a, W: ?Sized> {
    inner: &'a mut W,
    cap: &'a Cap,
    written: u64,
}

impl<W: AsyncWrite + Unpin + ?Sized> AsyncWrite for Capped<'_, W> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = buf.len() as u64;
        if let Err(e) = this.cap.claim(this.written, n) {
            return std::task::Poll::Ready(Err(e));
        }
        let r = std::pin::Pin::new(&mut *this.inner).poll_write(cx, buf);
        let took = match &r {
            std::task::Poll::Ready(Ok(k)) => *k as u64,
            _ => 0,
        };
        this.cap.settle(n, took);
        this.written += took;
        r
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut *self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Size of the upload buffer, written on the thread that read it while it is still in the CPU's
/// cache (1 MiB buffers handed to another thread ran at a third of the speed). Each read takes
/// what the socket holds; 512 KiB took 28% less CPU per GiB than 128 KiB (fewer reads and
/// wake-ups). Allocated per upload only.
const UPLOAD_BUF: usize = 512 * 1024;

/// Listing bytes gathered before a write.
const LISTING_CHUNK: usize = 64 * 1024;

/// Moves the body of a transfer over `stream`. Returns the bytes moved, and an upload's handle
/// (not committed: the caller commits it once the transfer is known complete, so that an ABOR
/// that stops this future never leaves a half-committed upload).
pub(crate) async fn run(
    stream: Stream,
    held: Held,
    mut job: Job<'_>,
) -> (Result<u64, CopyError>, Option<Box<dyn WriteHandle>>) {
    let cap = job.cap.take();
    match (held, job.body) {
        (Held::Read(h), Body::Download) => (download(stream, *h, &job).await, None),
        (Held::Write(w), Body::Upload) => upload(stream, w, &job, cap).await,
        (Held::List(l), Body::Listing { form, facts, perms }) => (
            send_listing(stream, *l, *form, *facts, *perms, &job).await,
            None,
        ),
        _ => (
            Err(CopyError::Local(io::Error::other(
                "nothing opened for this transfer",
            ))),
            None,
        ),
    }
}

fn options(job: &Job<'_>, buffer: usize) -> CopyOptions {
    CopyOptions {
        ascii: job.ascii,
        buffer,
        require_close_notify: job.require_close_notify,
        ..CopyOptions::new(job.stall)
    }
}

/// Sends a file and closes the data connection cleanly (TLS close_notify, then FIN) so the
/// client sees the end before the 226 reply.
async fn download(mut stream: Stream, h: ReadHandle, job: &Job<'_>) -> Result<u64, CopyError> {
    let progress = job.progress;
    let mut count = |_wire: u64, local: u64| {
        progress.fetch_add(local, Ordering::Relaxed);
    };
    let opts = options(job, 256 * 1024);
    let total = match (h.body, &stream) {
        (ReadBody::File(file), Stream::Plain(tcp)) if !job.ascii => {
            send_file(tcp, &file, job).await?
        }
        (ReadBody::File(file), _) => {
            let mut file = CachedFile::new(file);
            copy::send(&mut file, &mut stream, &opts, job.throttle, &mut count).await?
        }
        (ReadBody::Stream(mut r), _) => {
            copy::send(&mut r, &mut stream, &opts, job.throttle, &mut count).await?
        }
    };
    finish_sending(stream, job.stall).await?;
    Ok(total)
}

/// A local file read by the copy loop (a download over TLS, or in ASCII): a read that the page
/// cache answers at once (preadv2 with RWF_NOWAIT) is done on the session's thread, and only one
/// that would wait for the disk goes to the blocking pool. tokio's `File` sends every read
/// there, two thread wake-ups per chunk. Reads use and advance the file's offset (set by REST).
struct CachedFile {
    file: Arc<std::fs::File>,
    /// A read in the blocking pool.
    pending: Option<tokio::task::JoinHandle<io::Result<Vec<u8>>>>,
    /// What the pool read, from `at` on, not yet handed out.
    ready: Vec<u8>,
    at: usize,
    /// The file system refused RWF_NOWAIT: every read goes to the pool.
    pool_only: bool,
    /// The file is in memory (tmpfs, ramfs), which has no RWF_NOWAIT and never waits for a
    /// disk: every read is done here.
    in_memory: bool,
}

impl CachedFile {
    fn new(file: std::fs::File) -> CachedFile {
        const TMPFS_MAGIC: u32 = 0x0102_1994;
        const RAMFS_MAGIC: u32 = 0x8584_58f6;
        // f_type's integer type differs between architectures; the magic numbers are 32 bits.
        let in_memory = rustix::fs::fstatfs(&file)
            .is_ok_and(|s| matches!(s.f_type as u32, TMPFS_MAGIC | RAMFS_MAGIC));
        CachedFile {
            file: Arc::new(file),
            pending: None,
            ready: Vec::new(),
            at: 0,
            pool_only: false,
            in_memory,
        }
    }
}

impl tokio::io::AsyncRead for CachedFile {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        use rustix::io::{Errno, ReadWriteFlags};
        use std::task::Poll;
        let this = self.get_mut();
        loop {
            if this.at < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.at);
                buf.put_slice(&this.ready[this.at..this.at + n]);
                this.at += n;
                return Poll::Ready(Ok(()));
            }
            if let Some(read) = this.pending.as_mut() {
                let done = std::task::ready!(std::pin::Pin::new(read).poll(cx));
                this.pending = None;
                match done {
                    Ok(Ok(bytes)) if bytes.is_empty() => return Poll::Ready(Ok(())),
                    Ok(Ok(bytes)) => {
                        this.ready = bytes;
                        this.at = 0;
                        continue;
                    }
                    Ok(Err(e)) => return Poll::Ready(Err(e)),
                    Err(e) => return Poll::Ready(Err(io::Error::other(e))),
                }
            }
            if this.in_memory {
                let into = buf.initialize_unfilled();
                match rustix::io::read(&*this.file, into) {
                    Ok(n) => {
                        buf.advance(n);
                        return Poll::Ready(Ok(()));
                    }
                    Err(Errno::INTR) => continue,
                    Err(e) => return Poll::Ready(Err(e.into())),
                }
            }
            if !this.pool_only {
                let into = buf.initialize_unfilled();
                // Offset u64::MAX: the file's own offset, used and advanced.
                let r = rustix::io::preadv2(
                    &*this.file,
                    &mut [std::io::IoSliceMut::new(into)],
                    u64::MAX,
                    ReadWriteFlags::NOWAIT,
                );
                match r {
                    // 0 is not trusted as the end: Linux 5.9 and 5.10 can answer 0 to a
                    // RWF_NOWAIT read before it; the pool's plain read says for sure.
                    Ok(0) => {}
                    Ok(n) => {
                        buf.advance(n);
                        return Poll::Ready(Ok(()));
                    }
                    Err(Errno::INTR) => continue,
                    // Not in the page cache: the pool waits for the disk.
                    Err(Errno::AGAIN) => {}
                    // No RWF_NOWAIT here (or preadv2 filtered by a seccomp policy).
                    Err(Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL | Errno::PERM) => {
                        this.pool_only = true
                    }
                    Err(e) => return Poll::Ready(Err(e.into())),
                }
            }
            let (file, want) = (this.file.clone(), buf.remaining().max(1));
            this.pending = Some(tokio::task::spawn_blocking(move || {
                let mut bytes = vec![0u8; want];
                let n = std::io::Read::read(&mut &*file, &mut bytes)?;
                bytes.truncate(n);
                Ok(bytes)
            }));
        }
    }
}

/// Receives into the upload until the client closes the data connection. Over TLS the end is
/// the client's close_notify, answered with ours (Python's `unwrap` waits for it).
async fn upload(
    mut stream: Stream,
    mut sink: Box<dyn WriteHandle>,
    job: &Job<'_>,
    cap: Option<Cap>,
) -> (Result<u64, CopyError>, Option<Box<dyn WriteHandle>>) {
    let progress = job.progress;
    let mut count = |_wire: u64, local: u64| {
        progress.fetch_add(local, Ordering::Relaxed);
    };
    let opts = options(job, UPLOAD_BUF);
    // Plain binary uploads into a local file move in the kernel: the rest, if any, below.
    let mut spliced = 0;
    if let (Stream::Plain(tcp), false) = (&stream, job.ascii)
        && let Some(file) = sink.direct()
    {
        match splice_upload(tcp, file, job, cap.as_ref()).await {
            Ok(Spliced::All(n)) => return (Ok(n), Some(sink)),
            Ok(Spliced::Partly(n)) => spliced = n,
            Err(e) => return (Err(e), Some(sink)),
        }
    }
    let r = match &cap {
        Some(cap) => {
            let mut capped = Capped {
                inner: &mut sink,
                cap,
                written: spliced,
            };
            copy::receive(&mut stream, &mut capped, &opts, job.throttle, &mut count).await
        }
        None => copy::receive(&mut stream, &mut sink, &opts, job.throttle, &mut count).await,
    }
    .map(|n| n + spliced);
    if r.is_ok() && stream.is_tls() {
        let _ = timeout(Duration::from_secs(5), stream.shutdown()).await;
    }
    (r, Some(sink))
}

async fn send_listing(
    mut stream: Stream,
    listing: Listing,
    form: ListForm,
    facts: FactSet,
    perms: PermFacts,
    job: &Job<'_>,
) -> Result<u64, CopyError> {
    let now = unix_now();
    let mut out = Vec::with_capacity(LISTING_CHUNK);
    let mut total = 0u64;
    if let (ListForm::Machine, Some(dir)) = (form, &listing.dir) {
        let cur = FileInfo {
            name: b".".to_vec(),
            ..dir.clone()
        };
        listing::push_mlsx_entry(&mut out, &cur, facts, perms, MlsxRole::Current);
        out.extend_from_slice(b"\r\n");
    }
    match listing.source {
        ListSource::Single(info) => push_entry(&mut out, &info, form, facts, perms, now),
        ListSource::Entries(mut entries) => loop {
            let batch = entries
                .next_batch()
                .await
                .map_err(|e| CopyError::Local(io::Error::other(e)))?;
            let Some(batch) = batch else { break };
            for e in &batch {
                push_entry(&mut out, e, form, facts, perms, now);
                if out.len() >= LISTING_CHUNK {
                    total += write_wire(&mut stream, &out, job).await?;
                    out.clear();
                }
            }
        },
    }
    total += write_wire(&mut stream, &out, job).await?;
    finish_sending(stream, job.stall).await?;
    Ok(total)
}

fn push_entry(
    out: &mut Vec<u8>,
    e: &FileInfo,
    form: ListForm,
    facts: FactSet,
    perms: PermFacts,
    now: i64,
) {
    match form {
        ListForm::Long => listing::push_list_line(out, e, now),
        ListForm::Names => listing::push_nlst_line(out, &e.name),
        ListForm::Machine => {
            listing::push_mlsx_entry(out, e, facts, perms, MlsxRole::Entry);
            out.extend_from_slice(b"\r\n");
        }
    }
}

async fn write_wire(stream: &mut Stream, buf: &[u8], job: &Job<'_>) -> Result<u64, CopyError> {
    if buf.is_empty() {
        return Ok(0);
    }
    copy::pace(job.throttle, buf.len() as u64).await;
    match timeout(job.stall, stream.write_all(buf)).await {
        Ok(Ok(())) => {
            job.progress.fetch_add(buf.len() as u64, Ordering::Relaxed);
            Ok(buf.len() as u64)
        }
        Ok(Err(e)) => Err(CopyError::Wire(e)),
        Err(_) => Err(CopyError::Stalled),
    }
}

/// Shuts the sending side down (close_notify, FIN), then lets a TLS peer's close_notify be read
/// in the background.
async fn finish_sending(mut stream: Stream, stall: Duration) -> Result<(), CopyError> {
    match timeout(stall, stream.shutdown()).await {
        Ok(Ok(())) => {
            wharf_net::close::drain_in_background(stream);
            Ok(())
        }
        Ok(Err(e)) => Err(CopyError::Wire(e)),
        Err(_) => Err(CopyError::Stalled),
    }
}

/// Wall-clock seconds since the Unix epoch (listing dates, file times).
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// How far [`splice_upload`] got: all of the upload, or the bytes before a file that cannot be
/// spliced into (the rest goes through the copy loop).
enum Spliced {
    All(u64),
    Partly(u64),
}

/// The pipe between the socket and the file (1 MiB, Linux's default limit for a user's pipe;
/// the default 64 KiB is kept if it is refused).
const PIPE_SIZE: usize = 1 << 20;

/// A smaller pipe than this is not worth splicing through.
const MIN_PIPE: usize = 256 * 1024;

/// Receives a plain upload with splice(2): socket to pipe (the received pages are moved, not
/// copied), pipe to file (copied into the page cache once). A read and a write copy every byte
/// twice. Nothing waits between the two halves, so the pipe is empty at every await: dropping
/// this future (ABOR, the administrator, a lost control connection) loses nothing that was
/// received into it.
async fn splice_upload(
    tcp: &TcpStream,
    to: crate::storage::DirectFile<'_>,
    job: &Job<'_>,
    cap: Option<&Cap>,
) -> Result<Spliced, CopyError> {
    use rustix::pipe::{PipeFlags, SpliceFlags, splice};
    let (from_pipe, into_pipe) =
        match rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK) {
            Ok(p) => p,
            Err(_) => return Ok(Spliced::Partly(0)),
        };
    let _ = rustix::pipe::fcntl_setpipe_size(&into_pipe, PIPE_SIZE);
    // A user past its pipe allowance (many uploads at once) gets a pipe of a page or two:
    // a splice per few KiB costs more than the copy loop's 512 KiB reads.
    if rustix::pipe::fcntl_getpipe_size(&into_pipe).is_ok_and(|n| n < MIN_PIPE) {
        return Ok(Spliced::Partly(0));
    }
    let mut total = 0u64;
    loop {
        // The socket may never run dry (a disk slower than the network): the budget makes
        // this task yield now and then, so that the session still reads its control
        // connection (ABOR, STAT) and the worker's other tasks run. The pipe is empty here.
        tokio::task::coop::consume_budget().await;
        match timeout(job.stall, tcp.readable()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(CopyError::Wire(e)),
            Err(_) => return Err(CopyError::Stalled),
        }
        let got = tcp.try_io(Interest::READABLE, || {
            splice(
                tcp,
                None,
                &into_pipe,
                None,
                PIPE_SIZE,
                SpliceFlags::MOVE | SpliceFlags::NONBLOCK,
            )
            .map_err(io::Error::from)
        });
        let n = match got {
            // The end, or urgent data (splice stops at the mark, answering 0 after a FIN and
            // EAGAIN before): if bytes are still there, the copy loop reads them.
            Ok(0) if !unread(tcp) => return Ok(Spliced::All(total)),
            Ok(0) => return Ok(Spliced::Partly(total)),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if unread(tcp) {
                    return Ok(Spliced::Partly(total));
                }
                continue;
            }
            Err(e) => return Err(CopyError::Wire(e)),
        };
        if let Some(cap) = cap {
            cap.claim(total, n as u64).map_err(CopyError::Local)?;
        }
        let (mut moved, mut outcome) = pipe_to_file(&from_pipe, to.file, n);
        // A file system that takes no splice (EINVAL before anything was written): what the
        // pipe holds is written the ordinary way, and the caller goes on with the copy loop.
        let unspliceable = matches!(outcome, Err(rustix::io::Errno::INVAL)) && moved == 0;
        if unspliceable {
            (moved, outcome) = drain_pipe(&from_pipe, to.file, n);
        }
        *to.written += moved as u64;
        total += moved as u64;
        job.progress.fetch_add(moved as u64, Ordering::Relaxed);
        if let Some(cap) = cap {
            cap.settle(n as u64, moved as u64);
        }
        outcome.map_err(|e| CopyError::Local(e.into()))?;
        if unspliceable {
            return Ok(Spliced::Partly(total));
        }
        copy::pace(job.throttle, n as u64).await;
    }
}

/// Moves `n` bytes from the pipe to the file with splice(2): the bytes moved, and how it
/// ended.
fn pipe_to_file(
    pipe: &rustix::fd::OwnedFd,
    file: &std::fs::File,
    n: usize,
) -> (usize, Result<(), rustix::io::Errno>) {
    use rustix::io::Errno;
    use rustix::pipe::{SpliceFlags, splice};
    let mut moved = 0;
    while moved < n {
        match splice(pipe, None, file, None, n - moved, SpliceFlags::MOVE) {
            Ok(0) => return (moved, Err(Errno::IO)),
            Ok(k) => moved += k,
            Err(Errno::INTR) => {}
            Err(e) => return (moved, Err(e)),
        }
    }
    (moved, Ok(()))
}

/// Moves `n` bytes from the pipe to the file with read(2) and write(2): the bytes written to
/// the file, and how it ended.
fn drain_pipe(
    pipe: &rustix::fd::OwnedFd,
    file: &std::fs::File,
    n: usize,
) -> (usize, Result<(), rustix::io::Errno>) {
    use rustix::io::Errno;
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match rustix::io::read(pipe, &mut buf[got..]) {
            Ok(0) => return (0, Err(Errno::IO)),
            Ok(k) => got += k,
            Err(Errno::INTR) => {}
            Err(e) => return (0, Err(e)),
        }
    }
    let mut written = 0;
    while written < n {
        match rustix::io::write(file, &buf[written..]) {
            Ok(0) => return (written, Err(Errno::IO)),
            Ok(k) => written += k,
            Err(Errno::INTR) => {}
            Err(e) => return (written, Err(e)),
        }
    }
    (written, Ok(()))
}

/// Whether the socket holds bytes a plain read would return (a peek; the socket does not
/// block).
fn unread(tcp: &TcpStream) -> bool {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
    socket2::SockRef::from(tcp)
        .peek(&mut byte)
        .is_ok_and(|n| n > 0)
}

/// Bytes one sendfile(2) call may move; it returns sooner when the socket buffer is full.
const SENDFILE_CHUNK: usize = 4 * 1024 * 1024;

/// sendfile(2) from the file's position to its end, waiting for the socket to take more.
async fn send_file(tcp: &TcpStream, file: &std::fs::File, job: &Job<'_>) -> Result<u64, CopyError> {
    // Corked, the kernel sends only full segments however the calls split the file; the
    // shutdown after the transfer sends what is left.
    let _ = socket2::SockRef::from(tcp).set_tcp_cork(true);
    let mut total = 0u64;
    loop {
        match timeout(job.stall, tcp.writable()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(CopyError::Wire(e)),
            Err(_) => return Err(CopyError::Stalled),
        }
        let sent = tcp.try_io(Interest::WRITABLE, || {
            rustix::fs::sendfile(tcp, file, None, SENDFILE_CHUNK).map_err(io::Error::from)
        });
        match sent {
            Ok(0) => return Ok(total),
            Ok(n) => {
                total += n as u64;
                job.progress.store(total, Ordering::Relaxed);
                copy::pace(job.throttle, n as u64).await;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // The socket's errors; anything else came from reading the file.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::NotConnected
                ) =>
            {
                return Err(CopyError::Wire(e));
            }
            Err(e) => return Err(CopyError::Local(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::BoxFuture;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use tokio::io::AsyncReadExt;

    /// A directory of `n` entries made up on demand, that counts the batches it has handed out
    /// and not yet seen written.
    struct Huge {
        left: usize,
        handed: Arc<AtomicUsize>,
    }

    impl EntryStream for Huge {
        fn next_batch(
            &mut self,
        ) -> BoxFuture<'_, Result<Option<Vec<FileInfo>>, crate::storage::StorageError>> {
            Box::pin(async move {
                if self.left == 0 {
                    return Ok(None);
                }
                let n = self.left.min(1000);
                self.left -= n;
                self.handed.fetch_add(n, Ordering::SeqCst);
                Ok(Some(
                    (0..n)
                        .map(|i| FileInfo {
                            name: format!("file-{:07}", self.left + i).into_bytes(),
                            kind: wharf_proto::FileKind::File,
                            size: 1,
                            mtime: 0,
                            mode: 0o644,
                            nlink: 1,
                        })
                        .collect(),
                ))
            })
        }
    }

    /// A million entries stream through: the reader sees bytes long before the directory ends,
    /// and the listing never holds more than a chunk and a batch.
    #[tokio::test]
    async fn a_million_entries_are_listed_with_bounded_memory() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handed = Arc::new(AtomicUsize::new(0));
        let reader = tokio::spawn({
            let handed = handed.clone();
            async move {
                let mut c = TcpStream::connect(addr).await.unwrap();
                let mut buf = vec![0u8; 64 * 1024];
                let mut got = 0usize;
                let mut lines = 0usize;
                let mut handed_at_first_read = None;
                loop {
                    let n = c.read(&mut buf).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    handed_at_first_read.get_or_insert(handed.load(Ordering::SeqCst));
                    got += n;
                    lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
                }
                (got, lines, handed_at_first_read.unwrap_or(0))
            }
        });
        let (server, _) = listener.accept().await.unwrap();
        let progress = AtomicU64::new(0);
        let body = Body::Listing {
            form: ListForm::Names,
            facts: FactSet::default(),
            perms: PermFacts::default(),
        };
        let listing = Listing {
            dir: None,
            source: ListSource::Entries(Box::new(Huge {
                left: 1_000_000,
                handed: handed.clone(),
            })),
        };
        let job = Job {
            body: &body,
            ascii: false,
            require_close_notify: false,
            stall: Duration::from_secs(30),
            throttle: &wharf_net::copy::Unlimited,
            progress: &progress,
            cap: None,
        };
        let (r, _) = run(Stream::Plain(server), Held::List(Box::new(listing)), job).await;
        let sent = r.unwrap();
        let (got, lines, first) = reader.await.unwrap();
        assert_eq!(lines, 1_000_000);
        assert_eq!(got as u64, sent);
        assert_eq!(progress.load(Ordering::Relaxed), sent);
        assert!(
            first < 1_000_000,
            "bytes flowed before the whole directory was read ({first} entries then)"
        );
    }

    /// A test upload into a file opened by the test; writes through `AsyncWrite` go to the same
    /// file, so a splice and a fallback land in one place.
    struct FileSink {
        file: std::fs::File,
        written: u64,
    }

    impl AsyncWrite for FileSink {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            let this = self.get_mut();
            let r = std::io::Write::write(&mut this.file, buf);
            if let Ok(n) = r {
                this.written += n as u64;
            }
            std::task::Poll::Ready(r)
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    impl WriteHandle for FileSink {
        fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), crate::storage::StorageError>> {
            Box::pin(async { Ok(()) })
        }
        fn discard(&mut self) -> crate::storage::Undone {
            crate::storage::Undone::Unchanged
        }
        fn direct(&mut self) -> Option<crate::storage::DirectFile<'_>> {
            Some(crate::storage::DirectFile {
                file: &self.file,
                written: &mut self.written,
            })
        }
    }

    /// Uploads `data` into `file` over loopback: what the transfer returned, the bytes counted
    /// as written, and the progress counter.
    async fn upload_into(
        file: std::fs::File,
        data: Vec<u8>,
        cap: Option<Cap>,
    ) -> (Result<u64, CopyError>, u64, u64) {
        upload_with_urgent(file, data, None, cap).await
    }

    /// As [`upload_into`], with one byte of urgent data (MSG_OOB) sent after the first `at`
    /// bytes.
    async fn upload_with_urgent(
        file: std::fs::File,
        data: Vec<u8>,
        urgent_at: Option<usize>,
        cap: Option<Cap>,
    ) -> (Result<u64, CopyError>, u64, u64) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sender = tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            let at = urgent_at.unwrap_or(data.len());
            // The server may stop reading (a cap): the sender's errors are not the test's.
            let _ = c.write_all(&data[..at]).await;
            if urgent_at.is_some() {
                c.writable().await.unwrap();
                socket2::SockRef::from(&c).send_out_of_band(b"!").unwrap();
            }
            let _ = c.write_all(&data[at..]).await;
            let _ = c.shutdown().await;
        });
        let (server, _) = listener.accept().await.unwrap();
        let progress = AtomicU64::new(0);
        let job = Job {
            body: &Body::Upload,
            ascii: false,
            require_close_notify: false,
            stall: Duration::from_secs(30),
            throttle: &wharf_net::copy::Unlimited,
            progress: &progress,
            cap,
        };
        let sink = Box::new(FileSink { file, written: 0 });
        let (r, handle) = run(Stream::Plain(server), Held::Write(sink), job).await;
        drop(handle);
        sender.await.unwrap();
        let written = r.as_ref().map_or(0, |n| *n);
        (r, written, progress.load(Ordering::Relaxed))
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + i / 977) as u8).collect()
    }

    /// A download's file read from its offset (REST) to its end, from the page cache, through
    /// the blocking pool and as a file in memory alike.
    #[tokio::test]
    async fn a_cached_file_reads_from_its_offset_either_way() {
        use std::io::Seek;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data = pattern(3 << 20 | 5);
        std::fs::write(&path, &data).unwrap();
        for (pool_only, in_memory) in [(false, false), (true, false), (false, true)] {
            let mut file = std::fs::File::open(&path).unwrap();
            file.seek(std::io::SeekFrom::Start(1000)).unwrap();
            let mut cached = CachedFile::new(file);
            cached.pool_only = pool_only;
            cached.in_memory = in_memory;
            let mut got = Vec::new();
            let mut chunk = vec![0u8; 100_000];
            loop {
                let n = cached.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&chunk[..n]);
            }
            assert!(
                got == data[1000..],
                "pool_only {pool_only}: {} bytes",
                got.len()
            );
        }
    }

    /// Spliced into a file: byte-exact, counted once.
    #[tokio::test]
    async fn an_upload_is_spliced_byte_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("up");
        let data = pattern(5 << 20 | 12345);
        let file = std::fs::File::create(&path).unwrap();
        let (r, n, progress) = upload_into(file, data.clone(), None).await;
        assert_eq!(r.unwrap(), data.len() as u64);
        assert_eq!((n, progress), (data.len() as u64, data.len() as u64));
        assert!(std::fs::read(&path).unwrap() == data);
    }

    /// Urgent data stops a splice at its mark: the rest of the upload still lands (the urgent
    /// byte itself is not data, as for a plain read).
    #[tokio::test]
    async fn urgent_data_in_an_upload_loses_nothing_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("up");
        let data = pattern(2 << 20);
        let file = std::fs::File::create(&path).unwrap();
        let (r, _, _) = upload_with_urgent(file, data.clone(), Some(300_000), None).await;
        assert_eq!(r.unwrap(), data.len() as u64);
        let got = std::fs::read(&path).unwrap();
        assert!(got == data, "{} of {} bytes", got.len(), data.len());
    }

    /// A file splice(2) refuses (one opened for appending, here): the bytes already in the
    /// pipe and the rest reach it the ordinary way, nothing lost or doubled.
    #[tokio::test]
    async fn a_file_that_takes_no_splice_gets_every_byte_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("up");
        std::fs::write(&path, b"head:").unwrap();
        let data = pattern(3 << 20 | 7);
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        let (r, _, progress) = upload_into(file, data.clone(), None).await;
        assert_eq!(r.unwrap(), data.len() as u64);
        assert_eq!(progress, data.len() as u64);
        let got = std::fs::read(&path).unwrap();
        assert!(
            got[..5] == *b"head:" && got[5..] == data[..],
            "{} bytes",
            got.len()
        );
    }

    /// The size cap holds on the splice path: the upload stops with the cap's error, and the
    /// file has no byte beyond it.
    #[tokio::test]
    async fn a_spliced_upload_stops_at_its_size_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("up");
        let file = std::fs::File::create(&path).unwrap();
        let state = Arc::new(crate::users::UserState::default());
        let cap = Cap {
            size_left: Some(1 << 20),
            quota_room: None,
            committed_at_open: 0,
            freed: 0,
            state: state.clone(),
            written: Arc::new(AtomicU64::new(0)),
        };
        let written = cap.written.clone();
        let (r, _, _) = upload_into(file, pattern(8 << 20), Some(cap)).await;
        let e = r.unwrap_err();
        assert!(
            matches!(&e, CopyError::Local(err) if cap_exceeded(err) == Some(false)),
            "{e}"
        );
        let len = std::fs::metadata(&path).unwrap().len();
        assert!(len <= 1 << 20, "{len} bytes on disk");
        assert_eq!(written.load(Ordering::Acquire), len);
        assert_eq!(state.inflight.load(Ordering::Acquire), len);
    }
}
