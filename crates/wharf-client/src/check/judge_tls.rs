//! Judging TLS: the handshake and certificate, the protocol versions accepted, and the session
//! reuse rule for data connections. Pure: facts in, a step out.

use std::time::Duration;

use wharf_proto::x509::{self, CertSummary};

use super::report::{Step, Verdict};
use super::software::Software;
use crate::error::Error;
use crate::tls::TlsVersion;

/// Days left under which a certificate gets a warning.
const EXPIRY_WARNING_DAYS: i64 = 30;

/// What the TLS handshake of the control connection showed.
#[derive(Debug, Clone)]
pub(crate) struct Handshake {
    pub version: String,
    pub suite: String,
    /// The name the certificate is checked against.
    pub name: String,
    /// `None`: no certificate seen.
    pub certificate: Option<Certificate>,
    /// Seconds since the Unix epoch, to judge the expiry by.
    pub now: i64,
    pub elapsed: Duration,
}

/// The certificate presented and the verifier's word on it.
#[derive(Debug, Clone)]
pub(crate) struct Certificate {
    /// `None`: not readable.
    pub summary: Option<CertSummary>,
    /// `Err`: why it is not trusted.
    pub verdict: Result<(), String>,
    pub name_matches: bool,
}

/// The TLS step: version, cipher suite, certificate subject and expiry, name match, trust.
/// `insecure`: the user accepts certificates that do not verify (a warning, not a failure).
pub(crate) fn handshake(h: &Handshake, insecure: bool, software: Software) -> Step {
    let (version, suite, name) = (&h.version, &h.suite, &h.name);
    let Some(cert) = &h.certificate else {
        let evidence = format!("{version}, {suite}; no certificate seen");
        return Step::new("tls", Verdict::Ok, evidence, h.elapsed);
    };
    let trust = match &cert.verdict {
        Ok(()) => "trusted".to_string(),
        Err(why) => why.clone(),
    };
    let evidence = format!(
        "{version}, {suite}; {}; name {name} {}; {trust}",
        certificate_text(cert.summary.as_ref(), h.now),
        if cert.name_matches {
            "matches"
        } else {
            "does not match"
        }
    );
    let step = Step::new("tls", Verdict::Ok, evidence, h.elapsed);
    let problems = problems(cert, name, h.now, software);
    if problems.is_empty() {
        return step;
    }
    let expiring_only = cert.verdict.is_ok() && cert.name_matches;
    let verdict = if expiring_only || insecure {
        Verdict::Warn
    } else {
        Verdict::Fail
    };
    let (causes, advice): (Vec<String>, Vec<String>) = problems.into_iter().unzip();
    Step { verdict, ..step }.because(causes.join("; "), advice.join("; "))
}

fn certificate_text(summary: Option<&CertSummary>, now: i64) -> String {
    let Some(c) = summary else {
        return "certificate not readable".into();
    };
    let days = (c.not_after - now).div_euclid(86_400);
    format!(
        "certificate {} (issuer {}), expires {} ({})",
        c.subject,
        c.issuer,
        x509::date(c.not_after),
        if days >= 0 {
            format!("{days} days left")
        } else {
            format!("expired {} days ago", -days)
        }
    )
}

/// Every problem of the certificate with its own cause and advice (a name mismatch does not
/// hide an expiry).
fn problems(cert: &Certificate, name: &str, now: i64, software: Software) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if !cert.name_matches {
        problems.push((
            format!("the certificate is not issued for {name}: clients that check names refuse it"),
            format!(
                "connect with a name the certificate carries ({}), or issue one that includes {name}",
                cert.summary
                    .as_ref()
                    .map_or("see its subject", |c| c.subject.as_str())
            ),
        ));
    }
    // The verifier's own word, unless it is the name again (or the expiry, said below).
    if let Err(why) = &cert.verdict
        && !matches!(why.as_str(), "issued for another name" | "expired")
    {
        problems.push((
            format!("the certificate is {why}: clients that verify certificates refuse it"),
            "use a certificate from a CA clients trust (such as Let's Encrypt), or give clients this CA (wharf: --ca-file)".to_string(),
        ));
    }
    if let Some(c) = cert
        .summary
        .as_ref()
        .filter(|c| c.not_after - now < EXPIRY_WARNING_DAYS * 86_400)
    {
        let when = x509::date(c.not_after);
        problems.push((
            if c.not_after < now {
                format!("the certificate expired on {when}: clients refuse it")
            } else {
                format!("the certificate expires on {when}")
            },
            if software == Software::Wharf {
                "renew the certificate (Wharf reloads it on SIGHUP)".to_string()
            } else {
                "renew the certificate, and reload the server".to_string()
            },
        ));
    }
    problems
}

