//! How a client makes data connections: which of EPSV, PASV, EPRT and PORT to send, what a
//! reply or a failed connection teaches it, and where to connect for a PASV reply.

use std::net::{IpAddr, SocketAddr};

use crate::reply::ReplyCode;

/// How data connections are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataMode {
    /// Passive first (EPSV, then PASV); active when the passive connection cannot be made.
    #[default]
    Auto,
    /// Passive only: EPSV, then PASV when the server refuses EPSV.
    Passive,
    /// Active only: EPRT, then PORT when the server refuses EPRT.
    Active,
}

/// One way of making a data connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataMethod {
    Epsv,
    Pasv,
    Eprt,
    Port,
}

impl DataMethod {
    pub const ALL: [DataMethod; 4] = [
        DataMethod::Epsv,
        DataMethod::Pasv,
        DataMethod::Eprt,
        DataMethod::Port,
    ];

    /// The command's name.
    pub fn name(self) -> &'static str {
        match self {
            DataMethod::Epsv => "EPSV",
            DataMethod::Pasv => "PASV",
            DataMethod::Eprt => "EPRT",
            DataMethod::Port => "PORT",
        }
    }

    pub fn is_passive(self) -> bool {
        matches!(self, DataMethod::Epsv | DataMethod::Pasv)
    }

    /// Whether the method works over IPv6: PASV's reply and PORT's argument hold IPv4 only
    /// (RFC 959), which is why RFC 2428 added EPSV and EPRT.
    pub fn carries_ipv6(self) -> bool {
        matches!(self, DataMethod::Epsv | DataMethod::Eprt)
    }
}

/// The address family of the control connection, which data connections share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        match ip {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }
}

/// What the driver does after a reply to a data-connection command or a failed connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The reply accepts the method: go on with it (read the passive address, start the
    /// transfer).
    Use,
    /// Send this method's command instead, for the same transfer.
    Fallback(DataMethod),
    /// Nothing is left to try: report the refusal or the failure as it is.
    GiveUp,
}

/// Where PASV data connections go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PasvAddress {
    /// Where the 227 reply says.
    Announced,
    /// The server's own address with the announced port: the announced one failed or was not
    /// the server's, and the server's worked.
    Peer,
}

/// The side of an automatic-mode session tried first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Passive,
    /// Passive failed once and active then worked: a session behind a firewall that blocks
    /// passive connections would otherwise pay a failed connection for every transfer.
    Active,
}

/// What a session knows about making data connections: the mode asked for, the control
/// connection's family, and what the server taught it so far, so that each refusal costs one
/// try only. The driver asks [`DataStrategy::next`] which command to send first and tells it
/// every reply ([`DataStrategy::on_reply`]), every failed connection
/// ([`DataStrategy::on_connect_failed`]) and every method that carried a transfer
/// ([`DataStrategy::on_worked`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataStrategy {
    mode: DataMode,
    family: Family,
    /// EPSV, or PASV once the server refused EPSV.
    passive: DataMethod,
    /// EPRT, or PORT once the server did not know EPRT.
    active: DataMethod,
    pasv_address: PasvAddress,
    /// Only read in [`DataMode::Auto`].
    first: Side,
}

impl DataStrategy {
    pub fn new(mode: DataMode, family: Family) -> DataStrategy {
        DataStrategy {
            mode,
            family,
            passive: DataMethod::Epsv,
            active: DataMethod::Eprt,
            pasv_address: PasvAddress::Announced,
            first: Side::Passive,
        }
    }

    pub fn mode(&self) -> DataMode {
        self.mode
    }

    /// The command to send first for the next data connection.
    pub fn next(&self) -> DataMethod {
        match (self.mode, self.first) {
            (DataMode::Passive, _) | (DataMode::Auto, Side::Passive) => self.passive,
            (DataMode::Active, _) | (DataMode::Auto, Side::Active) => self.active,
        }
    }

    /// The server answered `method`'s command with `code`.
    pub fn on_reply(&mut self, method: DataMethod, code: ReplyCode) -> Next {
        let v4 = self.family == Family::V4;
        match method {
            DataMethod::Epsv if code == ReplyCode::EXTENDED_PASSIVE => Next::Use,
            DataMethod::Pasv if code == ReplyCode::PASSIVE => Next::Use,
            DataMethod::Eprt | DataMethod::Port if code.is_completion() => Next::Use,
            // Servers refuse EPSV with all sorts of codes (500, 502, 522, 425...); any refusal
            // but a closing session is worth one PASV, where PASV can say the address.
            DataMethod::Epsv if code.is_negative() && !code.closes_session() && v4 => {
                self.passive = DataMethod::Pasv;
                Next::Fallback(DataMethod::Pasv)
            }
            // Other refusals of EPRT (an address or port it will not connect to) PORT would
            // share.
            DataMethod::Eprt if code.is_unknown_command() && v4 => {
                self.active = DataMethod::Port;
                Next::Fallback(DataMethod::Port)
            }
            _ if code.is_data_connection_failure() => self.on_connect_failed(method),
            _ => Next::GiveUp,
        }
    }

