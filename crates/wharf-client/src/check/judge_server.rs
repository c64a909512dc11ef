//! Judging what the server saw (Wharf's SITE DIAG): this client's address after any NAT, and
//! the data connections that failed at the server's end during the check, told beside what
//! this side saw. Pure: the reply and this side's steps in, a step out.

use std::net::IpAddr;
use std::time::Duration;

use wharf_proto::diag::{DataFailure, DataRecord, Diagnosis};
use wharf_proto::{Reply, ReplyCode};

use super::report::{Step, Verdict};
use crate::error::Error;

/// SITE DIAG's answer and what this side knows to read it by.
#[derive(Debug)]
pub(crate) struct ServerView {
    pub reply: Result<Reply, Error>,
    /// This side's address of the control connection.
    pub local: IpAddr,
    /// Seconds since the check began: older records are not this check's.
    pub window: u64,
    pub elapsed: Duration,
}

pub(crate) fn server_side(view: &ServerView, steps: &[Step]) -> Step {
    let step = |verdict, evidence: String| Step::new("server", verdict, evidence, view.elapsed);
    let reply = match &view.reply {
        Ok(r) if r.code == ReplyCode::OK => r,
        Ok(r) => return step(Verdict::Skipped, format!("{} {}", r.code, r.text())),
        Err(e) => return step(Verdict::Skipped, e.to_string()),
    };
    let text: Vec<String> = reply
        .lines
        .iter()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .collect();
    let diag = Diagnosis::parse(text.iter().map(String::as_str));
    let local = view.local.to_canonical();
    let nat = diag
        .client_address
        .filter(|seen| seen.to_canonical() != local);
    let mut seen = seen(&diag);
    let mut findings: Vec<(String, String)> = Vec::new();
    if let Some(outside) = nat {
        let finding = format!(
            "the server saw you as {outside} while your side says {local}: you are behind NAT"
        );
        match behind_nat(finding, steps) {
            Ok(judged) => findings.push(judged),
            Err(told) => seen.push(told),
        }
    }
    for r in diag.data.iter().filter(|r| ours(r, view.window)) {
        let Some(finding) = data_failure(r, &diag, nat.is_some(), local) else {
            continue;
        };
        if !findings.iter().any(|(c, _)| *c == finding.0) {
            findings.push(finding);
        }
    }
    let evidence = seen.join("; ");
    if findings.is_empty() {
        return step(Verdict::Ok, evidence);
    }
    let (causes, advice): (Vec<String>, Vec<String>) = findings.into_iter().unzip();
    let mut advice_once: Vec<String> = Vec::new();
    for a in advice {
        if !advice_once.iter().any(|told| told.contains(&a)) {
            advice_once.push(a);
        }
    }
    step(Verdict::Warn, evidence).because(causes.join("; "), advice_once.join("; "))
}

/// What the server says it sees and announces: the evidence.
fn seen(diag: &Diagnosis) -> Vec<String> {
    let mut seen = Vec::new();
    if let Some(ip) = diag.client_address {
        seen.push(format!("it sees this client as {ip}"));
    }
    if let Some((ip, configured)) = diag.passive_address {
        seen.push(format!(
            "announces {ip} for PASV ({})",
            if configured {
                "configured"
            } else {
                "its own address"
            }
        ));
    }
    seen.push(match passive_range(diag) {
        Some(r) => format!("passive ports {r}"),
        None => "no passive port range (any port)".to_string(),
    });
    if let Some(tls) = &diag.tls {
        seen.push(format!("TLS {tls}"));
    }
    seen
}

fn passive_range(diag: &Diagnosis) -> Option<String> {
    diag.passive_ports.map(|(a, b)| format!("{a}-{b}"))
}

