//! Diagnosis from the server's end: why a data connection was not made, and SITE DIAG's reply —
//! what the server sees of a session — written by the server and read by `wharf check`, so both
//! ends agree on one format.
//!
//! The reply's facts are `key: value` lines. A data connection that failed is a line
//! `data-failure: KIND k=v … ago=S verb=VERB; TEXT`: the tokens before `;` are for programs,
//! the text after it for people reading a client's log.

use std::net::{IpAddr, SocketAddr};

/// Why a data connection was not made, as the server saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFailure {
    /// Nobody connected to the passive port within the accept timeout.
    PassiveTimeout { port: u16, secs: u64 },
    /// Only connections from another address than the client's came to the passive port
    /// (refused: data connection theft, RFC 2577) until the accept timeout.
    PassiveForeign { port: u16, from: IpAddr, secs: u64 },
    /// The server is still waiting on the passive port; `secs` so far. (A diagnosis line, not
    /// the end of a transfer.)
    PassiveWaiting { port: u16, secs: u64 },
    /// The passive listener closed after `secs` without a connection (a new PASV, the session
    /// ended, it expired): the client never connected. (A diagnosis line.)
    PassiveUnused { port: u16, secs: u64 },
    /// The client's active-mode address refused the connection.
    ActiveRefused { addr: SocketAddr },
    /// The client's active-mode address did not answer in time.
    ActiveTimeout { addr: SocketAddr, secs: u64 },
    /// PORT/EPRT named an address other than the one the control connection comes from
    /// (`seen`): refused, nothing connected. (A diagnosis line, not the end of a transfer.)
    ActiveForeign { addr: SocketAddr, seen: IpAddr },
}

impl DataFailure {
    /// The 425 text: what happened and the likely cause.
    pub fn text(self) -> String {
        match self {
            DataFailure::PassiveTimeout { port, secs } => format!(
                "No data connection: nobody connected to port {port} within {secs} s (a firewall between you and the server may block the passive ports)."
            ),
            DataFailure::PassiveForeign { port, from, secs } => format!(
                "No data connection: within {secs} s only {from} connected to port {port}, not your address (refused: a proxy or a second NAT address on your side; connect from the control connection's address)."
            ),
            DataFailure::PassiveWaiting { port, secs } => {
                format!("Waiting {secs} s so far on port {port}: nobody has connected yet.")
            }
            DataFailure::PassiveUnused { port, secs } => format!(
                "Nobody connected to port {port} in the {secs} s it was open (a firewall between you and the server may block the passive ports)."
            ),
            DataFailure::ActiveRefused { addr } => format!(
                "No data connection: {addr} refused it (a firewall on your side, or NAT: use passive mode)."
            ),
            DataFailure::ActiveTimeout { addr, secs } => format!(
                "No data connection: no answer from {addr} within {secs} s (a firewall or NAT on your side: use passive mode)."
            ),
            DataFailure::ActiveForeign { addr, seen } => format!(
                "Active mode to {addr} refused: {} is not your address as this server sees it ({seen}), so a NAT between you rewrites it: use passive mode.",
                addr.ip()
            ),
        }
    }

    /// The tokens of a diagnosis line: the kind, then its values.
    fn tokens(self) -> String {
        match self {
            DataFailure::PassiveTimeout { port, secs } => {
                format!("passive-timeout port={port} secs={secs}")
            }
            DataFailure::PassiveForeign { port, from, secs } => {
                format!("passive-foreign port={port} from={from} secs={secs}")
            }
            DataFailure::PassiveWaiting { port, secs } => {
                format!("passive-waiting port={port} secs={secs}")
            }
            DataFailure::PassiveUnused { port, secs } => {
                format!("passive-unused port={port} secs={secs}")
            }
            DataFailure::ActiveRefused { addr } => format!("active-refused addr={addr}"),
            DataFailure::ActiveTimeout { addr, secs } => {
                format!("active-timeout addr={addr} secs={secs}")
            }
            DataFailure::ActiveForeign { addr, seen } => {
                format!("active-foreign addr={addr} seen={seen}")
            }
        }
    }

    fn from_tokens(kind: &str, get: impl Fn(&str) -> Option<String>) -> Option<DataFailure> {
        let num = |k: &str| get(k)?.parse::<u64>().ok();
        let port = || get("port")?.parse::<u16>().ok();
        let addr = || get("addr")?.parse::<SocketAddr>().ok();
        let ip = |k: &str| get(k)?.parse::<IpAddr>().ok();
        Some(match kind {
            "passive-timeout" => DataFailure::PassiveTimeout {
                port: port()?,
                secs: num("secs")?,
            },
            "passive-foreign" => DataFailure::PassiveForeign {
                port: port()?,
                from: ip("from")?,
                secs: num("secs")?,
            },
            "passive-waiting" => DataFailure::PassiveWaiting {
                port: port()?,
                secs: num("secs")?,
            },
            "passive-unused" => DataFailure::PassiveUnused {
                port: port()?,
                secs: num("secs")?,
            },
            "active-refused" => DataFailure::ActiveRefused { addr: addr()? },
            "active-timeout" => DataFailure::ActiveTimeout {
                addr: addr()?,
                secs: num("secs")?,
            },
            "active-foreign" => DataFailure::ActiveForeign {
                addr: addr()?,
                seen: ip("seen")?,
            },
            _ => return None,
        })
    }
}

/// One data connection that failed (or is still awaited), as SITE DIAG lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRecord {
    pub failure: DataFailure,
    /// How long ago, in seconds.
    pub ago: u64,
    /// The command it was for (RETR, LIST, PORT…).
    pub verb: String,
}

