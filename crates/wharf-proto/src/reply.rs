//! Replies: the open [`ReplyCode`] newtype, formatting of single- and multi-line replies
//! (RFC 959 §4.2), and an incremental reply parser for clients.

use std::fmt;

/// A three-digit FTP reply code. Open on purpose: a client must handle codes it has never seen,
/// so this is a newtype over `u16` with named constants rather than a closed enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplyCode(pub u16);

impl ReplyCode {
    pub const RESTART_MARKER: ReplyCode = ReplyCode(110);
    pub const DATA_ALREADY_OPEN: ReplyCode = ReplyCode(125);
    pub const FILE_STATUS_OK: ReplyCode = ReplyCode(150);
    pub const OK: ReplyCode = ReplyCode(200);
    pub const SUPERFLUOUS: ReplyCode = ReplyCode(202);
    pub const SYSTEM_STATUS: ReplyCode = ReplyCode(211);
    pub const DIRECTORY_STATUS: ReplyCode = ReplyCode(212);
    pub const FILE_STATUS: ReplyCode = ReplyCode(213);
    pub const HELP: ReplyCode = ReplyCode(214);
    pub const SYSTEM_TYPE: ReplyCode = ReplyCode(215);
    pub const READY: ReplyCode = ReplyCode(220);
    pub const CLOSING: ReplyCode = ReplyCode(221);
    pub const DATA_OPEN_NO_TRANSFER: ReplyCode = ReplyCode(225);
    pub const CLOSING_DATA: ReplyCode = ReplyCode(226);
    pub const PASSIVE: ReplyCode = ReplyCode(227);
    pub const EXTENDED_PASSIVE: ReplyCode = ReplyCode(229);
    pub const LOGGED_IN: ReplyCode = ReplyCode(230);
    pub const AUTH_OK: ReplyCode = ReplyCode(234);
    /// RFC 2228: the security data exchange completed (PBSZ, PROT, CCC accepted).
    pub const SECURITY_OK: ReplyCode = ReplyCode(200);
    pub const FILE_ACTION_OK: ReplyCode = ReplyCode(250);
    pub const PATH_CREATED: ReplyCode = ReplyCode(257);
    pub const NEED_PASSWORD: ReplyCode = ReplyCode(331);
    pub const NEED_ACCOUNT: ReplyCode = ReplyCode(332);
    pub const PENDING_FURTHER_INFO: ReplyCode = ReplyCode(350);
    pub const SERVICE_UNAVAILABLE: ReplyCode = ReplyCode(421);
    pub const CANT_OPEN_DATA: ReplyCode = ReplyCode(425);
    pub const TRANSFER_ABORTED: ReplyCode = ReplyCode(426);
    pub const FILE_BUSY: ReplyCode = ReplyCode(450);
    pub const LOCAL_ERROR: ReplyCode = ReplyCode(451);
    pub const INSUFFICIENT_STORAGE: ReplyCode = ReplyCode(452);
    pub const SYNTAX_ERROR: ReplyCode = ReplyCode(500);
    pub const PARAMETER_SYNTAX_ERROR: ReplyCode = ReplyCode(501);
    pub const NOT_IMPLEMENTED: ReplyCode = ReplyCode(502);
    pub const BAD_SEQUENCE: ReplyCode = ReplyCode(503);
    pub const PARAMETER_NOT_IMPLEMENTED: ReplyCode = ReplyCode(504);
    pub const PROTECTION_REFUSED: ReplyCode = ReplyCode(521);
    /// RFC 2228: the request is denied for policy reasons (AUTH when TLS is off, CCC).
    pub const POLICY_DENIED: ReplyCode = ReplyCode(534);
    /// RFC 2228: the PROT level is not supported by the mechanism (S and E with TLS).
    pub const PROT_LEVEL_UNSUPPORTED: ReplyCode = ReplyCode(536);
    pub const NETWORK_PROTOCOL_NOT_SUPPORTED: ReplyCode = ReplyCode(522);
    pub const NOT_LOGGED_IN: ReplyCode = ReplyCode(530);
    pub const FILE_UNAVAILABLE: ReplyCode = ReplyCode(550);
    pub const PAGE_TYPE_UNKNOWN: ReplyCode = ReplyCode(551);
    pub const EXCEEDED_STORAGE: ReplyCode = ReplyCode(552);
    pub const BAD_FILE_NAME: ReplyCode = ReplyCode(553);

