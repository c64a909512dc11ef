//! Judging data connections: a listing over each method (EPSV, PASV, EPRT, PORT), and the
//! other address family of the name. Pure: a [`Probe`] in, a step with its cause and advice out.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use wharf_proto::{Reply, ReplyCode};

use super::report::{Step, Verdict};
use super::software::Software;
use crate::client::{DataMethod, Probe, address_class, is_local_address};
use crate::error::Error;

/// A method that cannot apply: PASV and PORT carry IPv4 addresses only.
pub(crate) fn ipv4_only(method: DataMethod, elapsed: Duration) -> Step {
    let evidence = "IPv4 only; this is an IPv6 connection";
    Step::new(method.name(), Verdict::Skipped, evidence, elapsed)
}

/// No fresh session to probe a method on.
pub(crate) fn no_session(method: DataMethod, e: &Error, elapsed: Duration) -> Step {
    let evidence = format!("could not open a new session: {e}");
    Step::new(method.name(), Verdict::Fail, evidence, elapsed).because(
        "the server stopped accepting sessions",
        "check the server's connection limits",
    )
}

/// The verdict, cause and advice for one data method; `server`: the control connection's peer.
pub(crate) fn listing(probe: &Probe, software: Software, server: SocketAddr) -> Step {
    let setup = probe
        .setup_reply
        .as_ref()
        .map(|r| format!("{} {}", r.code, r.text()))
        .unwrap_or_default();
    let step = Step::new(probe.method.name(), Verdict::Ok, "", probe.elapsed);
    match &probe.result {
        Ok(bytes) => received(step, probe, &setup, *bytes, software, server),
        Err(e) => {
            // A refused setup command is in the error already.
            let evidence = if setup.is_empty() || e.to_string().contains(&setup) {
                e.to_string()
            } else {
                format!("{setup}; {e}")
            };
            let (cause, advice) = failure(probe, e, software, server);
            Step {
                verdict: Verdict::Fail,
                evidence,
                ..step
            }
            .because(cause, advice)
        }
    }
}

/// A PASV reply announcing another address than the one connected to.
fn mismatch(probe: &Probe, server: SocketAddr) -> Option<IpAddr> {
    probe
        .announced
        .filter(|a| a.ip() != server.ip())
        .map(|a| a.ip())
}

fn masquerade(software: Software) -> String {
    format!(
        "set the server's public address with {}",
        software.masquerade_setting()
    )
}

/// The listing came: still a warning when the PASV address announced is not the server's.
fn received(
    step: Step,
    probe: &Probe,
    setup: &str,
    bytes: usize,
    software: Software,
    server: SocketAddr,
) -> Step {
    let over = match probe.data_tls_resumed {
        Some(true) => " over TLS (session resumed)",
        Some(false) => " over TLS (new session)",
        None => "",
    };
    let Some(ip) = mismatch(probe, server) else {
        let evidence = format!("{setup}; listing received ({bytes} bytes){over}");
        return Step { evidence, ..step };
    };
    let own = server.ip();
    if !probe.used_control_address {
        // Another address of the server (multi-homed, load-balanced) that works.
        let evidence = format!("{setup}; announced {ip}, not {own}, and it was reachable");
        return Step { evidence, ..step };
    }
    let class = address_class(ip, own);
    let evidence = format!(
        "{setup}; announced {ip}, not {own} ({class}): not connected to, as a check connects only to the address you named; the server's own address {own} worked"
    );
    let step = Step {
        verdict: Verdict::Warn,
        evidence,
        ..step
    };
    if is_local_address(own) && !is_local_address(ip) {
        step.because(
            format!(
                "checked from inside the server's network: the server announces its public address {ip}, right for clients outside, not reachable from here (no hairpin NAT)"
            ),
            "nothing to change for clients outside; inside, use EPSV or a client that falls back to the server's address",
        )
    } else {
        step.because(
            format!(
                "the server announces {ip} ({class}) in PASV replies instead of the address clients reach it at: a NAT/masquerade misconfiguration. Clients that trust the PASV address fail"
            ),
            masquerade(software),
        )
    }
}

