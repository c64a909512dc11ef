//! Judging what answers on the control port: the service named from its first bytes, the
//! welcome message, the virtual host, AUTH TLS. Pure: facts in, a step out.

use std::io;
use std::time::Duration;

use wharf_proto::{Reply, ReplyCode};

use super::report::{Step, Verdict};
use super::software::Software;
use crate::error::Error;

/// What the service on the control port sent before it was asked anything.
#[derive(Debug)]
pub(crate) enum FirstBytes {
    /// Closed or reset: the banner step tells these apart.
    Nothing,
    Sent(Vec<u8>),
    /// Silent within the timeout; after a `HELP` line it answered this.
    AnsweredHelp(Vec<u8>),
    /// Silent, and closed after a `HELP` line.
    ClosedOnHelp,
    /// Silent, even after a `HELP` line.
    Silent,
}

/// A service that is not FTP on the control port, named from what it sent: `None` for an FTP
/// reply (or nothing to tell), else the banner step's failure.
pub(crate) fn not_ftp(
    first: &FirstBytes,
    wait: Duration,
    host: &str,
    port: u16,
    elapsed: Duration,
) -> Option<Step> {
    let secs = wait.as_secs();
    let answered_by = |what: &str| format!("the port is answered by {what}, not by an FTP server");
    let (evidence, cause, advice) = match first {
        FirstBytes::Nothing => return None,
        FirstBytes::Sent(bytes) => {
            let (what, advice) = name_service(bytes, host, port)?;
            (
                format!("received instead of an FTP welcome: \"{}\"", shown(bytes)),
                answered_by(what),
                advice,
            )
        }
        FirstBytes::AnsweredHelp(bytes) => {
            let (what, advice) = name_service(bytes, host, port).unwrap_or((
                "a service that waits for its client to speak first",
                format!("point the check at the FTP server's port, not {port}"),
            ));
            (
                format!(
                    "no welcome message within {secs} s; after a HELP line it answered: \"{}\"",
                    shown(bytes)
                ),
                answered_by(what),
                advice,
            )
        }
        FirstBytes::ClosedOnHelp => (
            format!("no welcome message within {secs} s; after a HELP line the connection was closed"),
            "the service on this port waits for its client to speak first and closed on an FTP line: not an FTP server (an implicit FTPS port closes like this too)".to_string(),
            format!("if it is implicit FTPS, check `wharf check ftps://{host}:{port}`; else point the check at the FTP server's port"),
        ),
        FirstBytes::Silent => (
            format!("no welcome message within {secs} s, and no answer to a HELP line either (silence)"),
            "the port accepts connections but nothing speaks FTP on it: a proxy or filtering middlebox that holds connections, or a hung or overloaded server".to_string(),
            "check that the FTP server runs and listens on this port (from the server itself: telnet localhost PORT), and any proxy or firewall between".to_string(),
        ),
    };
    Some(Step::new("banner", Verdict::Fail, evidence, elapsed).because(cause, advice))
}

/// What a non-FTP service is, from what it sent: (name, advice).
pub(crate) fn name_service(first: &[u8], host: &str, port: u16) -> Option<(&'static str, String)> {
    let text = String::from_utf8_lossy(first).to_ascii_uppercase();
    let ftp_like = first.len() >= 3 && first.iter().take(3).all(u8::is_ascii_digit);
    let wrong_port = format!(
        "point the check (and clients) at the FTP server's port, not {port}: find it in the server's configuration, or ask its administrator"
    );
    if first.starts_with(b"SSH-") {
        Some((
            "an SSH server (SFTP is file transfer over SSH, not FTP)",
            format!("use an SFTP client for this port, or {wrong_port}"),
        ))
    } else if first.starts_with(b"HTTP/") {
        Some(("a web server (HTTP)", wrong_port))
    } else if matches!(first, [0x15 | 0x16, 0x03, ..]) {
        Some((
            "a TLS server: an implicit FTPS port (the TLS handshake comes first)",
            format!("check it as implicit FTPS: `wharf check ftps://{host}:{port}`"),
        ))
    } else if first.starts_with(b"+OK") {
        Some(("a mail server (POP3)", wrong_port))
    } else if first.starts_with(b"* OK") {
        Some(("a mail server (IMAP)", wrong_port))
    } else if ftp_like && text.contains("SMTP") {
        Some(("a mail server (SMTP)", wrong_port))
    } else if ftp_like {
        None
    } else {
        Some(("a service that does not speak FTP", wrong_port))
    }
}

/// Bytes a server sent, printable and cut, for the evidence.
pub(crate) fn shown(bytes: &[u8]) -> String {
    let mut out: String = bytes
        .iter()
        .take(80)
        .map(|&b| match b {
            b'\r' => "\\r".to_string(),
            b'\n' => "\\n".to_string(),
            0x20..=0x7e => (b as char).to_string(),
            _ => format!("\\x{b:02x}"),
        })
        .collect();
    if bytes.len() > 80 {
        out.push('…');
    }
    out
}

