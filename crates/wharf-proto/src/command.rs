//! Commands: the control-line buffer (line limit, Telnet bytes) and the parser from a line to a
//! [`Command`]. Adding a command is one variant here, one arm in [`Command::parse`] and one
//! handler in the server's dispatch `match`.

use std::net::{SocketAddr, SocketAddrV4};

use crate::hash::HashAlgorithm;
use crate::hostport::{self, EpsvArg, HostPortError};
use crate::reply::{Reply, ReplyCode};
use crate::time::UtcTime;

/// Longest command line accepted, CRLF included. A path can be 4096 bytes on Linux; the verb,
/// a space and CRLF fit in the rest.
pub const MAX_LINE: usize = 4096 + 64;

/// TYPE's representation types (RFC 959 §3.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferType {
    /// `A` / `A N`: line endings converted.
    Ascii,
    /// `I` / `L 8`: bytes as they are.
    Image,
}

/// `OPTS` forms the server understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opts {
    Utf8(bool),
    /// `OPTS MLST fact;fact;` (the fact list, unparsed).
    Mlst(Vec<u8>),
    /// `OPTS HASH [name]`: ask for the session's hash algorithm, or choose one (the name as
    /// sent; the session says whether it knows it).
    Hash(Option<Vec<u8>>),
}

/// `SITE` sub-commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Site {
    Chmod {
        mode: u32,
        path: Vec<u8>,
    },
    Help,
    /// What the server sees of this session (its address, the passive setup, TLS, the last
    /// data connections that failed): a diagnosis from the server's end.
    Diag,
    /// A SITE command the server does not know (answered 500 by the server).
    Unknown(Vec<u8>),
}

/// PROT levels (RFC 2228 §3): Clear and Private are what TLS offers (RFC 4217 §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtLevel {
    Clear,
    Private,
    /// `S` (safe) or `E` (confidential): valid levels that TLS cannot provide (536).
    Unsupported,
}

/// A parsed command. Path arguments stay bytes.
/// Not `#[non_exhaustive]` on purpose: the server's dispatch is one exhaustive `match`, so a new
/// variant fails to compile until it has a handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    User(Vec<u8>),
    Pass(Vec<u8>),
    Acct,
    Cwd(Vec<u8>),
    Cdup,
    Quit,
    Rein,
    Port(SocketAddrV4),
    Pasv,
    Eprt(SocketAddr),
    Epsv(EpsvArg),
    Type(TransferType),
    Stru,
    Mode,
    Retr(Vec<u8>),
    Stor(Vec<u8>),
    Stou,
    Appe(Vec<u8>),
    Allo,
    Rest(u64),
    Rnfr(Vec<u8>),
    Rnto(Vec<u8>),
    Abor,
    Dele(Vec<u8>),
    Rmd(Vec<u8>),
    Mkd(Vec<u8>),
    Pwd,
    /// LIST: `ls` options such as `-la` are dropped; the path, if any, remains.
    List(Option<Vec<u8>>),
    Nlst(Option<Vec<u8>>),
    Site(Site),
    Syst,
    Stat(Option<Vec<u8>>),
    Help(Option<Vec<u8>>),
    Noop,
    Feat,
    Opts(Opts),
    Size(Vec<u8>),
    Mdtm(Vec<u8>),
    Mfmt {
        time: UtcTime,
        path: Vec<u8>,
    },
    Mlst(Option<Vec<u8>>),
    Mlsd(Option<Vec<u8>>),
    Host(Vec<u8>),
    /// `AUTH TLS` (also `TLS-C`, `SSL`, `TLS-P`): start TLS on the control connection.
    Auth,
    /// `PBSZ n` (RFC 4217: the size is 0 for TLS; other values are answered with `PBSZ=0`).
    Pbsz(u64),
    Prot(ProtLevel),
    Ccc,
    /// `HASH path` (draft-bryan-ftpext-hash): the whole file, with the session's algorithm.
    Hash(Vec<u8>),
    /// `XSHA1`, `XSHA256`, `XSHA512`, `XMD5`, `XCRC`: `path [start end]`, the bytes from
    /// `start` up to (not including) `end`, or the whole file.
    XHash {
        algorithm: HashAlgorithm,
        path: Vec<u8>,
        range: Option<(u64, u64)>,
    },
}

/// Why a line is not a command the server can run. Each maps to one reply in [`ParseError::reply`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("unknown command")]
    Unknown,
    #[error("command not implemented")]
    NotImplemented,
    #[error("missing argument")]
    MissingArgument,
    #[error("bad argument")]
    BadArgument,
    #[error("parameter not implemented")]
    ParameterNotImplemented,
    /// EPRT/EPSV with a network protocol other than IPv4/IPv6.
    #[error("network protocol not supported")]
    UnsupportedProtocol,
}