/// Why a listing over a data method failed, and what to change.
fn failure(probe: &Probe, e: &Error, software: Software, server: SocketAddr) -> (String, String) {
    let passive = probe.method.is_passive();
    let setup_reply = probe.setup_reply.as_ref().filter(|r| r.code.is_negative());
    let listing_refused = matches!(e, Error::Refused { .. })
        && !e.is_data_connection_failure()
        && setup_reply.is_none();
    let tls_refused = e.reply_code().is_some_and(ReplyCode::may_be_data_tls) && {
        let t = e.to_string().to_ascii_lowercase();
        t.contains("tls") || t.contains("ssl") || t.contains("reuse")
    };
    let pair = |cause: &str, advice: &str| (cause.to_string(), advice.to_string());
    match setup_reply {
        _ if matches!(e, Error::Tls(_)) => pair(
            "the data connection was made, but its TLS handshake failed",
            "check the server's TLS settings and log for data connections",
        ),
        None if tls_refused => pair(
            "the data connection was made, but the server refused its TLS (a server that requires TLS session reuse refuses a data connection that does not resume the control connection's session)",
            "check the server's log; this client resumes sessions, so a refusal points at the server's session cache or ticket settings",
        ),
        Some(reply) if !passive && active_address_refused(reply, probe, server) => (
            format!(
                "the server refuses the data address this client sent ({}): this client is behind NAT, so the address it knows is not the one the server sees (bounce protection)",
                probe
                    .data_addr
                    .map_or_else(String::new, |a| a.ip().to_string())
            ),
            "use passive mode (clients do by default)".to_string(),
        ),
        Some(_) => (
            format!("the server does not offer {}", probe.method.name()),
            if passive {
                "use another passive command (clients fall back by themselves)".to_string()
            } else {
                "use another data mode".to_string()
            },
        ),
        None if listing_refused => pair(
            "the data connection worked, but the server refused the listing",
            "check the user's permissions on its login directory",
        ),
        None if passive => passive_failure(probe, e, software, server),
        None => pair(
            "the server could not connect back to this client: this client's firewall or NAT blocks incoming connections (or the server's outgoing ones)",
            "use passive mode (clients do by default); active mode needs this client reachable from the server",
        ),
    }
}

/// The passive data connection was not made.
fn passive_failure(
    probe: &Probe,
    e: &Error,
    software: Software,
    server: SocketAddr,
) -> (String, String) {
    let addr = probe
        .data_addr
        .map_or_else(|| "the data port".to_string(), |a| a.to_string());
    let both_failed = probe.used_control_address && matches!(e, Error::DataConnect { .. });
    match mismatch(probe, server) {
        Some(ip) if both_failed => (
            format!(
                "the server announces {ip} in PASV replies, which this client cannot reach, and its own address did not answer on that port either"
            ),
            format!(
                "{}, and open its passive ports ({}) in its firewall",
                masquerade(software),
                software.passive_range_setting()
            ),
        ),
        _ => (
            format!(
                "the passive data connection to {addr} {}: a firewall in front of the server lets the control port through but not the passive ports",
                if is_timeout(e) { "timed out" } else { "failed" }
            ),
            format!(
                "open the server's passive port range in its firewall{}, and set the range with {} so that it matches",
                probe
                    .data_addr
                    .map(|a| format!(" (this time it offered port {})", a.port()))
                    .unwrap_or_default(),
                software.passive_range_setting()
            ),
        ),
    }
}