/// The welcome message: the server named from it.
pub(crate) fn banner(welcome: &Reply, elapsed: Duration) -> (Step, Software) {
    let banner = welcome.text().replace('\n', " / ");
    let software = Software::identify(&banner, "");
    let evidence = format!("{} {banner} (server: {})", welcome.code, software.name());
    (
        Step::new("banner", Verdict::Ok, evidence, elapsed),
        software,
    )
}

/// No welcome message: why (on an implicit-TLS port, the handshake is the first step).
pub(crate) fn no_banner(e: &Error, implicit: bool, elapsed: Duration) -> Step {
    if implicit && matches!(e, Error::Tls(_)) {
        return Step::new("tls", Verdict::Fail, e.to_string(), elapsed).because(
            "the TLS handshake failed on the implicit-TLS port: the server does not speak TLS there, or no protocol version or cipher suite is shared",
            "check that the port is the server's implicit FTPS port (990 usually); for explicit FTPS on port 21 use ftpes:// or --tls",
        );
    }
    let (cause, advice) = match e {
        Error::Network(io) if io.kind() == io::ErrorKind::ConnectionReset => (
            "reset: the connection was cut before the welcome message, by the server (an access rule such as tcp_wrappers or an allow list) or a middlebox",
            "check the server's access rules and log, and any firewall or intrusion prevention between",
        ),
        Error::Closed => (
            "the server closed the connection without a welcome message: an access rule, a connection limit, or a crash",
            "check the server's log",
        ),
        Error::Timeout(_) => (
            "the port accepts connections but nothing speaks FTP: a firewall or proxy in the way, an overloaded server, or another service on this port",
            "check that the FTP server runs and listens on this port; try telnet HOST PORT from the server itself",
        ),
        Error::Refused { reply, .. } if reply.code == ReplyCode::SERVICE_UNAVAILABLE => (
            "the server turns sessions away: too many connections, or this address is not allowed",
            "wait and retry, or raise the server's connection limits",
        ),
        _ => (
            "the connection broke before the welcome message: a middlebox or the server reset it",
            "check the server's log and any firewall or IPS between",
        ),
    };
    Step::new("banner", Verdict::Fail, e.to_string(), elapsed).because(cause, advice)
}

/// The virtual host (HOST, RFC 7151): `Ok(None)` when the server has none to choose.
pub(crate) fn host(
    host: &str,
    chosen: &Result<Option<Reply>, Error>,
    elapsed: Duration,
) -> Option<Step> {
    match chosen {
        Ok(None) => None,
        Ok(Some(r)) => {
            let evidence = format!("HOST {host}: {} {}", r.code, r.text());
            if r.code == ReplyCode::READY {
                return Some(Step::new("host", Verdict::Ok, evidence, elapsed));
            }
            Some(Step::new("host", Verdict::Warn, evidence, elapsed).because(
                format!(
                    "the server has virtual hosts but does not serve {host}: the login goes to its default host, with other users and files"
                ),
                "check the host name with the provider (the one its certificate names)",
            ))
        }
        Err(e) => Some(
            Step::new("host", Verdict::Warn, e.to_string(), elapsed).because(
                "FEAT or HOST before login broke the session",
                "try again; report it to the server's vendor",
            ),
        ),
    }
}