    /// The data connection over `method` could not be made: our connection to a passive
    /// address failed, the server did not connect back, or it answered 425. Only an automatic
    /// session has another side to try; it settles on it once it works ([`Self::on_worked`]),
    /// since one failure may be passing.
    pub fn on_connect_failed(&self, method: DataMethod) -> Next {
        if self.mode == DataMode::Auto && method.is_passive() {
            Next::Fallback(self.active)
        } else {
            Next::GiveUp
        }
    }

    /// `method` carried a transfer command: the data connection was made, or the server
    /// completed the command without one.
    pub fn on_worked(&mut self, method: DataMethod) {
        // An automatic session reaches active mode only after passive failed.
        if self.mode == DataMode::Auto && !method.is_passive() {
            self.first = Side::Active;
        }
    }

    /// A PASV data connection to the server's own address worked where the announced one
    /// failed or was not used: later PASV replies go there too, without a failed try each.
    pub fn passive_worked_with_peer_address(&mut self) {
        self.pasv_address = PasvAddress::Peer;
    }

    /// Whether later PASV connections go to the server's own address.
    pub fn uses_peer_for_pasv(&self) -> bool {
        self.pasv_address == PasvAddress::Peer
    }

    /// Where to connect for a PASV reply that announced `announced`, the server being `peer`.
    pub fn pasv_destination(&self, announced: SocketAddr, peer: IpAddr) -> SocketAddr {
        match self.pasv_address {
            PasvAddress::Announced => announced,
            PasvAddress::Peer => SocketAddr::new(peer, announced.port()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DataMethod::{Eprt, Epsv, Pasv, Port};
    use super::Next::{Fallback, GiveUp, Use};
    use super::*;

    /// What happens to one data-connection command in a row of the table.
    #[derive(Debug, Clone, Copy)]
    enum Event {
        Reply(u16),
        ConnectFailed,
        Worked,
    }
    use Event::{ConnectFailed, Reply, Worked};

    /// Each row: the mode, the family, the events in order with the answer expected to each
    /// (`None` for `Worked`, which answers nothing), and what `next` says afterwards.
    type Row = (
        DataMode,
        Family,
        &'static [(DataMethod, Event, Option<Next>)],
        DataMethod,
    );

    const TABLE: &[Row] = &[
        // Automatic, IPv4.
        (DataMode::Auto, Family::V4, &[], Epsv),
        (
            DataMode::Auto,
            Family::V4,
            &[(Epsv, Reply(229), Some(Use)), (Epsv, Worked, None)],
            Epsv,
        ),
        (
            DataMode::Auto,
            Family::V4,
            &[
                (Epsv, Reply(500), Some(Fallback(Pasv))),
                (Pasv, Reply(227), Some(Use)),
            ],
            Pasv,
        ),
        (
            DataMode::Auto,
            Family::V4,
            &[
                (Epsv, Reply(522), Some(Fallback(Pasv))),
                (Pasv, Reply(500), Some(GiveUp)),
            ],
            Pasv,
        ),
        (
            DataMode::Auto,
            Family::V4,
            &[(Epsv, Reply(421), Some(GiveUp))],
            Epsv,
        ),
        (
            DataMode::Auto,
            Family::V4,
            &[(Epsv, Reply(200), Some(GiveUp))],
            Epsv,
        ),
        (
            DataMode::Auto,
            Family::V4,
            &[
                (Epsv, Reply(229), Some(Use)),
                (Epsv, ConnectFailed, Some(Fallback(Eprt))),
                (Eprt, Reply(200), Some(Use)),
                (Eprt, Worked, None),
            ],
            Eprt,
        ),
        (
            DataMode::Auto,
            Family::V4,
            &[
                (Epsv, ConnectFailed, Some(Fallback(Eprt))),
                (Eprt, Reply(502), Some(Fallback(Port))),
                (Port, Reply(200), Some(Use)),
                (Port, Worked, None),
            ],
            Port,
        ),
        // Passive failed but active did not work either: passive stays first.
        (
            DataMode::Auto,
            Family::V4,
            &[
                (Epsv, ConnectFailed, Some(Fallback(Eprt))),
                (Eprt, Reply(501), Some(GiveUp)),
            ],
            Epsv,
        ),
        (
            DataMode::Auto,
            Family::V4,
            &[
                (Epsv, ConnectFailed, Some(Fallback(Eprt))),
                (Eprt, Reply(200), Some(Use)),
                (Eprt, ConnectFailed, Some(GiveUp)),
            ],
            Epsv,
        ),
        // A 425 to PASV is the data connection failing, not PASV being refused.
        (
            DataMode::Auto,
            Family::V4,
            &[
                (Epsv, Reply(502), Some(Fallback(Pasv))),
                (Pasv, Reply(425), Some(Fallback(Eprt))),
                (Eprt, Reply(425), Some(GiveUp)),
            ],
            Pasv,
        ),
        // Passive working keeps passive first.
        (
            DataMode::Auto,
            Family::V4,
            &[(Pasv, Worked, None), (Epsv, Worked, None)],
            Epsv,
        ),
        // Automatic, IPv6: PASV and PORT cannot carry the address.
        (
            DataMode::Auto,
            Family::V6,
            &[(Epsv, Reply(500), Some(GiveUp))],
            Epsv,
        ),
        (
            DataMode::Auto,
            Family::V6,
            &[
                (Epsv, Reply(425), Some(Fallback(Eprt))),
                (Eprt, Reply(500), Some(GiveUp)),
            ],
            Epsv,
        ),
        (
            DataMode::Auto,
            Family::V6,
            &[
                (Epsv, ConnectFailed, Some(Fallback(Eprt))),
                (Eprt, Reply(200), Some(Use)),
                (Eprt, Worked, None),
            ],
            Eprt,
        ),
        // Passive only.
        (
            DataMode::Passive,
            Family::V4,
            &[
                (Epsv, Reply(229), Some(Use)),
                (Epsv, ConnectFailed, Some(GiveUp)),
            ],
            Epsv,
        ),
        (
            DataMode::Passive,
            Family::V4,
            &[
                (Epsv, Reply(502), Some(Fallback(Pasv))),
                (Pasv, Reply(425), Some(GiveUp)),
            ],
            Pasv,
        ),
        (
            DataMode::Passive,
            Family::V6,
            &[(Epsv, Reply(502), Some(GiveUp))],
            Epsv,
        ),
        // Active only.
        (DataMode::Active, Family::V4, &[], Eprt),
        (
            DataMode::Active,
            Family::V4,
            &[
                (Eprt, Reply(500), Some(Fallback(Port))),
                (Port, Reply(200), Some(Use)),
                (Port, Worked, None),
            ],
            Port,
        ),
        (
            DataMode::Active,
            Family::V4,
            &[(Eprt, Reply(501), Some(GiveUp))],
            Eprt,
        ),
        (
            DataMode::Active,
            Family::V4,
            &[
                (Eprt, Reply(200), Some(Use)),
                (Eprt, ConnectFailed, Some(GiveUp)),
            ],
            Eprt,
        ),
        (
            DataMode::Active,
            Family::V6,
            &[(Eprt, Reply(502), Some(GiveUp))],
            Eprt,
        ),
    ];

    #[test]
    fn sequences_lead_to_the_next_method() {
        for (row, &(mode, family, events, after)) in TABLE.iter().enumerate() {
            let mut s = DataStrategy::new(mode, family);
            for &(method, event, expected) in events {
                let got = match event {
                    Reply(code) => Some(s.on_reply(method, ReplyCode(code))),
                    ConnectFailed => Some(s.on_connect_failed(method)),
                    Worked => {
                        s.on_worked(method);
                        None
                    }
                };
                assert_eq!(got, expected, "row {row}: {method:?} {event:?}");
            }
            assert_eq!(s.next(), after, "row {row}: next");
        }
    }

    #[test]
    fn no_method_that_cannot_carry_ipv6_comes_out_on_ipv6() {
        for mode in [DataMode::Auto, DataMode::Passive, DataMode::Active] {
            let mut s = DataStrategy::new(mode, Family::V6);
            for code in [421, 425, 500, 501, 502, 504, 522, 530, 550] {
                for method in [Epsv, Eprt] {
                    if let Fallback(m) = s.on_reply(method, ReplyCode(code)) {
                        assert!(m.carries_ipv6(), "{mode:?} {method:?} {code} -> {m:?}");
                    }
                }
                assert!(s.next().carries_ipv6());
            }
        }
    }

    #[test]
    fn fallbacks_only_go_forward() {
        let rank = |m: DataMethod| DataMethod::ALL.iter().position(|&x| x == m).unwrap();
        for mode in [DataMode::Auto, DataMode::Passive, DataMode::Active] {
            for family in [Family::V4, Family::V6] {
                for method in DataMethod::ALL {
                    for code in 100..600 {
                        let mut s = DataStrategy::new(mode, family);
                        if let Fallback(m) = s.on_reply(method, ReplyCode(code)) {
                            assert!(rank(m) > rank(method), "{mode:?} {method:?} {code}");
                        }
                    }
                    if let Fallback(m) = DataStrategy::new(mode, family).on_connect_failed(method) {
                        assert!(rank(m) > rank(method), "{mode:?} {method:?} failed");
                    }
                }
            }
        }
    }

    #[test]
    fn pasv_goes_to_the_peer_once_that_worked() {
        let peer: IpAddr = "203.0.113.5".parse().unwrap();
        let announced: SocketAddr = "10.0.0.5:40000".parse().unwrap();
        let mut s = DataStrategy::new(DataMode::Auto, Family::V4);
        assert_eq!(s.pasv_destination(announced, peer), announced);
        assert!(!s.uses_peer_for_pasv());
        s.passive_worked_with_peer_address();
        assert!(s.uses_peer_for_pasv());
        assert_eq!(
            s.pasv_destination(announced, peer),
            "203.0.113.5:40000".parse().unwrap()
        );
    }
}