/// An EPRT/PORT refusal that means "not your address": a client behind NAT sends its inside
/// address, which bounce protection refuses (vsftpd/ProFTPD 500 "Illegal PORT command",
/// pyftpdlib 501 "foreign address").
fn active_address_refused(reply: &Reply, probe: &Probe, server: SocketAddr) -> bool {
    let text = reply.text().to_ascii_lowercase();
    let nat = probe
        .data_addr
        .is_some_and(|a| is_local_address(a.ip()) && !is_local_address(server.ip()));
    reply.code.is_not_accepted() && (nat || text.contains("illegal") || text.contains("foreign"))
}

fn is_timeout(e: &Error) -> bool {
    match e {
        Error::Timeout(_) => true,
        Error::DataConnect { source, .. } => source.kind() == io::ErrorKind::TimedOut,
        _ => false,
    }
}

/// A session over the other address family of the name: a listing over EPSV there, or why
/// there was no session.
#[derive(Debug)]
pub(crate) enum OtherFamily {
    NoSession(Error),
    /// Bytes listed over EPSV, or the error.
    Listed(Result<usize, Error>),
}

/// The other address family: clients that prefer it (IPv6 first, most of them) must work too.
pub(crate) fn other_family(
    host: &str,
    addr: SocketAddr,
    facts: &OtherFamily,
    software: Software,
    elapsed: Duration,
) -> Step {
    let (name, record) = family(addr);
    match facts {
        OtherFamily::NoSession(e) => Step::new(name, Verdict::Warn, format!("{addr}: {e}"), elapsed)
            .because(
                format!(
                    "{host} also resolves to {}, but FTP does not work there: clients that try that address first wait or fail",
                    addr.ip()
                ),
                format!(
                    "make the server listen on {name} too ({}), or remove the {record} record of {host}",
                    software.listen_setting(addr.is_ipv6())
                ),
            ),
        OtherFamily::Listed(Ok(bytes)) => Step::new(
            name,
            Verdict::Ok,
            format!("{addr}: connected, logged in, listing over EPSV received ({bytes} bytes)"),
            elapsed,
        ),
        OtherFamily::Listed(Err(e)) => Step::new(
            name,
            Verdict::Warn,
            format!("{addr}: connected and logged in; EPSV listing: {e}"),
            elapsed,
        )
        .because(
            format!(
                "over {name} the control connection works but the passive data connection does not: the firewall opens the passive ports for one family only"
            ),
            format!(
                "open the passive ports for {name} too (nftables `inet` rules, or ip6tables beside iptables), {}",
                software.passive_range_setting()
            ),
        ),
    }
}