impl ParseError {
    /// The reply for this error: the one place where parse errors become reply codes.
    pub fn reply(&self) -> Reply {
        match self {
            ParseError::Unknown => Reply::new(ReplyCode::SYNTAX_ERROR, "Unknown command."),
            ParseError::NotImplemented => {
                Reply::new(ReplyCode::NOT_IMPLEMENTED, "Command not implemented.")
            }
            ParseError::MissingArgument => Reply::new(
                ReplyCode::PARAMETER_SYNTAX_ERROR,
                "Syntax error: argument required.",
            ),
            ParseError::BadArgument => Reply::new(
                ReplyCode::PARAMETER_SYNTAX_ERROR,
                "Syntax error in parameters or arguments.",
            ),
            ParseError::ParameterNotImplemented => Reply::new(
                ReplyCode::PARAMETER_NOT_IMPLEMENTED,
                "Command not implemented for that parameter.",
            ),
            ParseError::UnsupportedProtocol => Reply::new(
                ReplyCode::NETWORK_PROTOCOL_NOT_SUPPORTED,
                "Network protocol not supported, use (1,2)",
            ),
        }
    }
}

impl From<HostPortError> for ParseError {
    fn from(e: HostPortError) -> ParseError {
        match e {
            HostPortError::UnknownProtocol => ParseError::UnsupportedProtocol,
            _ => ParseError::BadArgument,
        }
    }
}

