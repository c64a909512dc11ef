//! Everything a peer can send goes through these parsers; none may panic, whatever the bytes.
//! A deterministic generator stands in for a fuzzer here (no extra toolchain needed), biased
//! towards the bytes that matter: digits, separators, CR/LF, IAC, NUL, and known verbs.

use crate::VPath;
use crate::command::{Command, LineBuffer};
use crate::hostport;
use crate::reply::ReplyParser;
use crate::time::UtcTime;

struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        const PIECES: &[&[u8]] = &[
            b"USER ",
            b"PORT ",
            b"EPRT ",
            b"EPSV ",
            b"TYPE ",
            b"REST ",
            b"MFMT ",
            b"SITE CHMOD ",
            b"OPTS ",
            b"LIST -",
            b"|",
            b",",
            b"(",
            b")",
            b"..",
            b"/",
            b"\r\n",
            b"\n",
            b"\r",
            b"\xff",
            b"\xff\xf4",
            b"\xff\xfb",
            b"\0",
            b"255",
            b"65536",
            b"99999999999999999999",
            b"20241301",
            b" ",
            b"-",
            b"ALL",
            b"2",
            b"1",
            b"type=",
            b";",
            b"=",
            b"Nov",
            b"12:30",
            b"01:49PM",
            b"<DIR>",
            b" -> ",
            b"drwxr-xr-x",
        ];
        let len = (self.next() % max as u64) as usize;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            if self.next() % 3 == 0 {
                out.extend_from_slice(PIECES[(self.next() % PIECES.len() as u64) as usize]);
            } else {
                out.push(self.next() as u8);
            }
        }
        out
    }
}

#[test]
fn parsers_never_panic() {
    let mut g = Gen(0x9E37_79B9_7F4A_7C15);
    let mut lines = LineBuffer::new();
    let mut replies = ReplyParser::new();
    for _ in 0..200_000 {
        let input = g.bytes(64);
        let _ = Command::parse(&input);
        let _ = hostport::parse_port(&input);
        let _ = hostport::parse_eprt(&input);
        let _ = hostport::parse_epsv_arg(&input);
        let _ = hostport::parse_pasv_reply(&input);
        let _ = hostport::parse_epsv_reply(&input);
        let _ = UtcTime::parse_timeval(&input);
        let _ = VPath::root().join(&input);
        let _ = crate::listing::parse_mlst_opts(&input);
        let _ = crate::entry::parse_mlsx_line(&input);
        let _ = crate::entry::parse_list_line(&input, i64::from(input.len() as u32) << 24);
        lines.buffer_mut().extend_from_slice(&input);
        while lines.next_line().is_some() {}
        replies.feed(&input);
        while let Ok(Some(_)) = replies.next_reply() {}
        if replies.next_reply().is_err() {
            replies = ReplyParser::new();
        }
    }
}