    /// 1yz: positive preliminary.
    pub fn is_preliminary(self) -> bool {
        (100..200).contains(&self.0)
    }
    /// 2yz: positive completion.
    pub fn is_completion(self) -> bool {
        (200..300).contains(&self.0)
    }
    /// 3yz: positive intermediate.
    pub fn is_intermediate(self) -> bool {
        (300..400).contains(&self.0)
    }
    /// 4yz or 5yz.
    pub fn is_negative(self) -> bool {
        (400..600).contains(&self.0)
    }

    // What a code tells a client deciding what to do next: each rule named once, here, for
    // every place that judges a reply.

    /// Trying again may work (421 service closing, 425 no data connection, 426 transfer
    /// aborted, 450 file busy, 451 local error); a 5yz refusal will fail again.
    pub fn is_transient(self) -> bool {
        matches!(self.0, 421 | 425 | 426 | 450 | 451)
    }

    /// The path named is no directory, as servers answer a listing of a file or of nothing
    /// (550, 501 from pyftpdlib, 450 from vsftpd).
    pub fn names_no_directory(self) -> bool {
        matches!(self.0, 450 | 501 | 550)
    }

    /// A refusal a data connection's TLS may be behind (425, 450, 522 session reuse, 534/535
    /// protection refused), when its text says TLS.
    pub fn may_be_data_tls(self) -> bool {
        matches!(self.0, 425 | 450 | 522 | 534 | 535)
    }

    /// The server did not take the command or its argument (500, 501, 504): an address it
    /// refuses in PORT/EPRT, among others.
    pub fn is_not_accepted(self) -> bool {
        matches!(self.0, 500 | 501 | 504)
    }

    // Classes the troubleshooter judges by.

    /// An upload refused for want of room: 452 (disk full) or 552 (the user's quota).
    pub fn is_out_of_space(self) -> bool {
        matches!(self.0, 452 | 552)
    }

    /// An upload refused for want of permission, as servers answer a user who may not write
    /// there: 550, 553 (name not allowed), 532 (an account needed for storing), 450 (vsftpd).
    pub fn refuses_writing(self) -> bool {
        matches!(self.0, 450 | 532 | 550 | 553)
    }

    // Classes the client decides by.

    /// The server does not know the command at all (500 unrecognised, 502 not implemented):
    /// another command for the same job may work (PASV for EPSV, PORT for EPRT, LIST for MLSD,
    /// MDTM for MFMT), and asking again will not.
    pub fn is_unknown_command(self) -> bool {
        matches!(self.0, 500 | 502)
    }

    /// 421: the server is closing the control connection; the command was not carried out and
    /// nothing more can be asked on this session.
    pub fn closes_session(self) -> bool {
        self.0 == 421
    }

    /// 425: the server could not open (or accept) the data connection: another data method may
    /// work where this one does not.
    pub fn is_data_connection_failure(self) -> bool {
        self.0 == 425
    }

    /// The reply to PASS that ends a login: 230, or 202 (superfluous: the account needed no
    /// password after all).
    pub fn is_logged_in(self) -> bool {
        matches!(self.0, 202 | 230)
    }

    /// 120: the server will be ready in a moment (RFC 959): its welcome is still to come.
    pub fn is_ready_soon(self) -> bool {
        self.0 == 120
    }
}

impl fmt::Display for ReplyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03}", self.0)
    }
}

/// A reply: a code and one or more lines of text (bytes: paths in replies are not always UTF-8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: ReplyCode,
    pub lines: Vec<Vec<u8>>,
}

impl Reply {
    /// A one-line reply. CR and LF in `text` are replaced so that the text can never split the
    /// reply (use [`quote_path`] for paths, which keeps them intact in RFC 959's NUL form).
    pub fn new(code: ReplyCode, text: impl AsRef<[u8]>) -> Reply {
        Reply {
            code,
            lines: vec![text.as_ref().to_vec()],
        }
    }

    /// A reply of several lines; the last line is the one that carries `code` plus a space.
    pub fn multi(code: ReplyCode, lines: Vec<Vec<u8>>) -> Reply {
        Reply { code, lines }
    }

