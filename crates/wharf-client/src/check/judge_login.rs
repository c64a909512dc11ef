//! Judging the login, SYST and FEAT. Pure: facts in, a step out.

use std::time::Duration;

use wharf_proto::{Reply, ReplyCode};

use super::report::{Step, Verdict};
use crate::error::Error;

/// A password is not sent to a server whose certificate did not verify: it may not be the
/// server meant.
pub(crate) fn login_withheld(elapsed: Duration) -> Step {
    let mut step = Step::new(
        "login",
        Verdict::Skipped,
        "password not sent: the server's certificate did not verify",
        elapsed,
    );
    step.advice =
        Some("trust the server's CA with --ca-file, or --insecure to log in anyway".into());
    step
}

pub(crate) fn login(
    user: &str,
    result: &Result<(), Error>,
    anonymous: bool,
    elapsed: Duration,
) -> Step {
    match result {
        Ok(()) => Step::new(
            "login",
            Verdict::Ok,
            format!("logged in as {user}"),
            elapsed,
        ),
        Err(e) => {
            let (cause, advice) = login_failure(e, anonymous);
            Step::new("login", Verdict::Fail, e.to_string(), elapsed).because(cause, advice)
        }
    }
}

/// Why a login failed, and what to do: credentials, limits, TLS, server errors, timeouts.
fn login_failure(e: &Error, anonymous: bool) -> (&'static str, &'static str) {
    let text = match e {
        Error::Refused { reply, .. } => reply.text().to_ascii_lowercase(),
        _ => String::new(),
    };
    if e.is_connection_limit() {
        (
            "the server turns this session away: too many connections (in all or from this address)",
            "close other sessions, or raise the server's connection limits",
        )
    } else if ["tls", "ssl", "encrypt"].iter().any(|w| text.contains(w))
        || e.reply_code() == Some(ReplyCode::POLICY_DENIED)
    {
        (
            "the server requires TLS (FTPS) before login",
            "use an FTPS client (explicit TLS, AUTH TLS)",
        )
    } else if text.contains("oops") {
        (
            "the server failed at login: a configuration error on the server (its message above)",
            "fix the server's configuration as its message says",
        )
    } else if matches!(e, Error::Timeout(_) | Error::Closed | Error::Network(_)) {
        (
            "the server stopped answering during login (slow name lookups or authentication on the server, or a ban after failures)",
            "check the server's log; turn off reverse DNS lookups of clients if it does them",
        )
    } else if anonymous {
        (
            "the server refused the anonymous login",
            "this server does not allow anonymous logins: give a user with --user (the password in WHARF_PASSWORD or --password-stdin)",
        )
    } else {
        (
            "the server refused the user name or password",
            "check the user name and password; the server's log says which was wrong",
        )
    }
}

pub(crate) fn syst(reply: &Result<Reply, Error>, elapsed: Duration) -> Step {
    match reply {
        Ok(r) => {
            let verdict = if r.code.is_completion() {
                Verdict::Ok
            } else {
                Verdict::Warn
            };
            Step::new("syst", verdict, format!("{} {}", r.code, r.text()), elapsed)
        }
        Err(e) => Step::new("syst", Verdict::Warn, e.to_string(), elapsed),
    }
}

/// FEAT, as read before login: the features listed, or what the server said instead.
pub(crate) fn feat(reply: Option<&Reply>, elapsed: Duration) -> Step {
    match reply {
        Some(r) if r.code.is_completion() => {
            let n = r.lines.len();
            let features: Vec<String> = r
                .lines
                .iter()
                .take(n.saturating_sub(1))
                .skip(1)
                .map(|l| String::from_utf8_lossy(l).trim().to_string())
                .collect();
            Step::new("feat", Verdict::Ok, features.join(", "), elapsed)
        }
        Some(r) => Step::new(
            "feat",
            Verdict::Ok,
            format!("{} {} (no FEAT)", r.code, r.text()),
            elapsed,
        ),
        None => Step::new("feat", Verdict::Skipped, "", elapsed),
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
    #[test]
    fn logins() {
        let table = [
            (
                refused(ReplyCode::SERVICE_UNAVAILABLE, "bye"),
                false,
                "the server turns this session away",
            ),
            (
                refused(ReplyCode::NOT_LOGGED_IN, "Too many users"),
                false,
                "the server turns this session away",
            ),
            (
                refused(ReplyCode::NOT_LOGGED_IN, "Use TLS first"),
                false,
                "the server requires TLS",
            ),
            (
                refused(ReplyCode::POLICY_DENIED, "policy"),
                false,
                "the server requires TLS",
            ),
            (
                refused(ReplyCode::NOT_LOGGED_IN, "500 OOPS: chroot"),
                false,
                "the server failed at login",
            ),
            (
                Error::Timeout("x".into()),
                false,
                "the server stopped answering",
            ),
            (
                refused(ReplyCode::NOT_LOGGED_IN, "Login incorrect."),
                true,
                "the server refused the anonymous login",
            ),
            (
                refused(ReplyCode::NOT_LOGGED_IN, "Login incorrect."),
                false,
                "the server refused the user name or password",
            ),
        ];
        for (e, anonymous, cause) in table {
            let step = login("u", &Err(e), anonymous, MS);
            assert_eq!(step.verdict, Verdict::Fail);
            assert!(step.cause.unwrap().starts_with(cause));
        }
        let step = login_withheld(MS);
        assert_eq!(step.verdict, Verdict::Skipped);
        assert!(step.cause.is_none() && step.advice.is_some());
        let step = login("u", &Ok(()), false, MS);
        assert_eq!(
            (step.verdict, step.evidence.as_str()),
            (Verdict::Ok, "logged in as u")
        );
    }

    #[test]
    fn syst_and_feat() {
        let table = [
            (
                Ok(Reply::new(ReplyCode::SYSTEM_TYPE, "UNIX Type: L8")),
                Verdict::Ok,
                "215 UNIX Type: L8",
            ),
            (
                Ok(Reply::new(ReplyCode::NOT_IMPLEMENTED, "no")),
                Verdict::Warn,
                "502 no",
            ),
            (
                Err(Error::Closed),
                Verdict::Warn,
                "the server closed the connection",
            ),
        ];
        for (reply, verdict, evidence) in table {
            let step = syst(&reply, MS);
            assert_eq!((step.verdict, step.evidence.as_str()), (verdict, evidence));
        }
        let lines = vec![
            b"Features:".to_vec(),
            b" EPSV".to_vec(),
            b" UTF8".to_vec(),
            b"End".to_vec(),
        ];
        let listed = Reply::multi(ReplyCode::SYSTEM_STATUS, lines);
        let refused = Reply::new(ReplyCode::SYNTAX_ERROR, "no");
        let table = [
            (Some(&listed), Verdict::Ok, "EPSV, UTF8"),
            (Some(&refused), Verdict::Ok, "500 no (no FEAT)"),
            (None, Verdict::Skipped, ""),
        ];
        for (reply, verdict, evidence) in table {
            let step = feat(reply, MS);
            assert_eq!((step.verdict, step.evidence.as_str()), (verdict, evidence));
        }
    }
}