impl Command {
    /// Parses one line (without CRLF, Telnet bytes already removed). The verb is
    /// case-insensitive; the argument is everything after the first space, kept as bytes.
    pub fn parse(line: &[u8]) -> Result<Command, ParseError> {
        let (verb, arg) = match line.iter().position(|&b| b == b' ') {
            Some(i) => (&line[..i], Some(&line[i + 1..])),
            None => (line, None),
        };
        // Letters, and digits after the first (XSHA256).
        let well_formed = verb.first().is_some_and(u8::is_ascii_alphabetic)
            && verb.iter().all(u8::is_ascii_alphanumeric);
        if verb.len() > 8 || !well_formed {
            return Err(ParseError::Unknown);
        }
        let verb = verb.to_ascii_uppercase();
        // An argument of only spaces counts as none.
        let arg = arg.filter(|a| !a.iter().all(|&b| b == b' '));
        let need = || arg.map(<[u8]>::to_vec).ok_or(ParseError::MissingArgument);
        let opt = || arg.map(<[u8]>::to_vec);
        let none = |c: Command| Ok(c);
        match verb.as_slice() {
            b"USER" => need().map(Command::User),
            // Some clients send an empty password; that is a wrong password, not a syntax error.
            b"PASS" => Ok(Command::Pass(opt().unwrap_or_default())),
            b"ACCT" => need().map(|_| Command::Acct),
            b"CWD" | b"XCWD" => need().map(Command::Cwd),
            b"CDUP" | b"XCUP" => none(Command::Cdup),
            b"QUIT" => none(Command::Quit),
            b"REIN" => none(Command::Rein),
            b"PORT" => Ok(Command::Port(hostport::parse_port(&need()?)?)),
            b"PASV" => none(Command::Pasv),
            b"EPRT" => Ok(Command::Eprt(hostport::parse_eprt(&need()?)?)),
            b"EPSV" => Ok(Command::Epsv(hostport::parse_epsv_arg(
                arg.unwrap_or_default(),
            )?)),
            b"TYPE" => parse_type(&need()?).map(Command::Type),
            b"STRU" => match need()?.to_ascii_uppercase().as_slice() {
                b"F" => Ok(Command::Stru),
                b"R" | b"P" => Err(ParseError::ParameterNotImplemented),
                _ => Err(ParseError::BadArgument),
            },
            b"MODE" => match need()?.to_ascii_uppercase().as_slice() {
                b"S" => Ok(Command::Mode),
                b"B" | b"C" | b"Z" => Err(ParseError::ParameterNotImplemented),
                _ => Err(ParseError::BadArgument),
            },
            b"RETR" => need().map(Command::Retr),
            b"STOR" => need().map(Command::Stor),
            b"STOU" => none(Command::Stou),
            b"APPE" => need().map(Command::Appe),
            b"ALLO" => none(Command::Allo),
            b"REST" => {
                let a = need()?;
                let text = std::str::from_utf8(&a).map_err(|_| ParseError::BadArgument)?;
                if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ParseError::BadArgument);
                }
                text.parse()
                    .map(Command::Rest)
                    .map_err(|_| ParseError::BadArgument)
            }
            b"RNFR" => need().map(Command::Rnfr),
            b"RNTO" => need().map(Command::Rnto),
            b"ABOR" => none(Command::Abor),
            b"DELE" => need().map(Command::Dele),
            b"RMD" | b"XRMD" => need().map(Command::Rmd),
            b"MKD" | b"XMKD" => need().map(Command::Mkd),
            b"PWD" | b"XPWD" => none(Command::Pwd),
            b"LIST" => Ok(Command::List(strip_ls_options(arg))),
            b"NLST" => Ok(Command::Nlst(strip_ls_options(arg))),
            b"SITE" => parse_site(&need()?).map(Command::Site),
            b"SYST" => none(Command::Syst),
            b"STAT" => Ok(Command::Stat(strip_ls_options(arg))),
            b"HELP" => Ok(Command::Help(opt())),
            b"NOOP" => none(Command::Noop),
            b"FEAT" => none(Command::Feat),
            b"OPTS" => parse_opts(&need()?).map(Command::Opts),
            b"SIZE" => need().map(Command::Size),
            b"MDTM" => need().map(Command::Mdtm),
            b"MFMT" => {
                let a = need()?;
                let sp = a
                    .iter()
                    .position(|&b| b == b' ')
                    .ok_or(ParseError::BadArgument)?;
                let time = UtcTime::parse_timeval(&a[..sp]).ok_or(ParseError::BadArgument)?;
                let path = a[sp + 1..].to_vec();
                if path.is_empty() {
                    return Err(ParseError::BadArgument);
                }
                Ok(Command::Mfmt { time, path })
            }
            b"MLST" => Ok(Command::Mlst(opt())),
            b"MLSD" => Ok(Command::Mlsd(opt())),
            b"HOST" => need().map(Command::Host),
            b"AUTH" => match need()?.to_ascii_uppercase().as_slice() {
                b"TLS" | b"TLS-C" | b"SSL" | b"TLS-P" => Ok(Command::Auth),
                _ => Err(ParseError::ParameterNotImplemented),
            },
            b"PBSZ" => {
                let a = need()?;
                let text = std::str::from_utf8(&a).map_err(|_| ParseError::BadArgument)?;
                if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(ParseError::BadArgument);
                }
                text.parse()
                    .map(Command::Pbsz)
                    .map_err(|_| ParseError::BadArgument)
            }
            b"PROT" => match need()?.to_ascii_uppercase().as_slice() {
                b"C" => Ok(Command::Prot(ProtLevel::Clear)),
                b"P" => Ok(Command::Prot(ProtLevel::Private)),
                b"S" | b"E" => Ok(Command::Prot(ProtLevel::Unsupported)),
                _ => Err(ParseError::ParameterNotImplemented),
            },
            b"CCC" => none(Command::Ccc),
            b"HASH" => need().map(Command::Hash),
            x if HashAlgorithm::from_x_verb(x).is_some() => {
                let algorithm = HashAlgorithm::from_x_verb(x).ok_or(ParseError::Unknown)?;
                parse_x_hash(algorithm, &need()?)
            }
            // Known verbs this server does not offer (other security mechanisms, record/block modes).
            b"ADAT" | b"MIC" | b"CONF" | b"ENC" | b"SMNT" | b"LANG" | b"LPRT" | b"LPSV"
            | b"XSEN" | b"XSEM" | b"MAIL" | b"MLFL" | b"MRCP" | b"MRSQ" | b"MSAM" | b"MSND"
            | b"MSOM" => Err(ParseError::NotImplemented),
            _ => Err(ParseError::Unknown),
        }
    }

    /// The verb, for logs. PASS never shows its argument.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::User(_) => "USER",
            Command::Pass(_) => "PASS",
            Command::Acct => "ACCT",
            Command::Cwd(_) => "CWD",
            Command::Cdup => "CDUP",
            Command::Quit => "QUIT",
            Command::Rein => "REIN",
            Command::Port(_) => "PORT",
            Command::Pasv => "PASV",
            Command::Eprt(_) => "EPRT",
            Command::Epsv(_) => "EPSV",
            Command::Type(_) => "TYPE",
            Command::Stru => "STRU",
            Command::Mode => "MODE",
            Command::Retr(_) => "RETR",
            Command::Stor(_) => "STOR",
            Command::Stou => "STOU",
            Command::Appe(_) => "APPE",
            Command::Allo => "ALLO",
            Command::Rest(_) => "REST",
            Command::Rnfr(_) => "RNFR",
            Command::Rnto(_) => "RNTO",
            Command::Abor => "ABOR",
            Command::Dele(_) => "DELE",
            Command::Rmd(_) => "RMD",
            Command::Mkd(_) => "MKD",
            Command::Pwd => "PWD",
            Command::List(_) => "LIST",
            Command::Nlst(_) => "NLST",
            Command::Site(_) => "SITE",
            Command::Syst => "SYST",
            Command::Stat(_) => "STAT",
            Command::Help(_) => "HELP",
            Command::Noop => "NOOP",
            Command::Feat => "FEAT",
            Command::Opts(_) => "OPTS",
            Command::Size(_) => "SIZE",
            Command::Mdtm(_) => "MDTM",
            Command::Mfmt { .. } => "MFMT",
            Command::Mlst(_) => "MLST",
            Command::Mlsd(_) => "MLSD",
            Command::Host(_) => "HOST",
            Command::Auth => "AUTH",
            Command::Pbsz(_) => "PBSZ",
            Command::Prot(_) => "PROT",
            Command::Ccc => "CCC",
            Command::Hash(_) => "HASH",
            Command::XHash { algorithm, .. } => algorithm.x_verb(),
        }
    }
}