/// What the server sees of a session: SITE DIAG's facts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnosis {
    /// The client's address as the server sees it (after any NAT).
    pub client_address: Option<IpAddr>,
    /// The server's address of this control connection.
    pub server_address: Option<IpAddr>,
    /// The address a PASV reply announces, and whether it is configured (`true`) or this
    /// connection's own.
    pub passive_address: Option<(IpAddr, bool)>,
    /// The passive port range; `None`: any port the system gives.
    pub passive_ports: Option<(u16, u16)>,
    /// How long the server waits for a data connection, in seconds.
    pub accept_timeout: Option<u64>,
    /// `off`, `optional` or `required`.
    pub tls: Option<String>,
    /// Newest first.
    pub data: Vec<DataRecord>,
}

impl Diagnosis {
    /// The reply's lines (without indentation; the session adds it).
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(ip) = self.client_address {
            out.push(format!("client-address: {ip}"));
        }
        if let Some(ip) = self.server_address {
            out.push(format!("server-address: {ip}"));
        }
        if let Some((ip, configured)) = self.passive_address {
            let how = if configured {
                "configured"
            } else {
                "this connection's address"
            };
            out.push(format!("passive-address: {ip} ({how})"));
        }
        match self.passive_ports {
            Some((a, b)) => out.push(format!("passive-ports: {a}-{b}")),
            None => out.push("passive-ports: any (the system's ephemeral ports)".into()),
        }
        if let Some(secs) = self.accept_timeout {
            out.push(format!("accept-timeout: {secs} s"));
        }
        if let Some(tls) = &self.tls {
            out.push(format!("tls: {tls}"));
        }
        if self.data.is_empty() {
            out.push("data-failure: none in the last 10 minutes".into());
        }
        for r in &self.data {
            out.push(format!(
                "data-failure: {} ago={} verb={}; {}",
                r.failure.tokens(),
                r.ago,
                r.verb,
                r.failure.text()
            ));
        }
        out
    }

    /// Reads the lines of a SITE DIAG reply (any order, unknown keys ignored).
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Diagnosis {
        let mut d = Diagnosis::default();
        for line in lines {
            let Some((key, value)) = line.trim().split_once(": ") else {
                continue;
            };
            let first = value.split_whitespace().next().unwrap_or_default();
            match key {
                "client-address" => d.client_address = first.parse().ok(),
                "server-address" => d.server_address = first.parse().ok(),
                "passive-address" => {
                    d.passive_address = first
                        .parse()
                        .ok()
                        .map(|ip| (ip, value.contains("(configured)")))
                }
                "passive-ports" => {
                    d.passive_ports = first
                        .split_once('-')
                        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
                }
                "accept-timeout" => d.accept_timeout = first.parse().ok(),
                "tls" => d.tls = Some(first.to_string()),
                "data-failure" => {
                    if let Some(r) = parse_record(value) {
                        d.data.push(r);
                    }
                }
                _ => {}
            }
        }
        d
    }
}

fn parse_record(value: &str) -> Option<DataRecord> {
    let tokens = value.split(';').next()?;
    let mut words = tokens.split_whitespace();
    let kind = words.next()?;
    let pairs: Vec<(&str, &str)> = words.filter_map(|w| w.split_once('=')).collect();
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| (*v).to_string())
    };
    Some(DataRecord {
        failure: DataFailure::from_tokens(kind, get)?,
        ago: get("ago")?.parse().ok()?,
        verb: get("verb")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diagnosis_reads_back_what_was_written() {
        let d = Diagnosis {
            client_address: Some("192.0.2.2".parse().unwrap()),
            server_address: Some("192.0.2.1".parse().unwrap()),
            passive_address: Some(("198.51.100.7".parse().unwrap(), true)),
            passive_ports: Some((50000, 50009)),
            accept_timeout: Some(60),
            tls: Some("required".into()),
            data: vec![
                DataRecord {
                    failure: DataFailure::PassiveWaiting {
                        port: 50003,
                        secs: 4,
                    },
                    ago: 4,
                    verb: "LIST".into(),
                },
                DataRecord {
                    failure: DataFailure::ActiveForeign {
                        addr: "10.0.0.2:40000".parse().unwrap(),
                        seen: "192.0.2.2".parse().unwrap(),
                    },
                    ago: 9,
                    verb: "EPRT".into(),
                },
                DataRecord {
                    failure: DataFailure::PassiveForeign {
                        port: 50001,
                        from: "::1".parse().unwrap(),
                        secs: 60,
                    },
                    ago: 70,
                    verb: "RETR".into(),
                },
                DataRecord {
                    failure: DataFailure::PassiveUnused {
                        port: 50002,
                        secs: 3,
                    },
                    ago: 50,
                    verb: "EPSV".into(),
                },
                DataRecord {
                    failure: DataFailure::ActiveTimeout {
                        addr: "[2001:db8::2]:40000".parse().unwrap(),
                        secs: 10,
                    },
                    ago: 100,
                    verb: "STOR".into(),
                },
            ],
        };
        let lines = d.lines();
        assert!(
            lines.contains(&"passive-ports: 50000-50009".to_string()),
            "{lines:?}"
        );
        assert_eq!(Diagnosis::parse(lines.iter().map(String::as_str)), d);
        let none = Diagnosis {
            passive_address: Some(("192.0.2.1".parse().unwrap(), false)),
            ..Diagnosis::default()
        };
        assert_eq!(
            Diagnosis::parse(none.lines().iter().map(String::as_str)),
            none
        );
    }

    #[test]
    fn garbage_lines_are_ignored() {
        let d = Diagnosis::parse([
            "data-failure: passive-timeout port=x secs=1 ago=1 verb=LIST; text",
            "data-failure: martian port=1",
            "client-address: not-an-address",
            "no colon here",
            "",
        ]);
        assert_eq!(d, Diagnosis::default());
    }
}
