//! The commands that need no data connection: directories, renames, sizes and times.

use wharf_proto::client::{ClientCommand, parse_257};
use wharf_proto::entry::{self, Entry, MlsxLine};
use wharf_proto::{ReplyCode, UtcTime};

use super::{Client, SetTime, refused};
use crate::error::{Error, Result};

impl Client {
    pub async fn mkdir(&mut self, path: &[u8]) -> Result<()> {
        self.run_ok(&ClientCommand::Mkd(path)).await.map(drop)
    }

    pub async fn rmdir(&mut self, path: &[u8]) -> Result<()> {
        self.run_ok(&ClientCommand::Rmd(path)).await.map(drop)
    }

    pub async fn delete(&mut self, path: &[u8]) -> Result<()> {
        self.run_ok(&ClientCommand::Dele(path)).await.map(drop)
    }

    pub async fn cwd(&mut self, path: &[u8]) -> Result<()> {
        self.run_ok(&ClientCommand::Cwd(path)).await.map(drop)
    }

    /// RNFR + RNTO.
    pub async fn rename(&mut self, from: &[u8], to: &[u8]) -> Result<()> {
        let rnfr = ClientCommand::Rnfr(from);
        let reply = self.run(&rnfr).await?;
        if reply.code != ReplyCode::PENDING_FURTHER_INFO {
            return Err(refused(&rnfr, reply));
        }
        self.run_ok(&ClientCommand::Rnto(to)).await.map(drop)
    }

    /// The current directory, from PWD's 257 reply (RFC 959 quoting: `""` is one quote).
    pub async fn pwd(&mut self) -> Result<Vec<u8>> {
        let reply = self.run_ok(&ClientCommand::Pwd).await?;
        let text = reply.lines.last().cloned().unwrap_or_default();
        parse_257(&text).ok_or_else(|| Error::Protocol("PWD reply without a quoted path".into()))
    }

    /// True when `path` is a directory the server lets us enter (CWD there and back).
    pub async fn is_dir(&mut self, path: &[u8]) -> Result<bool> {
        let home = match self.home.clone() {
            Some(h) => h,
            None => {
                let h = self.pwd().await?;
                self.home = Some(h.clone());
                h
            }
        };
        let cwd = ClientCommand::Cwd(path);
        let reply = self.run(&cwd).await?;
        if !reply.code.is_completion() {
            if reply.code.closes_session() {
                return Err(refused(&cwd, reply));
            }
            return Ok(false);
        }
        self.cwd(&home).await?;
        Ok(true)
    }

    /// The size of a file (SIZE, RFC 3659), `None` when the server cannot tell.
    pub async fn size(&mut self, path: &[u8]) -> Result<Option<u64>> {
        self.ensure_type().await?;
        let size = ClientCommand::Size(path);
        let reply = self.run(&size).await?;
        match reply.code {
            ReplyCode::FILE_STATUS => {
                let text = String::from_utf8_lossy(reply.lines.last().map_or(&[][..], |l| l));
                text.trim()
                    .parse()
                    .map(Some)
                    .map_err(|_| Error::Protocol(format!("SIZE reply {text:?} is not a number")))
            }
            code if code.closes_session() => Err(refused(&size, reply)),
            _ => Ok(None),
        }
    }

    /// The facts of one path (MLST, RFC 3659 §7), `None` when the server does not offer MLST or
    /// refuses it for this path (no such file: 550).
    pub async fn mlst(&mut self, path: &[u8]) -> Result<Option<Entry>> {
        Ok(self.mlst_line(path).await?.as_deref().and_then(mlst_entry))
    }

    /// MLST's facts line for `path` (`type=file;size=12; name`), as sent; `None` as for
    /// [`Client::mlst`].
    pub async fn mlst_line(&mut self, path: &[u8]) -> Result<Option<Vec<u8>>> {
        if !self.features.mlst {
            return Ok(None);
        }
        let mlst = ClientCommand::Mlst(path);
        let reply = self.run(&mlst).await?;
        if reply.code.closes_session() {
            return Err(refused(&mlst, reply));
        }
        if !reply.code.is_completion() {
            return Ok(None);
        }
        // 250-Listing / " facts; name" / 250 End: the entry is the line starting with a space.
        Ok(reply
            .lines
            .iter()
            .find_map(|line| line.strip_prefix(b" ").map(<[u8]>::to_vec)))
    }

    /// The modification time of a file (MDTM, RFC 3659 §3), seconds since the epoch (UTC);
    /// `None` when the server cannot tell.
    pub async fn mdtm(&mut self, path: &[u8]) -> Result<Option<i64>> {
        let mdtm = ClientCommand::Mdtm(path);
        let reply = self.run(&mdtm).await?;
        match reply.code {
            ReplyCode::FILE_STATUS => {
                let text = reply.lines.last().cloned().unwrap_or_default();
                let text = String::from_utf8_lossy(&text);
                Ok(UtcTime::parse_timeval(text.trim().as_bytes()).map(UtcTime::to_unix))
            }
            code if code.closes_session() => Err(refused(&mdtm, reply)),
            _ => Ok(None),
        }
    }

    /// Sets the modification time of a file: MFMT (the draft every current server follows),
    /// else the two-argument MDTM that vsftpd takes. False when the server does neither.
    pub async fn set_mtime(&mut self, path: &[u8], unix: i64) -> Result<bool> {
        let time = UtcTime::from_unix(unix);
        if self.set_time == SetTime::Mfmt {
            let mfmt = ClientCommand::Mfmt(time, path);
            let reply = self.run(&mfmt).await?;
            if reply.code.closes_session() {
                return Err(refused(&mfmt, reply));
            }
            if reply.code.is_completion() {
                return Ok(true);
            }
            // Another refusal (no such file, not allowed) MDTM would share.
            if !reply.code.is_unknown_command() {
                return Ok(false);
            }
            self.set_time = SetTime::MdtmOnly;
        }
        let mdtm = ClientCommand::MdtmSet(time, path);
        let reply = self.run(&mdtm).await?;
        if reply.code.closes_session() {
            return Err(refused(&mdtm, reply));
        }
        // MFMT answers 213; vsftpd's MDTM answers 213 too, others 200 or 253.
        Ok(reply.code.is_completion())
    }
}

/// The entry of an MLST facts line. MLST gives the path as asked: its last component is the
/// name.
pub fn mlst_entry(line: &[u8]) -> Option<Entry> {
    match entry::parse_mlsx_line(line)? {
        MlsxLine::Entry(mut e) => {
            if let Some(i) = e.name.iter().rposition(|&b| b == b'/') {
                e.name.drain(..=i);
            }
            Some(e)
        }
        MlsxLine::SelfOrParent => None,
    }
}

/// `12.3 MB/s`, decimal units as network rates are given.
pub fn format_rate(bytes_per_sec: f64) -> String {
    const UNITS: [&str; 5] = ["B/s", "kB/s", "MB/s", "GB/s", "TB/s"];
    let mut v = bytes_per_sec;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(format_rate(0.0), "0.0 B/s");
        assert_eq!(format_rate(999.0), "999.0 B/s");
        assert_eq!(format_rate(12_300_000.0), "12.3 MB/s");
        assert_eq!(format_rate(5e15), "5000.0 TB/s");
    }

    #[test]
    fn mlst_entry_is_named_by_its_last_component() {
        let e = mlst_entry(b"type=file;size=12; /pub/notes.txt").unwrap();
        assert_eq!(e.name, b"notes.txt");
        assert!(mlst_entry(b"type=cdir; /pub").is_none());
    }
}
