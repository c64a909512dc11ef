//! Judging the way in: the name and the TCP connection to the control port. Pure: facts in,
//! a step with its verdict, cause and advice out.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::report::{Step, Verdict};

/// What resolving the host gave.
#[derive(Debug)]
pub(crate) enum Resolved {
    /// The host is an address already.
    Address(IpAddr),
    Names(Vec<SocketAddr>),
    Failed(io::Error),
    TimedOut,
}

pub(crate) fn resolve(host: &str, resolved: &Resolved, wait: Duration, elapsed: Duration) -> Step {
    let step = |verdict, evidence: String| Step::new("resolve", verdict, evidence, elapsed);
    match resolved {
        Resolved::Address(ip) => step(Verdict::Skipped, format!("{ip} is an address")),
        Resolved::Names(addrs) => {
            let shown: Vec<String> = addrs.iter().map(|s| s.ip().to_string()).collect();
            step(Verdict::Ok, format!("{host} → {}", shown.join(", ")))
        }
        Resolved::Failed(e) => step(Verdict::Fail, format!("{host}: {e}")).because(
            "the name does not resolve (a typo, or no DNS record)",
            "check the host name, or use the server's IP address",
        ),
        Resolved::TimedOut => step(
            Verdict::Fail,
            format!("no answer from DNS within {} s", wait.as_secs()),
        )
        .because(
            "the DNS server does not answer",
            "check this machine's DNS settings, or use the server's IP address",
        ),
    }
}

/// How one TCP connection to the control port went: `None` when it timed out.
pub(crate) fn connect(
    addr: SocketAddr,
    outcome: Option<Result<(), &io::Error>>,
    wait: Duration,
    elapsed: Duration,
) -> Step {
    let port = addr.port();
    match outcome {
        Some(Ok(())) => Step::new("connect", Verdict::Ok, format!("connected to {addr}"), elapsed),
        Some(Err(e)) => {
            let (cause, advice) = connect_failure(e, addr);
            Step::new("connect", Verdict::Fail, format!("{addr}: {e}"), elapsed)
                .because(cause, advice)
        }
        None => Step::new(
            "connect",
            Verdict::Fail,
            format!(
                "{addr}: no answer within {} s (timed out: filtered)",
                wait.as_secs()
            ),
            elapsed,
        )
        .because(
            format!(
                "packets to port {port} are dropped: a firewall on the way, on the server, or at the ISP (many block port 21)"
            ),
            format!(
                "open TCP port {port} in the server's firewall; if it is open there, try from another network or ask the ISP"
            ),
        ),
    }
}

/// Addresses tried before the one that answered did not: clients that try them first wait or
/// fail, but FTP works. A warning, not a failure.
pub(crate) fn answered_later(earlier: &mut [Step], works: SocketAddr) {
    for step in earlier.iter_mut().filter(|s| s.name == "connect") {
        step.verdict = Verdict::Warn;
        step.advice = Some(format!(
            "make the server listen on every address the name resolves to, or remove that address from DNS ({works} works)"
        ));
    }
}

fn connect_failure(e: &io::Error, addr: SocketAddr) -> (String, String) {
    let port = addr.port();
    match e.kind() {
        io::ErrorKind::ConnectionRefused => (
            format!(
                "refused: nothing listens on port {port} at {}, or a firewall rejects the connection",
                addr.ip()
            ),
            format!(
                "start the FTP server or make it listen on {addr} (`ss -ltn` on the server shows what listens); if it does, allow TCP port {port} in the firewall"
            ),
        ),
        io::ErrorKind::ConnectionReset => (
            "reset: a middlebox or the server cut the connection at once".into(),
            "check firewalls or intrusion prevention between, and the server's access rules (tcp_wrappers, allow lists)".into(),
        ),
        io::ErrorKind::HostUnreachable
        | io::ErrorKind::NetworkUnreachable
        | io::ErrorKind::PermissionDenied => (
            format!(
                "no route to {}: the network is down or has no route there, or a firewall rejects port {port} (firewalld and iptables' default reject answer \"host unreachable\" or \"prohibited\")",
                addr.ip()
            ),
            format!(
                "check the address and this machine's network; if the server is up, allow TCP port {port} in its firewall"
            ),
        ),
        _ => (
            format!("the connection failed: {e}"),
            "check the address, the port and the network".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(7);
    const WAIT: Duration = Duration::from_secs(3);
    #[test]
    fn resolving() {
        let addr: SocketAddr = "192.0.2.1:21".parse().unwrap();
        let table = [
            (
                Resolved::Address(addr.ip()),
                Verdict::Skipped,
                "192.0.2.1 is an address",
                None,
            ),
            (
                Resolved::Names(vec![addr]),
                Verdict::Ok,
                "h → 192.0.2.1",
                None,
            ),
            (
                Resolved::Failed(io::Error::other("no such host")),
                Verdict::Fail,
                "h: no such host",
                Some("the name does not resolve (a typo, or no DNS record)"),
            ),
            (
                Resolved::TimedOut,
                Verdict::Fail,
                "no answer from DNS within 3 s",
                Some("the DNS server does not answer"),
            ),
        ];
        for (facts, verdict, evidence, cause) in table {
            let step = resolve("h", &facts, WAIT, MS);
            assert_eq!((step.verdict, step.evidence.as_str()), (verdict, evidence));
            assert_eq!(step.cause.as_deref(), cause);
        }
    }

    #[test]
    fn connecting() {
        let addr: SocketAddr = "192.0.2.1:21".parse().unwrap();
        let table = [
            (
                Some(io::ErrorKind::ConnectionRefused),
                "refused: nothing listens on port 21",
            ),
            (Some(io::ErrorKind::ConnectionReset), "reset: a middlebox"),
            (
                Some(io::ErrorKind::HostUnreachable),
                "no route to 192.0.2.1",
            ),
            (
                Some(io::ErrorKind::PermissionDenied),
                "no route to 192.0.2.1",
            ),
            (Some(io::ErrorKind::Other), "the connection failed"),
            (None, "packets to port 21 are dropped"),
        ];
        for (kind, cause) in table {
            let e = kind.map(io::Error::from);
            let step = connect(addr, e.as_ref().map(Err), WAIT, MS);
            assert_eq!(step.verdict, Verdict::Fail);
            assert!(step.cause.unwrap().starts_with(cause), "{kind:?}");
        }
        let step = connect(addr, Some(Ok(())), WAIT, MS);
        assert_eq!(
            (step.verdict, step.evidence.as_str()),
            (Verdict::Ok, "connected to 192.0.2.1:21")
        );
        let mut earlier = [connect(addr, None, WAIT, MS)];
        answered_later(&mut earlier, "[2001:db8::1]:21".parse().unwrap());
        assert_eq!(earlier[0].verdict, Verdict::Warn);
        assert!(
            earlier[0]
                .advice
                .as_ref()
                .unwrap()
                .ends_with("([2001:db8::1]:21 works)")
        );
        assert!(earlier[0].cause.is_some());
    }
}