    /// Appends the wire form, CRLF-terminated, to `out`.
    ///
    /// A single line is `xyz text`. Several lines are `xyz-first`, the middle lines, and
    /// `xyz last`. A middle line that begins with a digit is indented by one space so that it can
    /// never be taken for an end line (RFC 959 §4.2); lines that already begin with a space (FEAT
    /// features, MLST entries) are written as they are.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let code = self.code.to_string();
        let n = self.lines.len();
        if n <= 1 {
            out.extend_from_slice(code.as_bytes());
            out.push(b' ');
            if let Some(line) = self.lines.first() {
                push_sanitized(out, line);
            }
            out.extend_from_slice(b"\r\n");
            return;
        }
        for (i, line) in self.lines.iter().enumerate() {
            if i == 0 {
                out.extend_from_slice(code.as_bytes());
                out.push(b'-');
            } else if i == n - 1 {
                out.extend_from_slice(code.as_bytes());
                out.push(b' ');
            } else if line.first().is_some_and(|b| b.is_ascii_digit()) {
                out.push(b' ');
            }
            push_sanitized(out, line);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// The wire form as a fresh buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// The text of all lines joined with newlines, lossily decoded (for logs and messages).
    pub fn text(&self) -> String {
        let parts: Vec<String> = self
            .lines
            .iter()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect();
        parts.join("\n")
    }
}

/// Writes `line` with any CR or LF turned into a space: a reply line must never contain either.
fn push_sanitized(out: &mut Vec<u8>, line: &[u8]) {
    out.extend(
        line.iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
}

/// Quotes a path for a 257 reply (RFC 959 Appendix II): the path in double quotes, an embedded
/// quote doubled, and an embedded LF sent as NUL, so that a name with a newline cannot split the
/// reply. A CR in a name is sent as CR NUL (the Telnet form of a bare CR) and so survives too.
pub fn quote_path(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len() + 2);
    out.push(b'"');
    for &b in path {
        match b {
            b'"' => out.extend_from_slice(b"\"\""),
            b'\n' => out.push(0),
            b'\r' => out.push(0),
            _ => out.push(b),
        }
    }
    out.push(b'"');
    out
}

/// Why a reply could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplyError {
    #[error("reply line does not start with a three-digit code")]
    BadCode,
    #[error("reply line longer than {0} bytes")]
    TooLong(usize),
    #[error("multi-line reply longer than {0} lines")]
    TooManyLines(usize),
}

/// Incremental parser for the replies a client reads: feed bytes, take complete replies.
/// A partial reply is "need more bytes" (`Ok(None)`), never an error.
#[derive(Debug, Default)]
pub struct ReplyParser {
    buf: Vec<u8>,
    /// Lines of a multi-line reply read so far, and its code.
    pending: Option<(ReplyCode, Vec<Vec<u8>>)>,
}

/// Longest reply line accepted by [`ReplyParser`].
pub const MAX_REPLY_LINE: usize = 64 * 1024;
/// Most lines in one multi-line reply (a FEAT or STAT reply has tens): bounds the memory a
/// server that never ends its reply can take.
pub const MAX_REPLY_LINES: usize = 10_000;

impl ReplyParser {
    pub fn new() -> ReplyParser {
        ReplyParser::default()
    }

    /// Whether bytes are buffered that no reply has taken yet (after AUTH TLS's 234 there must
    /// be none: anything sent in clear behind it could be an injected reply).
    pub fn has_pending(&self) -> bool {
        !self.buf.is_empty() || self.pending.is_some()
    }

    /// Adds bytes read from the connection.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Takes the next complete reply, if the buffer holds one.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ReplyError> {
        loop {
            let Some(pos) = self.buf.iter().position(|&b| b == b'\n') else {
                if self.buf.len() > MAX_REPLY_LINE {
                    return Err(ReplyError::TooLong(MAX_REPLY_LINE));
                }
                return Ok(None);
            };
            let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let head = parse_code(&line);
            match self.pending.take() {
                None => {
                    let code = head.ok_or(ReplyError::BadCode)?;
                    let text = line.get(4..).unwrap_or_default().to_vec();
                    if line.get(3) == Some(&b'-') {
                        self.pending = Some((code, vec![text]));
                    } else {
                        return Ok(Some(Reply::new(code, text)));
                    }
                }
                Some((code, mut lines)) => {
                    if head == Some(code) && line.get(3).is_none_or(|&b| b == b' ') {
                        lines.push(line.get(4..).unwrap_or_default().to_vec());
                        return Ok(Some(Reply::multi(code, lines)));
                    }
                    lines.push(line);
                    if lines.len() > MAX_REPLY_LINES {
                        return Err(ReplyError::TooManyLines(MAX_REPLY_LINES));
                    }
                    self.pending = Some((code, lines));
                }
            }
        }
    }
}