/// NAT is a finding when active mode failed here (`Ok`: cause and advice), else only told
/// (`Err`: the evidence).
fn behind_nat(finding: String, steps: &[Step]) -> Result<(String, String), String> {
    let active_failed = steps
        .iter()
        .any(|s| matches!(s.name.as_str(), "EPRT" | "PORT") && s.verdict == Verdict::Fail);
    if !active_failed {
        return Err(finding);
    }
    let passive_works = steps
        .iter()
        .any(|s| matches!(s.name.as_str(), "EPSV" | "PASV") && s.works());
    Ok((
        format!("{finding}, so active mode (the server connecting back to you) does not reach you"),
        if passive_works {
            "use passive mode; active mode needs a NAT with an FTP helper and a forwarded port range".into()
        } else {
            "make passive mode work (see below): active mode through this NAT needs an FTP helper and a forwarded port range".into()
        },
    ))
}

/// Whether a record is this check's: no older than the check.
fn ours(r: &DataRecord, window: u64) -> bool {
    match r.failure {
        // A wait in progress is "now": it is ours if it began during the check.
        DataFailure::PassiveWaiting { secs, .. } => secs <= window,
        _ => r.ago <= window,
    }
}

/// One failed data connection as the server saw it: cause and advice (`None`: told already,
/// as NAT).
fn data_failure(
    r: &DataRecord,
    diag: &Diagnosis,
    nat: bool,
    local: IpAddr,
) -> Option<(String, String)> {
    let (closed, open_it) = match passive_range(diag) {
        Some(r) => (
            format!("the range {r} is not open between you"),
            format!(
                "open TCP ports {r} in the firewall in front of the server (and in any firewall between), or use active mode"
            ),
        ),
        None => (
            "its passive ports are not open between you".to_string(),
            "give the server a passive port range (Wharf: `--passive-ports A-B`) and open it in the firewall in front of the server, or use active mode".to_string(),
        ),
    };
    Some(match r.failure {
        DataFailure::PassiveTimeout { port, secs }
        | DataFailure::PassiveUnused { port, secs }
        | DataFailure::PassiveWaiting { port, secs } => (
            format!(
                "the server {} {secs} s on port {port} ({}) and no connection came: {closed}",
                if matches!(r.failure, DataFailure::PassiveWaiting { .. }) {
                    "has been waiting"
                } else {
                    "waited"
                },
                r.verb
            ),
            open_it,
        ),
        DataFailure::PassiveForeign { port, from, .. } => (
            format!(
                "a data connection to port {port} came from {from}, not from the address of the control connection ({}): refused, against connection theft",
                diag.client_address.map_or_else(|| "?".into(), |ip| ip.to_string())
            ),
            "make data and control connections leave from one address (a NAT with paired address pooling, no proxy for data only)".into(),
        ),
        DataFailure::ActiveRefused { addr } => (
            format!("the server's connection to {addr} was refused: this side refuses incoming connections"),
            "use passive mode, or open that port in this machine's firewall".into(),
        ),
        DataFailure::ActiveTimeout { addr, secs } => (
            format!("the server's connection to {addr} got no answer in {secs} s: a firewall or NAT on this side drops it"),
            "use passive mode".into(),
        ),
        // Told already, as NAT.
        DataFailure::ActiveForeign { addr, .. } if nat && addr.ip().to_canonical() == local => {
            return None;
        }
        DataFailure::ActiveForeign { addr, seen } => (
            format!(
                "the server refused active mode to {addr}: it sees you as {seen}, so a NAT rewrites your address"
            ),
            "use passive mode".into(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(7);

    fn view(diag: &Diagnosis, local: &str) -> ServerView {
        let mut lines = vec![b"Diagnosis:".to_vec()];
        lines.extend(diag.lines().into_iter().map(String::into_bytes));
        lines.push(b"End".to_vec());
        ServerView {
            reply: Ok(Reply::multi(ReplyCode::OK, lines)),
            local: local.parse().unwrap(),
            window: 30,
            elapsed: MS,
        }
    }

    fn record(failure: DataFailure, ago: u64) -> DataRecord {
        DataRecord {
            failure,
            ago,
            verb: "LIST".into(),
        }
    }

    fn steps(active: Verdict, passive: Verdict) -> Vec<Step> {
        vec![
            Step::new("EPSV", passive, "", MS),
            Step::new("EPRT", active, "", MS),
        ]
    }

    #[test]
    fn not_answered() {
        let refused = ServerView {
            reply: Ok(Reply::new(ReplyCode::NOT_IMPLEMENTED, "no")),
            ..view(&Diagnosis::default(), "127.0.0.1")
        };
        let step = server_side(&refused, &[]);
        assert_eq!(
            (step.verdict, step.evidence.as_str()),
            (Verdict::Skipped, "502 no")
        );
        let broke = ServerView {
            reply: Err(Error::Closed),
            ..view(&Diagnosis::default(), "127.0.0.1")
        };
        assert_eq!(server_side(&broke, &[]).verdict, Verdict::Skipped);
    }

    #[test]
    fn what_the_server_saw() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let healthy = Diagnosis {
            client_address: Some(ip("192.0.2.10")),
            passive_address: Some((ip("198.51.100.7"), true)),
            passive_ports: Some((50000, 50100)),
            tls: Some("required".into()),
            ..Diagnosis::default()
        };
        let passive_timeout = Diagnosis {
            data: vec![
                record(
                    DataFailure::PassiveTimeout {
                        port: 50001,
                        secs: 10,
                    },
                    5,
                ),
                record(
                    DataFailure::PassiveTimeout {
                        port: 50002,
                        secs: 10,
                    },
                    500,
                ),
            ],
            ..healthy.clone()
        };
        let active_refused = Diagnosis {
            data: vec![record(
                DataFailure::ActiveRefused {
                    addr: "192.0.2.10:40000".parse().unwrap(),
                },
                1,
            )],
            ..healthy.clone()
        };
        let nat = Diagnosis {
            client_address: Some(ip("203.0.113.4")),
            data: vec![record(
                DataFailure::ActiveForeign {
                    addr: "192.0.2.10:40000".parse().unwrap(),
                    seen: ip("203.0.113.4"),
                },
                1,
            )],
            ..healthy.clone()
        };
        let ok = || steps(Verdict::Ok, Verdict::Ok);
        let table = [
            (&healthy, ok(), Verdict::Ok, None, None),
            (
                &passive_timeout,
                ok(),
                Verdict::Warn,
                Some(
                    "the server waited 10 s on port 50001 (LIST) and no connection came: the range 50000-50100 is not open between you",
                ),
                Some(
                    "open TCP ports 50000-50100 in the firewall in front of the server (and in any firewall between), or use active mode",
                ),
            ),
            (
                &active_refused,
                ok(),
                Verdict::Warn,
                Some(
                    "the server's connection to 192.0.2.10:40000 was refused: this side refuses incoming connections",
                ),
                Some("use passive mode, or open that port in this machine's firewall"),
            ),
            // Behind NAT with active mode working: told, not judged; the foreign PORT record is
            // the NAT said already.
            (&nat, ok(), Verdict::Ok, None, None),
            (
                &nat,
                steps(Verdict::Fail, Verdict::Ok),
                Verdict::Warn,
                Some(
                    "the server saw you as 203.0.113.4 while your side says 192.0.2.10: you are behind NAT, so active mode (the server connecting back to you) does not reach you",
                ),
                Some(
                    "use passive mode; active mode needs a NAT with an FTP helper and a forwarded port range",
                ),
            ),
            (
                &nat,
                steps(Verdict::Fail, Verdict::Fail),
                Verdict::Warn,
                None,
                Some(
                    "make passive mode work (see below): active mode through this NAT needs an FTP helper and a forwarded port range",
                ),
            ),
        ];
        for (diag, steps, verdict, cause, advice) in table {
            let step = server_side(&view(diag, "192.0.2.10"), &steps);
            assert_eq!(step.verdict, verdict, "{step:?}");
            if cause.is_some() {
                assert_eq!(step.cause.as_deref(), cause);
            }
            assert_eq!(step.advice.as_deref(), advice);
        }
        let step = server_side(&view(&nat, "192.0.2.10"), &ok());
        assert_eq!(
            step.evidence,
            "it sees this client as 203.0.113.4; announces 198.51.100.7 for PASV (configured); passive ports 50000-50100; TLS required; the server saw you as 203.0.113.4 while your side says 192.0.2.10: you are behind NAT"
        );
    }
}