/// The verbs HELP lists: every command [`Command::parse`] accepts.
pub const HELP_VERBS: &[&str] = &[
    "ABOR", "ACCT", "ALLO", "APPE", "AUTH", "CCC", "CDUP", "CWD", "DELE", "EPRT", "EPSV", "FEAT",
    "HASH", "HELP", "HOST", "LIST", "MDTM", "MFMT", "MKD", "MLSD", "MLST", "MODE", "NLST", "NOOP",
    "OPTS", "PASS", "PASV", "PBSZ", "PORT", "PROT", "PWD", "QUIT", "REIN", "REST", "RETR", "RMD",
    "RNFR", "RNTO", "SITE", "SIZE", "STAT", "STOR", "STOU", "STRU", "SYST", "TYPE", "USER", "XCRC",
    "XCUP", "XCWD", "XMD5", "XMKD", "XPWD", "XRMD", "XSHA1", "XSHA256", "XSHA512",
];

fn parse_type(arg: &[u8]) -> Result<TransferType, ParseError> {
    let upper = arg.to_ascii_uppercase();
    let mut words = upper.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let first = words.next().ok_or(ParseError::BadArgument)?;
    let second = words.next();
    if words.next().is_some() {
        return Err(ParseError::BadArgument);
    }
    match (first, second) {
        (b"A", None | Some(b"N")) => Ok(TransferType::Ascii),
        (b"A" | b"E", Some(b"T" | b"C")) | (b"E", None | Some(b"N")) => {
            Err(ParseError::ParameterNotImplemented)
        }
        (b"I", None) | (b"L", Some(b"8")) => Ok(TransferType::Image),
        (b"L", Some(_)) => Err(ParseError::ParameterNotImplemented),
        _ => Err(ParseError::BadArgument),
    }
}

fn parse_opts(arg: &[u8]) -> Result<Opts, ParseError> {
    let (name, rest) = match arg.iter().position(|&b| b == b' ') {
        Some(i) => (&arg[..i], arg[i + 1..].trim_ascii()),
        None => (arg, &[][..]),
    };
    if name.eq_ignore_ascii_case(b"UTF8") || name.eq_ignore_ascii_case(b"UTF-8") {
        return match rest.to_ascii_uppercase().as_slice() {
            b"ON" | b"" => Ok(Opts::Utf8(true)),
            b"OFF" => Ok(Opts::Utf8(false)),
            _ => Err(ParseError::BadArgument),
        };
    }
    if name.eq_ignore_ascii_case(b"MLST") {
        return Ok(Opts::Mlst(rest.to_vec()));
    }
    if name.eq_ignore_ascii_case(b"HASH") {
        return Ok(Opts::Hash((!rest.is_empty()).then(|| rest.to_vec())));
    }
    Err(ParseError::BadArgument)
}