fn parse_code(line: &[u8]) -> Option<ReplyCode> {
    let digits = line.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || !(b'1'..=b'5').contains(&digits[0]) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    Some(ReplyCode(n))
}

#[cfg(test)]
mod tests {
    /// Each named class, code by code.
    #[test]
    fn reply_classes() {
        let class = |f: fn(ReplyCode) -> bool| -> Vec<u16> {
            (100..600).filter(|&c| f(ReplyCode(c))).collect()
        };
        assert_eq!(class(ReplyCode::is_transient), [421, 425, 426, 450, 451]);
        assert_eq!(class(ReplyCode::names_no_directory), [450, 501, 550]);
        assert_eq!(class(ReplyCode::may_be_data_tls), [425, 450, 522, 534, 535]);
        assert_eq!(class(ReplyCode::is_not_accepted), [500, 501, 504]);
        assert!(ReplyCode(226).is_completion() && !ReplyCode(226).is_transient());
    }

    use super::*;

    #[test]
    fn single_line() {
        assert_eq!(
            Reply::new(ReplyCode::OK, "Command okay.").to_bytes(),
            b"200 Command okay.\r\n"
        );
    }

    #[test]
    fn empty_text_still_has_space() {
        assert_eq!(Reply::new(ReplyCode(226), "").to_bytes(), b"226 \r\n");
    }

    #[test]
    fn multi_line_indents_digit_lines() {
        let r = Reply::multi(
            ReplyCode::HELP,
            vec![
                b"Commands:".to_vec(),
                b"123 looks like a code".to_vec(),
                b" USER".to_vec(),
                b"End".to_vec(),
            ],
        );
        assert_eq!(
            r.to_bytes(),
            b"214-Commands:\r\n 123 looks like a code\r\n USER\r\n214 End\r\n"
        );
    }

    #[test]
    fn crlf_in_text_cannot_split_reply() {
        let r = Reply::new(ReplyCode(550), b"no such file: a\r\n226 fake".as_slice());
        assert_eq!(r.to_bytes(), b"550 no such file: a  226 fake\r\n");
    }

    #[test]
    fn quote_path_doubles_quotes_and_nuls_newlines() {
        assert_eq!(quote_path(b"/a\"b"), b"\"/a\"\"b\"");
        assert_eq!(quote_path(b"/x\ny"), b"\"/x\0y\"");
    }

    #[test]
    fn parser_single_and_multi() {
        let mut p = ReplyParser::new();
        p.feed(b"220 hi\r\n211-Features:\r\n MDTM\r\n211 End\r\n230 ok");
        assert_eq!(
            p.next_reply().unwrap(),
            Some(Reply::new(ReplyCode::READY, "hi"))
        );
        let feat = p.next_reply().unwrap().unwrap();
        assert_eq!(feat.code, ReplyCode::SYSTEM_STATUS);
        assert_eq!(
            feat.lines,
            vec![b"Features:".to_vec(), b" MDTM".to_vec(), b"End".to_vec()]
        );
        assert_eq!(p.next_reply().unwrap(), None);
        p.feed(b"\r\n");
        assert_eq!(p.next_reply().unwrap().unwrap().code, ReplyCode::LOGGED_IN);
    }

    #[test]
    fn parser_multi_line_with_inner_code_lines() {
        let mut p = ReplyParser::new();
        p.feed(b"214-help\r\n214-still\r\n200 not end\r\n214 End\r\n");
        let r = p.next_reply().unwrap().unwrap();
        assert_eq!(r.lines.len(), 4);
        assert_eq!(r.lines[3], b"End");
    }

    #[test]
    fn parser_rejects_garbage_and_long_lines() {
        let mut p = ReplyParser::new();
        p.feed(b"hello\r\n");
        assert_eq!(p.next_reply(), Err(ReplyError::BadCode));
        let mut p = ReplyParser::new();
        p.feed(&vec![b'2'; MAX_REPLY_LINE + 1]);
        assert_eq!(p.next_reply(), Err(ReplyError::TooLong(MAX_REPLY_LINE)));
    }

    #[test]
    fn code_classes() {
        assert!(ReplyCode(150).is_preliminary());
        assert!(ReplyCode(226).is_completion());
        assert!(ReplyCode(350).is_intermediate());
        assert!(ReplyCode(550).is_negative());
        assert_eq!(ReplyCode(7).to_string(), "007");
    }
}
