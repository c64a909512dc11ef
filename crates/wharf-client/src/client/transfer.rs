//! Transfers over a data connection: downloads, uploads and listings, and what ends them.

use std::io;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;
use wharf_proto::ReplyCode;
use wharf_proto::client::ClientCommand;
use wharf_proto::entry::{self, Entry, MlsxLine};

use super::{BUF_SIZE, Client, MAX_LISTING, Progress, Store, format_rate, refused};
use crate::error::{Error, Result};
use wharf_net::Stream;
use wharf_net::copy::{self, CopyError, CopyOptions, Throttle, Unlimited};

impl Client {
    /// Lists a directory (empty `path`: the current one): MLSD where FEAT offers MLST, else
    /// LIST parsed in Unix or DOS form. `.` and `..` are left out.
    pub async fn list(&mut self, path: &[u8]) -> Result<Vec<Entry>> {
        let arg = (!path.is_empty()).then_some(path);
        // LIST takes `ls` options on most servers: a name starting with `-` must not be one.
        let dashed;
        let list_arg = match arg {
            Some(p) if p.starts_with(b"-") => {
                dashed = [&b"./"[..], p].concat();
                Some(&dashed[..])
            }
            other => other,
        };
        if self.features.mlst {
            match self.read_listing(&ClientCommand::Mlsd(arg)).await {
                Ok(raw) => {
                    let entries = raw
                        .split(|&b| b == b'\n')
                        .filter_map(entry::parse_mlsx_line)
                        .filter_map(|line| match line {
                            MlsxLine::Entry(e) => Some(e),
                            MlsxLine::SelfOrParent => None,
                        })
                        .collect();
                    self.log_status("Directory listing successful");
                    return Ok(entries);
                }
                Err(e) if e.reply_code().is_some_and(ReplyCode::is_unknown_command) => {
                    self.features.mlst = false;
                }
                Err(e) => return Err(e),
            }
        }
        let raw = self.read_listing(&ClientCommand::List(list_arg)).await?;
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let entries = raw
            .split(|&b| b == b'\n')
            .filter_map(|line| entry::parse_list_line(line, now))
            .filter(|e| e.name != b"." && e.name != b"..")
            .collect();
        self.log_status("Directory listing successful");
        Ok(entries)
    }

    /// The raw bytes of a listing command (`LIST`, `NLST` or `MLSD`) of `path` (empty: the
    /// current directory), unparsed: what a load generator or a debugging user wants.
    pub async fn listing(&mut self, verb: &str, path: &[u8]) -> Result<Vec<u8>> {
        let arg = (!path.is_empty()).then_some(path);
        let command = match verb {
            "LIST" => ClientCommand::List(arg),
            "NLST" => ClientCommand::Nlst(arg),
            "MLSD" => ClientCommand::Mlsd(arg),
            _ => ClientCommand::Raw { verb, arg },
        };
        self.read_listing(&command).await
    }

    /// Downloads `path` into `out`, from byte `offset` on (REST) when it is not zero.
    /// Returns the bytes received (after TYPE A conversion: the bytes written).
    pub async fn retrieve<W: AsyncWrite + Unpin>(
        &mut self,
        path: &[u8],
        offset: u64,
        out: &mut W,
        progress: &dyn Progress,
    ) -> Result<u64> {
        if offset > 0 && self.is_ascii() {
            return Err(Error::Usage(
                "resuming is not possible in ASCII mode (offsets differ)".into(),
            ));
        }
        self.ensure_type().await?;
        let started = Instant::now();
        let rest = (offset > 0).then_some(offset);
        let retr = ClientCommand::Retr(path);
        let Some(mut data) = self.open_data(&retr, rest).await? else {
            return Err(Error::Protocol(
                "RETR completed without a data connection".into(),
            ));
        };
        let n = match self.copy_in(&mut data, out, progress).await {
            Ok(n) => n,
            Err(e) => {
                data.set_zero_linger();
                drop(data);
                return Err(self.after_broken_transfer(e, &retr).await);
            }
        };
        drop(data);
        self.finish_transfer(&retr).await?;
        self.log_transfer(n, started);
        Ok(n)
    }