/// Which TLS versions the server accepts, one handshake each (`Ok`: the cipher suite).
/// Clients without TLS 1.3 are still common (older Windows and Java versions), so a server with
/// 1.3 only is a warning; one without 1.3 is told, not judged.
pub(crate) fn versions(
    tried: &[(TlsVersion, Result<String, Error>)],
    software: Software,
    elapsed: Duration,
) -> Step {
    let seen: Vec<String> = tried
        .iter()
        .map(|(version, result)| match result {
            Ok(suite) => format!("{}: accepted ({suite})", version.name()),
            Err(e) => format!("{}: refused ({e})", version.name()),
        })
        .collect();
    let accepted: Vec<TlsVersion> = tried
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(v, _)| *v)
        .collect();
    let step = Step::new("versions", Verdict::Ok, seen.join("; "), elapsed);
    match accepted[..] {
        [TlsVersion::Tls13] => Step { verdict: Verdict::Warn, ..step }.because(
            "the server accepts TLS 1.3 only: clients without it (older Windows and Java versions, older FTP clients) cannot connect",
            format!("allow TLS 1.2 as well: {}", software.tls12_setting()),
        ),
        [] => Step { verdict: Verdict::Warn, ..step }.because(
            "neither a TLS 1.3 nor a TLS 1.2 handshake succeeded on a connection of its own, though the first one did: the server limits TLS connections per address, or is overloaded",
            "check the server's log",
        ),
        _ => step,
    }
}

/// Two listings on a session of their own: the first resuming the control connection's TLS
/// session (as clients do), the second with a new one.
#[derive(Debug)]
pub(crate) enum Reuse {
    /// No session to try on.
    NoSession(Error),
    /// The listing resuming the session failed.
    Refused(Error),
    Accepted {
        /// Whether the data connection resumed the session (`None`: no TLS seen).
        resumed: Option<bool>,
        /// The listing with a new session (its bytes or error); `Err`: no second session.
        fresh: Result<Result<usize, Error>, Error>,
    },
}

