//! The commands a client sends, typed, with one encoder to the wire and one description for the
//! log (the password masked).

use std::net::{SocketAddr, SocketAddrV4};

use crate::command::{ProtLevel, TransferType};
use crate::hash::HashAlgorithm;
use crate::hostport;
use crate::time::UtcTime;

/// A command as the client sends it. Paths and names are bytes (they are not always UTF-8);
/// none may contain CR, LF or NUL, which [`ClientCommand::encode`] refuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCommand<'a> {
    User(&'a [u8]),
    Pass(&'a [u8]),
    /// `AUTH TLS` (RFC 4217).
    AuthTls,
    /// `PBSZ 0`: TLS has no buffer size, but RFC 4217 wants PBSZ before PROT.
    Pbsz0,
    Prot(ProtLevel),
    Feat,
    /// `OPTS UTF8 ON`.
    OptsUtf8On,
    /// `OPTS HASH <name>` (draft-bryan-ftpext-hash): the algorithm HASH uses from now on.
    OptsHash(HashAlgorithm),
    /// `HASH <path>`: the file's digest in the session's algorithm.
    Hash(&'a [u8]),
    /// `XSHA512 <path>` and its kin (ProFTPD's, WinSCP's): the digest in the verb's algorithm.
    XHash(HashAlgorithm, &'a [u8]),
    /// HOST (RFC 7151): the name of the virtual host.
    Host(&'a [u8]),
    Type(TransferType),
    Epsv,
    Pasv,
    Eprt(SocketAddr),
    Port(SocketAddrV4),
    Rest(u64),
    Retr(&'a [u8]),
    Stor(&'a [u8]),
    Appe(&'a [u8]),
    /// The listing commands: `None` lists the current directory.
    List(Option<&'a [u8]>),
    Nlst(Option<&'a [u8]>),
    Mlsd(Option<&'a [u8]>),
    Mlst(&'a [u8]),
    Size(&'a [u8]),
    Mdtm(&'a [u8]),
    /// MFMT (draft-somers-ftp-mfxx): set a file's modification time.
    Mfmt(UtcTime, &'a [u8]),
    /// The two-argument MDTM that sets a time, as vsftpd takes it.
    MdtmSet(UtcTime, &'a [u8]),
    Cwd(&'a [u8]),
    Pwd,
    Mkd(&'a [u8]),
    Rmd(&'a [u8]),
    Dele(&'a [u8]),
    Rnfr(&'a [u8]),
    Rnto(&'a [u8]),
    Abor,
    Noop,
    Quit,
    /// Anything else, as the user typed it (the shell's `quote`).
    Raw {
        verb: &'a str,
        arg: Option<&'a [u8]>,
    },
}

/// Why a command was not encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// CR or LF would end the line early (the rest would be a second command, chosen by
    /// whoever chose the name); NUL is cut by many servers.
    #[error(
        "{verb}: the argument contains CR, LF or NUL, which FTP cannot send (nothing was sent)"
    )]
    ForbiddenByte { verb: String },
}

/// The argument of a command, in the form it takes on the wire.
enum Arg<'a> {
    None,
    Bytes(&'a [u8]),
    Text(String),
    /// A time, a space, then a path.
    TimeAndPath(UtcTime, &'a [u8]),
}

impl ClientCommand<'_> {
    /// The verb as sent (a raw command's as the user gave it).
    pub fn verb(&self) -> &str {
        use ClientCommand as C;
        match self {
            C::User(_) => "USER",
            C::Pass(_) => "PASS",
            C::AuthTls => "AUTH",
            C::Pbsz0 => "PBSZ",
            C::Prot(_) => "PROT",
            C::Feat => "FEAT",
            C::OptsUtf8On | C::OptsHash(_) => "OPTS",
            C::Hash(_) => "HASH",
            C::XHash(algorithm, _) => algorithm.x_verb(),
            C::Host(_) => "HOST",
            C::Type(_) => "TYPE",
            C::Epsv => "EPSV",
            C::Pasv => "PASV",
            C::Eprt(_) => "EPRT",
            C::Port(_) => "PORT",
            C::Rest(_) => "REST",
            C::Retr(_) => "RETR",
            C::Stor(_) => "STOR",
            C::Appe(_) => "APPE",
            C::List(_) => "LIST",
            C::Nlst(_) => "NLST",
            C::Mlsd(_) => "MLSD",
            C::Mlst(_) => "MLST",
            C::Size(_) => "SIZE",
            C::Mdtm(_) | C::MdtmSet(..) => "MDTM",
            C::Mfmt(..) => "MFMT",
            C::Cwd(_) => "CWD",
            C::Pwd => "PWD",
            C::Mkd(_) => "MKD",
            C::Rmd(_) => "RMD",
            C::Dele(_) => "DELE",
            C::Rnfr(_) => "RNFR",
            C::Rnto(_) => "RNTO",
            C::Abor => "ABOR",
            C::Noop => "NOOP",
            C::Quit => "QUIT",
            C::Raw { verb, .. } => verb,
        }
    }

    fn arg(&self) -> Arg<'_> {
        use ClientCommand as C;
        match self {
            C::User(b)
            | C::Pass(b)
            | C::Host(b)
            | C::Retr(b)
            | C::Stor(b)
            | C::Appe(b)
            | C::Mlst(b)
            | C::Size(b)
            | C::Mdtm(b)
            | C::Cwd(b)
            | C::Mkd(b)
            | C::Rmd(b)
            | C::Dele(b)
            | C::Rnfr(b)
            | C::Rnto(b) => Arg::Bytes(b),
            C::List(b) | C::Nlst(b) | C::Mlsd(b) | C::Raw { arg: b, .. } => {
                b.map_or(Arg::None, Arg::Bytes)
            }
            C::AuthTls => Arg::Bytes(b"TLS"),
            C::Pbsz0 => Arg::Bytes(b"0"),
            C::Prot(ProtLevel::Clear) => Arg::Bytes(b"C"),
            C::Prot(ProtLevel::Private) => Arg::Bytes(b"P"),
            // TLS offers neither S nor E; sent as asked, the server answers 536.
            C::Prot(ProtLevel::Unsupported) => Arg::Bytes(b"S"),
            C::OptsUtf8On => Arg::Bytes(b"UTF8 ON"),
            C::OptsHash(algorithm) => Arg::Text(format!("HASH {}", algorithm.name())),
            C::Hash(b) | C::XHash(_, b) => Arg::Bytes(b),
            C::Type(TransferType::Ascii) => Arg::Bytes(b"A"),
            C::Type(TransferType::Image) => Arg::Bytes(b"I"),
            C::Eprt(addr) => Arg::Text(hostport::format_eprt(*addr)),
            C::Port(addr) => Arg::Text(hostport::format_host_port(*addr)),
            C::Rest(offset) => Arg::Text(offset.to_string()),
            C::Mfmt(time, path) | C::MdtmSet(time, path) => Arg::TimeAndPath(*time, path),
            C::Feat | C::Epsv | C::Pasv | C::Pwd | C::Abor | C::Noop | C::Quit => Arg::None,
        }
    }

    /// Appends `VERB arg\r\n` to `out`, or nothing when the verb or the argument holds CR, LF
    /// or NUL.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let verb = self.verb();
        let arg = self.arg();
        let forbidden = |b: &[u8]| b.iter().any(|&c| matches!(c, b'\r' | b'\n' | 0));
        let arg_forbidden = match &arg {
            Arg::None | Arg::Text(_) => false,
            Arg::Bytes(b) | Arg::TimeAndPath(_, b) => forbidden(b),
        };
        if arg_forbidden || forbidden(verb.as_bytes()) {
            return Err(EncodeError::ForbiddenByte {
                verb: verb.to_string(),
            });
        }
        out.extend_from_slice(verb.as_bytes());
        match arg {
            Arg::None => {}
            Arg::Bytes(b) => {
                out.push(b' ');
                out.extend_from_slice(b);
            }
            Arg::Text(t) => {
                out.push(b' ');
                out.extend_from_slice(t.as_bytes());
            }
            Arg::TimeAndPath(time, path) => {
                out.push(b' ');
                out.extend_from_slice(time.to_timeval().as_bytes());
                out.push(b' ');
                out.extend_from_slice(path);
            }
        }
        out.extend_from_slice(b"\r\n");
        Ok(())
    }

    /// How the command shows in the log and in errors: `VERB arg`, the password masked (also in
    /// a raw `pass`, whatever its case).
    pub fn describe(&self) -> String {
        let verb = self.verb();
        if verb.eq_ignore_ascii_case("PASS") {
            return "PASS ****".into();
        }
        match self.arg() {
            Arg::None => verb.to_string(),
            Arg::Bytes(b) => format!("{verb} {}", String::from_utf8_lossy(b)),
            Arg::Text(t) => format!("{verb} {t}"),
            Arg::TimeAndPath(time, path) => format!(
                "{verb} {} {}",
                time.to_timeval(),
                String::from_utf8_lossy(path)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ClientCommand as C;
    use super::*;

    fn wire(c: &ClientCommand<'_>) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        c.encode(&mut out).map(|()| out)
    }

    #[test]
    fn encodes_and_describes() {
        let time = UtcTime::from_unix(1_700_000_000);
        let v4: SocketAddrV4 = "192.0.2.1:1025".parse().unwrap();
        let rows: &[(ClientCommand<'_>, &str, &str)] = &[
            (C::User(b"anna"), "USER anna\r\n", "USER anna"),
            (C::Pass(b"secret"), "PASS secret\r\n", "PASS ****"),
            (C::AuthTls, "AUTH TLS\r\n", "AUTH TLS"),
            (C::Pbsz0, "PBSZ 0\r\n", "PBSZ 0"),
            (C::Prot(ProtLevel::Private), "PROT P\r\n", "PROT P"),
            (C::Prot(ProtLevel::Clear), "PROT C\r\n", "PROT C"),
            (C::Feat, "FEAT\r\n", "FEAT"),
            (C::OptsUtf8On, "OPTS UTF8 ON\r\n", "OPTS UTF8 ON"),
            (
                C::OptsHash(HashAlgorithm::Sha512),
                "OPTS HASH SHA-512\r\n",
                "OPTS HASH SHA-512",
            ),
            (C::Hash(b"a b"), "HASH a b\r\n", "HASH a b"),
            (C::XHash(HashAlgorithm::Crc32, b"f"), "XCRC f\r\n", "XCRC f"),
            (
                C::Host(b"ftp.example.net"),
                "HOST ftp.example.net\r\n",
                "HOST ftp.example.net",
            ),
            (C::Type(TransferType::Image), "TYPE I\r\n", "TYPE I"),
            (C::Type(TransferType::Ascii), "TYPE A\r\n", "TYPE A"),
            (C::Epsv, "EPSV\r\n", "EPSV"),
            (C::Pasv, "PASV\r\n", "PASV"),
            (
                C::Eprt("[2001:db8::1]:2121".parse().unwrap()),
                "EPRT |2|2001:db8::1|2121|\r\n",
                "EPRT |2|2001:db8::1|2121|",
            ),
            (
                C::Eprt(SocketAddr::V4(v4)),
                "EPRT |1|192.0.2.1|1025|\r\n",
                "EPRT |1|192.0.2.1|1025|",
            ),
            (C::Port(v4), "PORT 192,0,2,1,4,1\r\n", "PORT 192,0,2,1,4,1"),
            (C::Rest(12345), "REST 12345\r\n", "REST 12345"),
            (C::Retr(b"a b.txt"), "RETR a b.txt\r\n", "RETR a b.txt"),
            (C::Stor(b"x"), "STOR x\r\n", "STOR x"),
            (C::Appe(b"x"), "APPE x\r\n", "APPE x"),
            (C::List(None), "LIST\r\n", "LIST"),
            (C::List(Some(b"./-l")), "LIST ./-l\r\n", "LIST ./-l"),
            (C::Nlst(None), "NLST\r\n", "NLST"),
            (C::Mlsd(Some(b"pub")), "MLSD pub\r\n", "MLSD pub"),
            (C::Mlst(b"f"), "MLST f\r\n", "MLST f"),
            (C::Size(b"f"), "SIZE f\r\n", "SIZE f"),
            (C::Mdtm(b"f"), "MDTM f\r\n", "MDTM f"),
            (
                C::Mfmt(time, b"f"),
                "MFMT 20231114221320 f\r\n",
                "MFMT 20231114221320 f",
            ),
            (
                C::MdtmSet(time, b"f"),
                "MDTM 20231114221320 f\r\n",
                "MDTM 20231114221320 f",
            ),
            (C::Cwd(b"/"), "CWD /\r\n", "CWD /"),
            (C::Pwd, "PWD\r\n", "PWD"),
            (C::Mkd(b"d"), "MKD d\r\n", "MKD d"),
            (C::Rmd(b"d"), "RMD d\r\n", "RMD d"),
            (C::Dele(b"f"), "DELE f\r\n", "DELE f"),
            (C::Rnfr(b"a"), "RNFR a\r\n", "RNFR a"),
            (C::Rnto(b"b"), "RNTO b\r\n", "RNTO b"),
            (C::Abor, "ABOR\r\n", "ABOR"),
            (C::Noop, "NOOP\r\n", "NOOP"),
            (C::Quit, "QUIT\r\n", "QUIT"),
            (
                C::Raw {
                    verb: "SYST",
                    arg: None,
                },
                "SYST\r\n",
                "SYST",
            ),
            (
                C::Raw {
                    verb: "site",
                    arg: Some(b"DIAG"),
                },
                "site DIAG\r\n",
                "site DIAG",
            ),
            // An empty argument is sent as given: the verb and a space.
            (
                C::Raw {
                    verb: "NOOP",
                    arg: Some(b""),
                },
                "NOOP \r\n",
                "NOOP ",
            ),
            (
                C::Raw {
                    verb: "pass",
                    arg: Some(b"x"),
                },
                "pass x\r\n",
                "PASS ****",
            ),
            (
                C::Raw {
                    verb: "PASS",
                    arg: None,
                },
                "PASS\r\n",
                "PASS ****",
            ),
        ];
        for (command, line, shown) in rows {
            assert_eq!(
                String::from_utf8(wire(command).unwrap()).unwrap(),
                *line,
                "{command:?}"
            );
            assert_eq!(command.describe(), *shown, "{command:?}");
        }
    }

    #[test]
    fn paths_stay_bytes() {
        assert_eq!(wire(&C::Retr(b"caf\xe9")).unwrap(), b"RETR caf\xe9\r\n");
    }

    #[test]
    fn line_breaks_and_nul_are_refused_and_nothing_is_written() {
        let rows: &[ClientCommand<'_>] = &[
            C::Retr(b"a\r\nDELE b"),
            C::Cwd(b"a\nb"),
            C::Stor(b"a\0b"),
            C::Pass(b"x\r"),
            C::Mfmt(UtcTime::from_unix(0), b"a\nb"),
            C::Raw {
                verb: "NOOP\r\nDELE",
                arg: None,
            },
            C::Raw {
                verb: "SITE",
                arg: Some(b"x\n"),
            },
        ];
        for command in rows {
            let mut out = b"kept".to_vec();
            let err = command.encode(&mut out).unwrap_err();
            assert_eq!(out, b"kept", "{command:?}");
            assert!(
                err.to_string()
                    .ends_with(": the argument contains CR, LF or NUL, which FTP cannot send (nothing was sent)"),
                "{err}"
            );
        }
        assert_eq!(
            C::Retr(b"a\nb")
                .encode(&mut Vec::new())
                .unwrap_err()
                .to_string(),
            "RETR: the argument contains CR, LF or NUL, which FTP cannot send (nothing was sent)"
        );
    }
}