    /// Downloads `len` bytes of `path` from byte `offset` on (REST + RETR) into `out`, then
    /// closes the data connection and waits for the server's reply to the cut-short transfer
    /// (426 or 226 both end it). Binary only. Returns the bytes written (`len` unless the file
    /// ended first).
    pub async fn retrieve_range<W: AsyncWrite + Unpin>(
        &mut self,
        path: &[u8],
        offset: u64,
        len: u64,
        out: &mut W,
        progress: &dyn Progress,
    ) -> Result<u64> {
        if self.is_ascii() {
            return Err(Error::Usage(
                "a byte range cannot be fetched in ASCII mode".into(),
            ));
        }
        self.ensure_type().await?;
        let rest = (offset > 0).then_some(offset);
        let retr = ClientCommand::Retr(path);
        let Some(mut data) = self.open_data(&retr, rest).await? else {
            return Err(Error::Protocol(
                "RETR completed without a data connection".into(),
            ));
        };
        let mut buf = vec![0u8; BUF_SIZE];
        let mut got = 0u64;
        let copied: Result<()> = async {
            while got < len {
                let want = usize::try_from(len - got)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                let chunk = buf.get_mut(..want).unwrap_or_default();
                let n = self.data_io(data.read(chunk)).await?;
                if n == 0 {
                    return Ok(());
                }
                copy::pace(self.throttle(), n as u64).await;
                out.write_all(buf.get(..n).unwrap_or_default())
                    .await
                    .map_err(Error::local)?;
                got += n as u64;
                progress.advance(n as u64);
            }
            Ok(())
        }
        .await;
        if let Err(e) = copied {
            data.set_zero_linger();
            drop(data);
            return Err(self.after_broken_transfer(e, &retr).await);
        }
        if let Err(e) = out.flush().await {
            data.set_zero_linger();
            drop(data);
            return Err(self.after_broken_transfer(Error::local(e), &retr).await);
        }
        if got < len {
            // The file ended before the range did: an ordinary end of transfer.
            drop(data);
            self.finish_transfer(&retr).await?;
            return Ok(got);
        }
        // The range is complete: cut the data connection. The server's reply to that (426,
        // 451 or, if it had sent everything already, 226) ends the transfer.
        data.set_zero_linger();
        drop(data);
        let wait = self.options.timeout.min(Duration::from_secs(10));
        self.broken = true;
        for _ in 0..10 {
            match timeout(wait, self.read_reply("RETR (range complete)")).await {
                Ok(Ok(reply)) if reply.code.is_preliminary() => continue,
                Ok(Ok(_)) => {
                    self.broken = false;
                    break;
                }
                Ok(Err(_)) | Err(_) => break,
            }
        }
        Ok(got)
    }

    /// Uploads everything `input` yields to `path`, as `how` says.
    pub async fn store<R: AsyncRead + Unpin>(
        &mut self,
        path: &[u8],
        how: Store,
        input: &mut R,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let (command, rest) = match how {
            Store::Replace => (ClientCommand::Stor(path), None),
            Store::Resume(offset) => (ClientCommand::Stor(path), Some(offset)),
            Store::Append => (ClientCommand::Appe(path), None),
        };
        if rest.is_some() && self.is_ascii() {
            return Err(Error::Usage(
                "resuming is not possible in ASCII mode (offsets differ)".into(),
            ));
        }
        self.ensure_type().await?;
        let started = Instant::now();
        let Some(mut data) = self.open_data(&command, rest).await? else {
            return Err(Error::Protocol(format!(
                "{} completed without a data connection",
                command.verb()
            )));
        };
        let n = match self.copy_out(input, &mut data, progress).await {
            Ok(n) => n,
            Err(e) => {
                // A reset, not a FIN: the server must not take the partial file as complete.
                data.set_zero_linger();
                drop(data);
                return Err(self.after_broken_transfer(e, &command).await);
            }
        };
        // FIN (after TLS close_notify) tells the server the file is complete; then it replies.
        let _ = wharf_net::close::shutdown(&mut data, self.options.timeout).await;
        // The server answers with its close_notify (and, over TLS 1.3, may have sent fresh
        // session tickets for the next data connection): read up to it.
        wharf_net::close::drain(&mut data, wharf_net::close::DRAIN_LIMIT).await;
        drop(data);
        self.finish_transfer(&command).await?;
        self.log_transfer(n, started);
        Ok(n)
    }

    /// TYPE, when the server was not told the one wanted yet.
    pub(super) async fn ensure_type(&mut self) -> Result<()> {
        if self.type_sent != Some(self.transfer_type) {
            self.run_ok(&ClientCommand::Type(self.transfer_type))
                .await?;
            self.type_sent = Some(self.transfer_type);
        }
        Ok(())
    }