/// AUTH TLS or its handshake failed.
pub(crate) fn no_tls(e: &Error, software: Software, elapsed: Duration) -> Step {
    let step = Step::new("tls", Verdict::Fail, e.to_string(), elapsed);
    match e {
        Error::Refused { .. } => step.because(
            "the server does not offer explicit TLS (AUTH TLS refused)",
            format!("turn TLS on in the server: {}", software.tls_setting()),
        ),
        _ => step.because(
            "the TLS handshake failed: no shared protocol version or cipher suite, or the connection was cut",
            "check the server's TLS settings and log (minimum TLS 1.2)",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: ReplyCode, text: &str) -> Error {
        Error::Refused {
            command: "PASS ****".into(),
            reply: Reply::new(code, text),
        }
    }

    const MS: Duration = Duration::from_millis(7);
    const WAIT: Duration = Duration::from_secs(3);
    #[test]
    fn services_named() {
        let table: [(&[u8], Option<&str>); 9] = [
            (
                b"SSH-2.0-OpenSSH_9.6\r\n",
                Some("an SSH server (SFTP is file transfer over SSH, not FTP)"),
            ),
            (b"HTTP/1.1 400 Bad Request", Some("a web server (HTTP)")),
            (
                &[0x15, 0x03, 0x03, 0x00, 0x02],
                Some("a TLS server: an implicit FTPS port (the TLS handshake comes first)"),
            ),
            (b"+OK POP3 ready", Some("a mail server (POP3)")),
            (b"* OK IMAP4rev1", Some("a mail server (IMAP)")),
            (
                b"220 mail ESMTP Postfix (SMTP)",
                Some("a mail server (SMTP)"),
            ),
            (b"220 (vsFTPd 3.0.5)\r\n", None),
            (b"hello", Some("a service that does not speak FTP")),
            (&[0x16], Some("a service that does not speak FTP")),
        ];
        for (first, want) in table {
            assert_eq!(
                name_service(first, "h", 21).map(|(what, _)| what),
                want,
                "{first:?}"
            );
        }
    }

    #[test]
    fn first_bytes_judged() {
        let table = [
            (FirstBytes::Nothing, None),
            (FirstBytes::Sent(b"220 ready\r\n".to_vec()), None),
            (
                FirstBytes::Sent(b"SSH-2.0-x\r\n".to_vec()),
                Some("received instead of an FTP welcome: \"SSH-2.0-x\\r\\n\""),
            ),
            (
                FirstBytes::AnsweredHelp(b"220 late".to_vec()),
                Some("no welcome message within 3 s; after a HELP line it answered: \"220 late\""),
            ),
            (
                FirstBytes::ClosedOnHelp,
                Some("no welcome message within 3 s; after a HELP line the connection was closed"),
            ),
            (
                FirstBytes::Silent,
                Some(
                    "no welcome message within 3 s, and no answer to a HELP line either (silence)",
                ),
            ),
        ];
        for (facts, evidence) in table {
            let step = not_ftp(&facts, WAIT, "h", 21, MS);
            assert_eq!(
                step.as_ref().map(|s| s.evidence.as_str()),
                evidence,
                "{facts:?}"
            );
            if let Some(step) = step {
                assert_eq!(
                    (step.name.as_str(), step.verdict),
                    ("banner", Verdict::Fail)
                );
            }
        }
        let help = not_ftp(
            &FirstBytes::AnsweredHelp(b"220 late".to_vec()),
            WAIT,
            "h",
            21,
            MS,
        );
        assert!(
            help.unwrap()
                .cause
                .unwrap()
                .contains("waits for its client to speak first")
        );
        assert_eq!(shown(&[b'a'; 81]).chars().count(), 81);
    }

    #[test]
    fn banners() {
        let (step, sw) = banner(&Reply::new(ReplyCode::READY, "(vsFTPd 3.0.5)"), MS);
        assert_eq!(sw, Software::Vsftpd);
        assert_eq!(step.evidence, "220 (vsFTPd 3.0.5) (server: vsftpd)");
        let table = [
            (
                Error::Tls("bad".into()),
                true,
                "tls",
                "the TLS handshake failed on the implicit-TLS port",
            ),
            (
                Error::Tls("bad".into()),
                false,
                "banner",
                "the connection broke",
            ),
            (
                Error::Network(io::ErrorKind::ConnectionReset.into()),
                false,
                "banner",
                "reset:",
            ),
            (
                Error::Closed,
                false,
                "banner",
                "the server closed the connection",
            ),
            (
                Error::Timeout("x".into()),
                false,
                "banner",
                "the port accepts connections",
            ),
            (
                refused(ReplyCode::SERVICE_UNAVAILABLE, "busy"),
                false,
                "banner",
                "the server turns sessions away",
            ),
            (
                refused(ReplyCode::NOT_LOGGED_IN, "no"),
                false,
                "banner",
                "the connection broke",
            ),
        ];
        for (e, implicit, name, cause) in table {
            let step = no_banner(&e, implicit, MS);
            assert_eq!((step.name.as_str(), step.verdict), (name, Verdict::Fail));
            assert!(step.cause.unwrap().starts_with(cause), "{e}");
        }
    }

    #[test]
    fn virtual_hosts() {
        assert!(host("h", &Ok(None), MS).is_none());
        let ok = host("h", &Ok(Some(Reply::new(ReplyCode::READY, "hi"))), MS).unwrap();
        assert_eq!(
            (ok.verdict, ok.evidence.as_str()),
            (Verdict::Ok, "HOST h: 220 hi")
        );
        let other = host(
            "h",
            &Ok(Some(Reply::new(ReplyCode::NOT_LOGGED_IN, "no"))),
            MS,
        )
        .unwrap();
        assert_eq!(other.verdict, Verdict::Warn);
        assert!(other.cause.unwrap().contains("does not serve h"));
        let broke = host("h", &Err(Error::Closed), MS).unwrap();
        assert_eq!(
            broke.cause.as_deref(),
            Some("FEAT or HOST before login broke the session")
        );
    }

    #[test]
    fn auth_tls() {
        let step = no_tls(
            &refused(ReplyCode::NOT_IMPLEMENTED, "no"),
            Software::Vsftpd,
            MS,
        );
        assert_eq!(
            step.advice.unwrap(),
            format!(
                "turn TLS on in the server: {}",
                Software::Vsftpd.tls_setting()
            )
        );
        let step = no_tls(&Error::Tls("alert".into()), Software::Vsftpd, MS);
        assert!(step.cause.unwrap().starts_with("the TLS handshake failed"));
    }
}