fn parse_site(arg: &[u8]) -> Result<Site, ParseError> {
    let mut parts = arg.splitn(3, |&b| b == b' ');
    let sub = parts.next().unwrap_or_default().to_ascii_uppercase();
    match sub.as_slice() {
        b"HELP" => Ok(Site::Help),
        b"DIAG" => Ok(Site::Diag),
        b"CHMOD" => {
            let mode = parts.next().ok_or(ParseError::MissingArgument)?;
            let path = parts.next().ok_or(ParseError::MissingArgument)?;
            let text = std::str::from_utf8(mode).map_err(|_| ParseError::BadArgument)?;
            let mode = u32::from_str_radix(text, 8).map_err(|_| ParseError::BadArgument)?;
            // Permission bits only: no setuid, setgid or sticky bit from a remote user.
            if mode > 0o777 || path.is_empty() {
                return Err(ParseError::BadArgument);
            }
            Ok(Site::Chmod {
                mode,
                path: path.to_vec(),
            })
        }
        _ => Ok(Site::Unknown(sub)),
    }
}

/// An `X` hash command's argument: `path`, or `path start end`.
///
/// The two numbers are the last two words, when both are decimal and something is left before
/// them for the path; `start` must be below `end` (as ProFTPD requires). A name that itself ends
/// in two numeric words ("disc 1 2") is read as a range, so such a file can be hashed whole
/// only with HASH. A single trailing number is part of the name ("track 12"): ProFTPD refuses
/// that form, so no client sends `path start`, and such names are common.
fn parse_x_hash(algorithm: HashAlgorithm, arg: &[u8]) -> Result<Command, ParseError> {
    let whole = || {
        Ok(Command::XHash {
            algorithm,
            path: arg.to_vec(),
            range: None,
        })
    };
    let number = |w: &[u8]| -> Option<u64> {
        if w.is_empty() || !w.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(w).ok()?.parse().ok()
    };
    let mut words = arg.rsplitn(3, |&b| b == b' ');
    let (Some(last), Some(before), Some(path)) = (words.next(), words.next(), words.next()) else {
        return whole();
    };
    let (Some(start), Some(end)) = (number(before), number(last)) else {
        return whole();
    };
    if path.is_empty() {
        return whole();
    }
    if start >= end {
        return Err(ParseError::BadArgument);
    }
    Ok(Command::XHash {
        algorithm,
        path: path.to_vec(),
        range: Some((start, end)),
    })
}

/// Drops leading `ls` options (`-a`, `-la`, `-l -a`) from a LIST/NLST/STAT argument, which many
/// clients send although RFC 959 knows no options. What remains is the path, if any.
fn strip_ls_options(arg: Option<&[u8]>) -> Option<Vec<u8>> {
    let mut rest = arg?;
    while rest.first() == Some(&b'-') {
        match rest.iter().position(|&b| b == b' ') {
            Some(i) => rest = rest[i + 1..].trim_ascii_start(),
            None => return None,
        }
    }
    (!rest.is_empty()).then(|| rest.to_vec())
}

/// What [`LineBuffer::next_line`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineEvent {
    /// A complete line, CR/LF and Telnet commands removed.
    Line(Vec<u8>),
    /// A line exceeded [`MAX_LINE`]; it is being discarded up to its end. Reply 500 once.
    TooLong,
}

/// Buffers bytes from the control connection and cuts them into lines, with a hard length limit
/// so that a peer cannot make the server buffer without bound. "Need more bytes" is `None`.
#[derive(Debug, Default)]
pub struct LineBuffer {
    buf: Vec<u8>,
    /// Inside an over-long line: drop bytes until its LF.
    discarding: bool,
}

impl LineBuffer {
    pub fn new() -> LineBuffer {
        LineBuffer::default()
    }