    async fn read_listing(&mut self, command: &ClientCommand<'_>) -> Result<Vec<u8>> {
        // Some servers answer a listing of an empty directory with 226 and no data connection.
        let Some(mut data) = self.open_data(command, None).await? else {
            return Ok(Vec::new());
        };
        let mut raw = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self.data_io(data.read(&mut buf)).await?;
            if n == 0 {
                break;
            }
            raw.extend_from_slice(buf.get(..n).unwrap_or_default());
            if raw.len() > MAX_LISTING {
                return Err(Error::Protocol(format!(
                    "listing larger than {MAX_LISTING} bytes"
                )));
            }
        }
        drop(data);
        self.finish_transfer(command).await?;
        Ok(raw)
    }

    async fn copy_in<W: AsyncWrite + Unpin>(
        &self,
        data: &mut Stream,
        out: &mut W,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let r = copy::receive(
            data,
            out,
            &self.copy_options(),
            self.throttle(),
            &mut |wire, _| progress.advance(wire),
        )
        .await;
        r.map_err(|e| self.copy_error(e))
    }

    async fn copy_out<R: AsyncRead + Unpin>(
        &self,
        input: &mut R,
        data: &mut Stream,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let r = copy::send(
            input,
            data,
            &self.copy_options(),
            self.throttle(),
            &mut |_, local| progress.advance(local),
        )
        .await;
        r.map_err(|e| self.copy_error(e))
    }

    fn throttle(&self) -> &dyn Throttle {
        match &self.options.throttle {
            Some(t) => &**t,
            None => &Unlimited,
        }
    }

    fn copy_options(&self) -> CopyOptions {
        CopyOptions {
            ascii: self.is_ascii(),
            buffer: BUF_SIZE,
            // A TLS download cut without close_notify is a broken one.
            require_close_notify: true,
            ..CopyOptions::new(self.options.timeout)
        }
    }

    /// A failed copy as the client reports it: the network, a stall, or the local file.
    fn copy_error(&self, e: CopyError) -> Error {
        match e {
            CopyError::Wire(e) => Error::Network(e),
            CopyError::Truncated => Error::Network(io::Error::from(io::ErrorKind::UnexpectedEof)),
            CopyError::Stalled => Error::Timeout(format!(
                "on the data connection: nothing moved for {} s",
                self.options.timeout.as_secs()
            )),
            CopyError::Local(e) => Error::local(e),
        }
    }

    /// One read or write of a data connection, bounded by the timeout (a stalled transfer).
    pub(super) async fn data_io<T>(&self, op: impl Future<Output = io::Result<T>>) -> Result<T> {
        match timeout(self.options.timeout, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Error::Network(e)),
            Err(_) => Err(Error::Timeout(format!(
                "on the data connection: nothing moved for {} s",
                self.options.timeout.as_secs()
            ))),
        }
    }

    /// The reply that ends a transfer: 226 or 250 (after a few further 1xx at most).
    pub(super) async fn finish_transfer(&mut self, command: &ClientCommand<'_>) -> Result<()> {
        for _ in 0..10 {
            let reply = self.read_reply(&command.describe()).await?;
            if reply.code.is_preliminary() {
                continue;
            }
            if reply.code.is_completion() {
                return Ok(());
            }
            return Err(refused(command, reply));
        }
        self.broken = true;
        Err(Error::Protocol(format!(
            "{}: the server keeps sending preliminary replies",
            command.describe()
        )))
    }

    /// After a transfer broke on our side or on the data connection: the server's final reply
    /// tells why (a 451/552 beats "connection reset") and puts the session back in step. When
    /// it does not come soon, the session is out of step.
    pub(super) async fn after_broken_transfer(
        &mut self,
        e: Error,
        command: &ClientCommand<'_>,
    ) -> Error {
        let wait = self.options.timeout.min(Duration::from_secs(5));
        let what = command.describe();
        loop {
            match timeout(wait, self.read_reply(&what)).await {
                Ok(Ok(reply)) if reply.code.is_preliminary() => continue,
                Ok(Ok(reply)) => {
                    let server_said_why = reply.code.is_negative()
                        && matches!(e, Error::Network(_) | Error::Timeout(_));
                    return if server_said_why {
                        refused(command, reply)
                    } else {
                        e
                    };
                }
                Ok(Err(_)) | Err(_) => {
                    self.broken = true;
                    return e;
                }
            }
        }
    }

    fn log_transfer(&self, bytes: u64, started: Instant) {
        let secs = started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 {
            format_rate(bytes as f64 / secs)
        } else {
            "-".into()
        };
        self.log_status(format!(
            "File transfer successful, transferred {bytes} bytes in {secs:.3} seconds ({rate})"
        ));
    }
}