/// The step's name and the DNS record of an address's family.
pub(crate) fn family(addr: SocketAddr) -> (&'static str, &'static str) {
    if addr.is_ipv6() {
        ("IPv6", "AAAA")
    } else {
        ("IPv4", "A")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(7);

    fn probe(method: DataMethod, setup: Option<Reply>, result: Result<usize, Error>) -> Probe {
        Probe {
            method,
            setup_reply: setup,
            announced: None,
            data_addr: None,
            announced_error: None,
            used_control_address: false,
            data_tls_resumed: None,
            result,
            elapsed: MS,
        }
    }

    fn reply(code: ReplyCode, text: &str) -> Option<Reply> {
        Some(Reply::new(code, text))
    }

    fn refused(command: &str, code: ReplyCode, text: &str) -> Error {
        Error::Refused {
            command: command.into(),
            reply: Reply::new(code, text),
        }
    }

    fn data_connect(addr: &str, kind: io::ErrorKind) -> Error {
        Error::DataConnect {
            addr: addr.parse().unwrap(),
            source: kind.into(),
        }
    }

    #[test]
    fn listings_received() {
        let public: SocketAddr = "198.51.100.7:21".parse().unwrap();
        let inside: SocketAddr = "192.168.1.5:21".parse().unwrap();
        let pasv = || reply(ReplyCode::PASSIVE, "Entering Passive Mode");
        let announced = |ip: &str, used_control_address| Probe {
            announced: Some(format!("{ip}:50000").parse().unwrap()),
            used_control_address,
            ..probe(DataMethod::Pasv, pasv(), Ok(10))
        };
        let tls = Probe {
            data_tls_resumed: Some(true),
            ..probe(DataMethod::Pasv, pasv(), Ok(10))
        };
        let table = [
            (tls, public, Verdict::Ok, None),
            (announced("198.51.100.8", false), public, Verdict::Ok, None),
            (
                announced("10.0.0.5", true),
                public,
                Verdict::Warn,
                Some("the server announces 10.0.0.5 ("),
            ),
            (
                announced("203.0.113.9", true),
                inside,
                Verdict::Warn,
                Some("checked from inside the server's network"),
            ),
        ];
        for (probe, server, verdict, cause) in table {
            let step = listing(&probe, Software::Vsftpd, server);
            assert_eq!((step.name.as_str(), step.verdict), ("PASV", verdict));
            match cause {
                Some(c) => assert!(step.cause.unwrap().starts_with(c)),
                None => assert!(step.cause.is_none()),
            }
        }
        let step = listing(
            &Probe {
                data_tls_resumed: Some(true),
                ..probe(DataMethod::Epsv, pasv(), Ok(10))
            },
            Software::Vsftpd,
            public,
        );
        assert_eq!(
            step.evidence,
            "227 Entering Passive Mode; listing received (10 bytes) over TLS (session resumed)"
        );
        let step = listing(&announced("198.51.100.8", false), Software::Vsftpd, public);
        assert!(
            step.evidence
                .ends_with("announced 198.51.100.8, not 198.51.100.7, and it was reachable")
        );
        let step = listing(&announced("10.0.0.5", true), Software::Proftpd, public);
        assert_eq!(
            step.advice.unwrap(),
            format!(
                "set the server's public address with {}",
                Software::Proftpd.masquerade_setting()
            )
        );
    }

    fn epsv() -> Option<Reply> {
        reply(
            ReplyCode::EXTENDED_PASSIVE,
            "Entering Extended Passive Mode",
        )
    }

    /// Each probe fails, with a cause that starts as given.
    fn assert_causes(table: Vec<(Probe, &str)>) {
        let server: SocketAddr = "198.51.100.7:21".parse().unwrap();
        for (probe, cause) in table {
            let step = listing(&probe, Software::Pyftpdlib, server);
            assert_eq!(step.verdict, Verdict::Fail, "{cause}");
            let told = step.cause.unwrap();
            assert!(told.starts_with(cause), "{told}");
        }
    }

    #[test]
    fn listings_refused() {
        let nat_eprt = Probe {
            data_addr: Some("192.168.1.5:40000".parse().unwrap()),
            ..probe(
                DataMethod::Eprt,
                reply(ReplyCode::SYNTAX_ERROR, "Illegal EPRT command."),
                Err(refused(
                    "EPRT",
                    ReplyCode::SYNTAX_ERROR,
                    "Illegal EPRT command.",
                )),
            )
        };
        assert_causes(vec![
            (
                probe(DataMethod::Epsv, epsv(), Err(Error::Tls("alert".into()))),
                "the data connection was made, but its TLS handshake failed",
            ),
            (
                probe(
                    DataMethod::Epsv,
                    epsv(),
                    Err(refused(
                        "LIST",
                        ReplyCode::NETWORK_PROTOCOL_NOT_SUPPORTED,
                        "TLS session reuse required",
                    )),
                ),
                "the data connection was made, but the server refused its TLS",
            ),
            (
                nat_eprt,
                "the server refuses the data address this client sent (192.168.1.5)",
            ),
            (
                probe(
                    DataMethod::Pasv,
                    reply(ReplyCode::NOT_IMPLEMENTED, "no"),
                    Err(refused("PASV", ReplyCode::NOT_IMPLEMENTED, "no")),
                ),
                "the server does not offer PASV",
            ),
            (
                probe(
                    DataMethod::Epsv,
                    epsv(),
                    Err(refused(
                        "LIST",
                        ReplyCode::FILE_UNAVAILABLE,
                        "Permission denied",
                    )),
                ),
                "the data connection worked, but the server refused the listing",
            ),
        ]);
    }

    #[test]
    fn data_connections_not_made() {
        let both_failed = Probe {
            announced: Some("10.0.0.5:50000".parse().unwrap()),
            data_addr: Some("198.51.100.7:50000".parse().unwrap()),
            used_control_address: true,
            ..probe(
                DataMethod::Pasv,
                reply(ReplyCode::PASSIVE, "ok"),
                Err(data_connect("198.51.100.7:50000", io::ErrorKind::TimedOut)),
            )
        };
        let timed_out = Probe {
            data_addr: Some("198.51.100.7:50000".parse().unwrap()),
            ..probe(
                DataMethod::Epsv,
                epsv(),
                Err(data_connect("198.51.100.7:50000", io::ErrorKind::TimedOut)),
            )
        };
        assert_causes(vec![
            (
                timed_out,
                "the passive data connection to 198.51.100.7:50000 timed out",
            ),
            (
                both_failed,
                "the server announces 10.0.0.5 in PASV replies, which this client cannot reach",
            ),
            (
                probe(
                    DataMethod::Port,
                    reply(ReplyCode::OK, "ok"),
                    Err(data_connect(
                        "192.0.2.1:40000",
                        io::ErrorKind::ConnectionRefused,
                    )),
                ),
                "the server could not connect back to this client",
            ),
        ]);
    }

    #[test]
    fn failure_evidence() {
        let server: SocketAddr = "198.51.100.7:21".parse().unwrap();
        let refused_setup = probe(
            DataMethod::Pasv,
            reply(ReplyCode::NOT_IMPLEMENTED, "no"),
            Err(refused("PASV", ReplyCode::NOT_IMPLEMENTED, "no")),
        );
        assert_eq!(
            listing(&refused_setup, Software::Pyftpdlib, server).evidence,
            "the server refused PASV: 502 no"
        );
        let after_setup = probe(DataMethod::Epsv, epsv(), Err(Error::Closed));
        assert_eq!(
            listing(&after_setup, Software::Pyftpdlib, server).evidence,
            "229 Entering Extended Passive Mode; the server closed the connection"
        );
    }

    #[test]
    fn methods_not_probed() {
        let step = ipv4_only(DataMethod::Port, MS);
        assert_eq!(
            (step.name.as_str(), step.verdict),
            ("PORT", Verdict::Skipped)
        );
        let step = no_session(DataMethod::Epsv, &Error::Closed, MS);
        assert_eq!(step.verdict, Verdict::Fail);
        assert_eq!(
            step.evidence,
            "could not open a new session: the server closed the connection"
        );
    }

    #[test]
    fn other_families() {
        let v6: SocketAddr = "[2001:db8::1]:21".parse().unwrap();
        let table = [
            (
                OtherFamily::NoSession(Error::Closed),
                Verdict::Warn,
                Some("h also resolves to 2001:db8::1"),
            ),
            (OtherFamily::Listed(Ok(10)), Verdict::Ok, None),
            (
                OtherFamily::Listed(Err(Error::Closed)),
                Verdict::Warn,
                Some("over IPv6 the control connection works"),
            ),
        ];
        for (facts, verdict, cause) in table {
            let step = other_family("h", v6, &facts, Software::Vsftpd, MS);
            assert_eq!((step.name.as_str(), step.verdict), ("IPv6", verdict));
            assert_eq!(
                step.cause
                    .as_deref()
                    .map(|c| &c[..cause.map_or(0, str::len)]),
                cause
            );
        }
        let step = other_family(
            "h",
            v6,
            &OtherFamily::NoSession(Error::Closed),
            Software::Vsftpd,
            MS,
        );
        assert!(step.advice.unwrap().contains("remove the AAAA record of h"));
        assert_eq!(family("192.0.2.1:21".parse().unwrap()), ("IPv4", "A"));
    }
}