/// Whether the server requires data connections to resume the control connection's TLS
/// session (vsftpd's `require_ssl_reuse`, ProFTPD, FileZilla Server, Wharf), and whether ours,
/// which do, are accepted.
pub(crate) fn reuse(facts: &Reuse, elapsed: Duration) -> Step {
    let (resumed, fresh) = match facts {
        Reuse::NoSession(e) => {
            return Step::new(
                "reuse",
                Verdict::Skipped,
                format!("no new session: {e}"),
                elapsed,
            );
        }
        Reuse::Refused(e) => {
            let evidence =
                format!("a data connection resuming the control connection's session: {e}");
            return Step::new("reuse", Verdict::Warn, evidence, elapsed).because(
                "the server refuses data connections that resume the control connection's TLS session, which is what clients do: a server-side session cache or ticket problem",
                "check the server's log and its TLS session cache settings",
            );
        }
        Reuse::Accepted { resumed, fresh } => (resumed, fresh),
    };
    let ours = if *resumed == Some(true) {
        "a data connection resuming the control connection's session: accepted"
    } else {
        "the server did not resume our session (each data connection a full handshake), and accepted it"
    };
    let fresh = match fresh {
        Err(e) => format!("no second session: {e}"),
        Ok(Ok(_)) => {
            "one with a new TLS session: accepted too (the server does not require session reuse)"
                .to_string()
        }
        Ok(Err(e)) => {
            format!("one with a new TLS session: refused (the server requires session reuse): {e}")
        }
    };
    Step::new("reuse", Verdict::Ok, format!("{ours}; {fresh}"), elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(7);
    const NOW: i64 = 1_800_000_000;
    const DAY: i64 = 86_400;

    fn handshake_with(verdict: Result<(), &str>, name_matches: bool, days_left: i64) -> Handshake {
        Handshake {
            version: "TLS 1.3".into(),
            suite: "TLS13_AES_256_GCM_SHA384".into(),
            name: "ftp.example.net".into(),
            certificate: Some(Certificate {
                summary: Some(CertSummary {
                    subject: "CN=ftp.example.net".into(),
                    issuer: "CN=CA".into(),
                    not_before: NOW - 100 * DAY,
                    not_after: NOW + days_left * DAY,
                }),
                verdict: verdict.map_err(String::from),
                name_matches,
            }),
            now: NOW,
            elapsed: MS,
        }
    }

    #[test]
    fn certificates() {
        // (trust, name matches, days left, insecure) → verdict, causes.
        let table = [
            (Ok(()), true, 90, false, Verdict::Ok, 0),
            (Ok(()), true, 10, false, Verdict::Warn, 1),
            (Ok(()), true, -3, false, Verdict::Warn, 1),
            (Err("expired"), true, -3, false, Verdict::Fail, 1),
            (
                Err("issued for another name"),
                false,
                90,
                false,
                Verdict::Fail,
                1,
            ),
            (
                Err("signed by an unknown issuer"),
                true,
                90,
                false,
                Verdict::Fail,
                1,
            ),
            (
                Err("signed by an unknown issuer"),
                true,
                90,
                true,
                Verdict::Warn,
                1,
            ),
            (
                Err("signed by an unknown issuer"),
                false,
                10,
                false,
                Verdict::Fail,
                3,
            ),
        ];
        for (trust, matches, days, insecure, verdict, causes) in table {
            let h = handshake_with(trust, matches, days);
            let step = handshake(&h, insecure, Software::Vsftpd);
            assert_eq!(step.verdict, verdict, "{trust:?} {matches} {days}");
            let told = step.cause.as_deref().map_or(0, |c| c.split("; ").count());
            assert_eq!(told, causes, "{:?}", step.cause);
            assert!(step.evidence.starts_with("TLS 1.3, TLS13_AES_256_GCM_SHA384; certificate CN=ftp.example.net (issuer CN=CA), expires "));
        }
        let step = handshake(&handshake_with(Ok(()), true, 10), false, Software::Wharf);
        assert_eq!(
            step.advice.as_deref(),
            Some("renew the certificate (Wharf reloads it on SIGHUP)")
        );
        assert!(
            step.evidence
                .contains("(10 days left); name ftp.example.net matches; trusted")
        );
        let expired = handshake(&handshake_with(Ok(()), true, -3), false, Software::Wharf);
        assert!(expired.evidence.contains("(expired 3 days ago)"));
        let bare = Handshake {
            certificate: None,
            ..handshake_with(Ok(()), true, 90)
        };
        let step = handshake(&bare, false, Software::Wharf);
        assert_eq!(
            step.evidence,
            "TLS 1.3, TLS13_AES_256_GCM_SHA384; no certificate seen"
        );
    }

    #[test]
    fn versions_accepted() {
        let ok = || Ok::<String, Error>("SUITE".into());
        let no = || Err::<String, Error>(Error::Tls("protocol version".into()));
        let table = [
            (ok(), ok(), Verdict::Ok, None),
            (no(), ok(), Verdict::Ok, None),
            (
                ok(),
                no(),
                Verdict::Warn,
                Some("the server accepts TLS 1.3 only"),
            ),
            (
                no(),
                no(),
                Verdict::Warn,
                Some("neither a TLS 1.3 nor a TLS 1.2 handshake"),
            ),
        ];
        for (v13, v12, verdict, cause) in table {
            let tried = [(TlsVersion::Tls13, v13), (TlsVersion::Tls12, v12)];
            let step = versions(&tried, Software::Proftpd, MS);
            assert_eq!(step.verdict, verdict);
            assert_eq!(
                step.cause
                    .as_deref()
                    .map(|c| &c[..cause.map_or(0, str::len)]),
                cause
            );
        }
        let tried = [(TlsVersion::Tls13, ok()), (TlsVersion::Tls12, no())];
        assert_eq!(
            versions(&tried, Software::Proftpd, MS).evidence,
            "TLS 1.3: accepted (SUITE); TLS 1.2: refused (TLS: protocol version)"
        );
    }

    #[test]
    fn session_reuse() {
        let table = [
            (
                Reuse::NoSession(Error::Closed),
                Verdict::Skipped,
                "no new session: the server closed the connection",
            ),
            (
                Reuse::Refused(Error::Tls("x".into())),
                Verdict::Warn,
                "a data connection resuming the control connection's session: TLS: x",
            ),
            (
                Reuse::Accepted {
                    resumed: Some(true),
                    fresh: Ok(Ok(10)),
                },
                Verdict::Ok,
                "a data connection resuming the control connection's session: accepted; one with a new TLS session: accepted too (the server does not require session reuse)",
            ),
            (
                Reuse::Accepted {
                    resumed: Some(false),
                    fresh: Ok(Err(Error::Closed)),
                },
                Verdict::Ok,
                "the server did not resume our session (each data connection a full handshake), and accepted it; one with a new TLS session: refused (the server requires session reuse): the server closed the connection",
            ),
            (
                Reuse::Accepted {
                    resumed: Some(true),
                    fresh: Err(Error::Closed),
                },
                Verdict::Ok,
                "a data connection resuming the control connection's session: accepted; no second session: the server closed the connection",
            ),
        ];
        for (facts, verdict, evidence) in table {
            let step = reuse(&facts, MS);
            assert_eq!((step.verdict, step.evidence.as_str()), (verdict, evidence));
        }
    }
}