    /// The buffer to read into (append only).
    pub fn buffer_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Whether unprocessed bytes are buffered (a pipelined command).
    pub fn has_pending(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Drops everything buffered (used after AUTH TLS: nothing sent before the handshake may run
    /// after it).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.discarding = false;
    }

    /// Takes the next line or reports an over-long one.
    pub fn next_line(&mut self) -> Option<LineEvent> {
        loop {
            let lf = self.buf.iter().position(|&b| b == b'\n');
            if self.discarding {
                match lf {
                    Some(i) => {
                        self.buf.drain(..=i);
                        self.discarding = false;
                        continue;
                    }
                    None => {
                        self.buf.clear();
                        return None;
                    }
                }
            }
            return match lf {
                Some(i) if i < MAX_LINE => {
                    let raw: Vec<u8> = self.buf.drain(..=i).collect();
                    if self.buf.is_empty() && self.buf.capacity() > 4096 {
                        self.buf = Vec::new();
                    }
                    Some(LineEvent::Line(strip_telnet(&raw[..i])))
                }
                Some(i) => {
                    self.buf.drain(..=i);
                    Some(LineEvent::TooLong)
                }
                None if self.buf.len() >= MAX_LINE => {
                    self.buf = Vec::new();
                    self.discarding = true;
                    Some(LineEvent::TooLong)
                }
                None => None,
            };
        }
    }
}

const IAC: u8 = 255;

/// Removes Telnet commands (IAC IP, IAC DM, option negotiation) from a raw line, undoes IAC
/// doubling, and drops the trailing CR.
fn strip_telnet(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        if b != IAC {
            out.push(b);
            i += 1;
            continue;
        }
        match raw.get(i + 1) {
            Some(&IAC) => {
                out.push(IAC);
                i += 2;
            }
            // WILL, WONT, DO, DONT carry an option byte.
            Some(251..=254) => i += 3,
            // IP, DM, AYT, NOP and the other Telnet commands.
            Some(240..=250) => i += 2,
            // Not a Telnet command: most clients send a 0xFF byte of a file name as it is,
            // without doubling it, so keep it.
            _ => {
                out.push(IAC);
                i += 1;
            }
        }
    }
    if out.last() == Some(&b'\r') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &[u8]) -> Result<Command, ParseError> {
        Command::parse(s)
    }

    #[test]
    fn simple_commands() {
        let cases: Vec<(&[u8], Command)> = vec![
            (b"USER bob", Command::User(b"bob".to_vec())),
            (b"user bob", Command::User(b"bob".to_vec())),
            (b"PASS", Command::Pass(vec![])),
            (b"PASS s3 cret", Command::Pass(b"s3 cret".to_vec())),
            (b"ACCT x", Command::Acct),
            (b"CWD /a b", Command::Cwd(b"/a b".to_vec())),
            (b"XCWD x", Command::Cwd(b"x".to_vec())),
            (b"CDUP", Command::Cdup),
            (b"XCUP", Command::Cdup),
            (b"QUIT", Command::Quit),
            (b"REIN", Command::Rein),
            (
                b"PORT 127,0,0,1,4,1",
                Command::Port("127.0.0.1:1025".parse().unwrap()),
            ),
            (b"PASV", Command::Pasv),
            (
                b"EPRT |2|::1|2000|",
                Command::Eprt("[::1]:2000".parse().unwrap()),
            ),
            (b"EPSV", Command::Epsv(EpsvArg::Any)),
            (b"EPSV ALL", Command::Epsv(EpsvArg::All)),
            (b"EPSV 1", Command::Epsv(EpsvArg::Protocol(1))),
            (b"TYPE A", Command::Type(TransferType::Ascii)),
            (b"TYPE A N", Command::Type(TransferType::Ascii)),
            (b"TYPE i", Command::Type(TransferType::Image)),
            (b"TYPE L 8", Command::Type(TransferType::Image)),
            (b"STRU F", Command::Stru),
            (b"MODE S", Command::Mode),
            (b"RETR f\xff", Command::Retr(b"f\xff".to_vec())),
            (b"STOR x", Command::Stor(b"x".to_vec())),
            (b"STOU", Command::Stou),
            (b"APPE x", Command::Appe(b"x".to_vec())),
            (b"ALLO 100", Command::Allo),
            (b"REST 100", Command::Rest(100)),
            (b"RNFR a", Command::Rnfr(b"a".to_vec())),
            (b"RNTO b", Command::Rnto(b"b".to_vec())),
            (b"ABOR", Command::Abor),
            (b"DELE a", Command::Dele(b"a".to_vec())),
            (b"RMD a", Command::Rmd(b"a".to_vec())),
            (b"XRMD a", Command::Rmd(b"a".to_vec())),
            (b"MKD a", Command::Mkd(b"a".to_vec())),
            (b"XMKD a", Command::Mkd(b"a".to_vec())),
            (b"PWD", Command::Pwd),
            (b"XPWD", Command::Pwd),
            (b"LIST", Command::List(None)),
            (b"LIST -la", Command::List(None)),
            (b"LIST -a -l dir", Command::List(Some(b"dir".to_vec()))),
            (b"LIST dir x", Command::List(Some(b"dir x".to_vec()))),
            (b"NLST -a", Command::Nlst(None)),
            (b"NLST d", Command::Nlst(Some(b"d".to_vec()))),
            (b"SITE HELP", Command::Site(Site::Help)),
            (b"SITE diag", Command::Site(Site::Diag)),
            (
                b"SITE CHMOD 755 a b",
                Command::Site(Site::Chmod {
                    mode: 0o755,
                    path: b"a b".to_vec(),
                }),
            ),
            (b"SITE FOO", Command::Site(Site::Unknown(b"FOO".to_vec()))),
            (b"SYST", Command::Syst),
            (b"STAT", Command::Stat(None)),
            (b"STAT -l x", Command::Stat(Some(b"x".to_vec()))),
            (b"HELP", Command::Help(None)),
            (b"HELP USER", Command::Help(Some(b"USER".to_vec()))),
            (b"NOOP", Command::Noop),
            (b"FEAT", Command::Feat),
            (b"OPTS UTF8 ON", Command::Opts(Opts::Utf8(true))),
            (b"OPTS utf8 off", Command::Opts(Opts::Utf8(false))),
            (
                b"OPTS MLST type;size;",
                Command::Opts(Opts::Mlst(b"type;size;".to_vec())),
            ),
            (b"SIZE x", Command::Size(b"x".to_vec())),
            (b"MDTM x", Command::Mdtm(b"x".to_vec())),
            (b"MLST", Command::Mlst(None)),
            (b"MLSD d", Command::Mlsd(Some(b"d".to_vec()))),
            (
                b"HOST ftp.example.net",
                Command::Host(b"ftp.example.net".to_vec()),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line), Ok(want), "{}", String::from_utf8_lossy(line));
        }
        let Ok(Command::Mfmt { time, path }) = parse(b"MFMT 20240101120000 a b") else {
            panic!("MFMT")
        };
        assert_eq!(time.to_timeval(), "20240101120000");
        assert_eq!(path, b"a b");
    }

    #[test]
    fn security_commands() {
        assert_eq!(parse(b"auth tls"), Ok(Command::Auth));
        assert_eq!(parse(b"AUTH SSL"), Ok(Command::Auth));
        assert_eq!(parse(b"PBSZ 0"), Ok(Command::Pbsz(0)));
        assert_eq!(parse(b"PBSZ 1024"), Ok(Command::Pbsz(1024)));
        assert_eq!(parse(b"PROT p"), Ok(Command::Prot(ProtLevel::Private)));
        assert_eq!(parse(b"PROT C"), Ok(Command::Prot(ProtLevel::Clear)));
        assert_eq!(parse(b"PROT E"), Ok(Command::Prot(ProtLevel::Unsupported)));
        assert_eq!(parse(b"CCC"), Ok(Command::Ccc));
    }

    #[test]
    fn errors_map_to_codes() {
        let code = |l: &[u8]| parse(l).unwrap_err().reply().code.0;
        assert_eq!(code(b""), 500);
        assert_eq!(code(b"FOO"), 500);
        assert_eq!(code(b"US3R x"), 500);
        assert_eq!(code(b"AUTH KERBEROS_V4"), 504);
        assert_eq!(code(b"AUTH"), 501);
        assert_eq!(code(b"PBSZ x"), 501);
        assert_eq!(code(b"PROT Q"), 504);
        assert_eq!(code(b"ADAT x"), 502);
        assert_eq!(code(b"LPRT x"), 502);
        assert_eq!(code(b"USER"), 501);
        assert_eq!(code(b"USER   "), 501);
        assert_eq!(code(b"RETR"), 501);
        assert_eq!(code(b"PORT 1,2,3"), 501);
        assert_eq!(code(b"REST -1"), 501);
        assert_eq!(code(b"REST abc"), 501);
        assert_eq!(code(b"TYPE X"), 501);
        assert_eq!(code(b"TYPE E"), 504);
        assert_eq!(code(b"TYPE L 7"), 504);
        assert_eq!(code(b"MODE B"), 504);
        assert_eq!(code(b"MODE Q"), 501);
        assert_eq!(code(b"STRU R"), 504);
        assert_eq!(code(b"EPRT |3|x|1|"), 522);
        assert_eq!(code(b"EPSV 7"), 522);
        assert_eq!(code(b"EPRT garbage"), 501);
        assert_eq!(code(b"MFMT 2024 x"), 501);
        assert_eq!(code(b"MFMT 20240101000000"), 501);
        assert_eq!(code(b"SITE CHMOD 999 x"), 501);
        assert_eq!(code(b"SITE CHMOD 4755 x"), 501);
        assert_eq!(code(b"SITE CHMOD 755"), 501);
        assert_eq!(code(b"OPTS FOO"), 501);
    }

    #[test]
    fn hash_commands() {
        use crate::hash::HashAlgorithm::*;
        assert_eq!(parse(b"HASH a b"), Ok(Command::Hash(b"a b".to_vec())));
        assert_eq!(parse(b"hash x"), Ok(Command::Hash(b"x".to_vec())));
        let x = |algorithm, path: &[u8], range| Command::XHash {
            algorithm,
            path: path.to_vec(),
            range,
        };
        let cases: Vec<(&[u8], Command)> = vec![
            (b"XSHA256 a.txt", x(Sha256, b"a.txt", None)),
            (b"xsha1 a.txt 0 5", x(Sha1, b"a.txt", Some((0, 5)))),
            (b"XSHA512 my file 2 9", x(Sha512, b"my file", Some((2, 9)))),
            (b"XMD5 track 12", x(Md5, b"track 12", None)),
            (b"XCRC 0 5", x(Crc32, b"0 5", None)),
            (b"XCRC a 1 x", x(Crc32, b"a 1 x", None)),
            (b"XCRC a -1 5", x(Crc32, b"a -1 5", None)),
        ];
        for (line, want) in cases {
            assert_eq!(parse(line), Ok(want), "{}", String::from_utf8_lossy(line));
        }
        assert_eq!(parse(b"XCRC a").unwrap().verb(), "XCRC");
        assert_eq!(parse(b"XSHA256 a").unwrap().verb(), "XSHA256");
        assert_eq!(parse(b"OPTS HASH"), Ok(Command::Opts(Opts::Hash(None))));
        assert_eq!(
            parse(b"OPTS hash sha-512"),
            Ok(Command::Opts(Opts::Hash(Some(b"sha-512".to_vec()))))
        );
        let code = |l: &[u8]| parse(l).unwrap_err().reply().code.0;
        assert_eq!(code(b"HASH"), 501);
        assert_eq!(code(b"XSHA256"), 501);
        assert_eq!(code(b"XMD5 a 5 2"), 501, "start after end");
        assert_eq!(code(b"XMD5 a 5 5"), 501, "an empty range");
        assert_eq!(code(b"XSHA384 a"), 500);
        assert_eq!(code(b"9SHA a"), 500);
    }

    #[test]
    fn verb_of_pass_hides_password() {
        assert_eq!(parse(b"PASS hunter2").unwrap().verb(), "PASS");
    }

    #[test]
    fn line_buffer_splits_lines_and_strips_telnet() {
        let mut lb = LineBuffer::new();
        lb.buffer_mut()
            .extend_from_slice(b"NOOP\r\n\xff\xf4\xff\xf2ABOR\r\nUSER a\xff\xffb\nPA");
        assert_eq!(lb.next_line(), Some(LineEvent::Line(b"NOOP".to_vec())));
        assert_eq!(lb.next_line(), Some(LineEvent::Line(b"ABOR".to_vec())));
        assert_eq!(
            lb.next_line(),
            Some(LineEvent::Line(b"USER a\xffb".to_vec()))
        );
        assert_eq!(lb.next_line(), None);
        assert!(lb.has_pending());
        lb.buffer_mut().extend_from_slice(b"SS x\r\n");
        assert_eq!(lb.next_line(), Some(LineEvent::Line(b"PASS x".to_vec())));
    }

    #[test]
    fn line_buffer_limits_length() {
        let mut lb = LineBuffer::new();
        lb.buffer_mut()
            .extend(std::iter::repeat_n(b'A', MAX_LINE + 10));
        assert_eq!(lb.next_line(), Some(LineEvent::TooLong));
        assert_eq!(lb.next_line(), None);
        lb.buffer_mut().extend(std::iter::repeat_n(b'A', 100_000));
        assert_eq!(lb.next_line(), None);
        lb.buffer_mut().extend_from_slice(b"AAA\r\nNOOP\r\n");
        assert_eq!(lb.next_line(), Some(LineEvent::Line(b"NOOP".to_vec())));
        // A long line that arrives complete in one read.
        let mut lb = LineBuffer::new();
        lb.buffer_mut()
            .extend(std::iter::repeat_n(b'B', MAX_LINE + 1));
        lb.buffer_mut().extend_from_slice(b"\r\nNOOP\r\n");
        assert_eq!(lb.next_line(), Some(LineEvent::TooLong));
        assert_eq!(lb.next_line(), Some(LineEvent::Line(b"NOOP".to_vec())));
    }

    #[test]
    fn telnet_option_negotiation_removed() {
        assert_eq!(strip_telnet(b"\xff\xfb\x01NOOP\r"), b"NOOP");
        assert_eq!(strip_telnet(b"NOOP\xff"), b"NOOP\xff");
        assert_eq!(
            strip_telnet(b"RETR \xff.bin"),
            b"RETR \xff.bin",
            "undoubled 0xFF in a name"
        );
    }
}
