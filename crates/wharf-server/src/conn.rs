//! Connection identity: who a control connection is from, decided once at accept and read by
//! everything else (limits, logs, the PORT/EPRT and passive peer checks). Nothing else asks the
//! socket for its peer.

use std::net::{IpAddr, SocketAddr};

/// How a connection reached us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Straight from the client.
    Direct,
    /// Through a proxy (a load balancer speaking the PROXY protocol) at this address; `peer` is
    /// the client the proxy announced.
    Proxy { proxy: SocketAddr },
}

/// Who a control connection is from and where it arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    /// The session's number in this server's log (1, 2, …, in order of acceptance).
    pub id: u64,
    /// The client (IPv4-mapped IPv6 addresses as IPv4).
    pub peer: SocketAddr,
    /// Our end: the address passive listeners bind to and active connections leave from.
    pub local: SocketAddr,
    pub via: Via,
}

/// Where a session's passive data connections may come from: the client, and behind a load
/// balancer the balancer too (it relays the passive ports from its own address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataPeers {
    pub client: IpAddr,
    pub proxy: Option<IpAddr>,
}

impl DataPeers {
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip == self.client || Some(ip) == self.proxy
    }
}

impl std::fmt::Display for DataPeers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.proxy {
            Some(p) => write!(f, "{} (via {p})", self.client),
            None => write!(f, "{}", self.client),
        }
    }
}

/// The next session number.
fn next_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

impl ConnInfo {
    /// A connection straight from the client.
    pub fn direct(peer: SocketAddr, local: SocketAddr) -> ConnInfo {
        ConnInfo {
            id: next_id(),
            peer: canonical(peer),
            local: canonical(local),
            via: Via::Direct,
        }
    }

    /// A connection relayed by `proxy`, which says it is from `client` to `server`.
    pub fn proxied(client: SocketAddr, server: SocketAddr, proxy: SocketAddr) -> ConnInfo {
        ConnInfo {
            id: next_id(),
            peer: canonical(client),
            local: canonical(server),
            via: Via::Proxy {
                proxy: canonical(proxy),
            },
        }
    }

    /// Who may make this session's passive data connections.
    pub fn data_peers(&self) -> DataPeers {
        DataPeers {
            client: self.peer.ip(),
            proxy: match self.via {
                Via::Direct => None,
                Via::Proxy { proxy } => Some(proxy.ip()),
            },
        }
    }

    /// Reads both ends of an accepted socket.
    pub fn of(stream: &tokio::net::TcpStream) -> std::io::Result<ConnInfo> {
        Ok(ConnInfo::direct(stream.peer_addr()?, stream.local_addr()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_addresses_are_canonical() {
        let c = ConnInfo::direct(
            "[::ffff:192.0.2.1]:4000".parse().unwrap(),
            "[::ffff:127.0.0.1]:21".parse().unwrap(),
        );
        assert_eq!(c.peer.to_string(), "192.0.2.1:4000");
        assert_eq!(c.local.to_string(), "127.0.0.1:21");
        assert_eq!(c.via, Via::Direct);
    }
}
