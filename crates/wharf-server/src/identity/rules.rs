//! Address rules: which client addresses may log in, server-wide (`[access]`) and per user
//! (`allowed_addresses` / `denied_addresses` from every source).

use std::net::IpAddr;

use crate::config::Cidr;

/// Networks allowed and denied. A denied network wins over an allowed one; with any allowed
/// network, an address in none of them is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressRules {
    pub allowed: Vec<Cidr>,
    pub denied: Vec<Cidr>,
}

impl AddressRules {
    /// Rules from lists of networks as written (`10.0.0.0/8`, `2001:db8::/32`, an address);
    /// the error names the first that is not one.
    pub fn parse<S: AsRef<str>>(allowed: &[S], denied: &[S]) -> Result<AddressRules, String> {
        let list = |v: &[S]| -> Result<Vec<Cidr>, String> {
            v.iter().map(|s| Cidr::parse(s.as_ref())).collect()
        };
        Ok(AddressRules {
            allowed: list(allowed)?,
            denied: list(denied)?,
        })
    }

    /// Rules from the text a database column or an LDAP attribute keeps: networks separated
    /// by commas or white space (empty: none).
    pub fn parse_text(allowed: Option<&str>, denied: Option<&str>) -> Result<AddressRules, String> {
        let split = |t: Option<&str>| -> Vec<String> {
            t.unwrap_or("")
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        };
        AddressRules::parse(&split(allowed), &split(denied))
    }

    pub fn is_empty(&self) -> bool {
        self.allowed.is_empty() && self.denied.is_empty()
    }

    /// `Ok` when `ip` may log in; else the rule that refuses it, for the audit line
    /// (`denied_addresses 10.9.0.0/16`, `allowed_addresses (not in 10.0.0.0/8)`).
    pub fn check(&self, ip: IpAddr) -> Result<(), String> {
        if let Some(net) = self.denied.iter().find(|c| c.contains(ip)) {
            return Err(format!("denied_addresses {}", show(net)));
        }
        if !self.allowed.is_empty() && !self.allowed.iter().any(|c| c.contains(ip)) {
            let nets: Vec<String> = self.allowed.iter().map(show).collect();
            return Err(format!("allowed_addresses (not in {})", nets.join(", ")));
        }
        Ok(())
    }

    /// The lists as the database keeps them (comma separated), `None` when empty.
    pub fn allowed_text(&self) -> Option<String> {
        text(&self.allowed)
    }

    pub fn denied_text(&self) -> Option<String> {
        text(&self.denied)
    }
}

fn text(list: &[Cidr]) -> Option<String> {
    (!list.is_empty()).then(|| list.iter().map(show).collect::<Vec<_>>().join(","))
}

/// A network as written in a rule: `10.0.0.0/8`, `2001:db8::/32`.
pub fn show(c: &Cidr) -> String {
    format!("{}/{}", c.addr, c.bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn denied_wins_and_allowed_closes() {
        let r = AddressRules::parse(&["10.0.0.0/8", "::1"], &["10.9.0.0/16"]).unwrap();
        assert_eq!(r.check(ip("10.1.2.3")), Ok(()));
        assert_eq!(
            r.check(ip("::ffff:10.1.2.3")),
            Ok(()),
            "IPv4-mapped is IPv4"
        );
        assert_eq!(r.check(ip("::1")), Ok(()));
        assert_eq!(
            r.check(ip("10.9.1.1")),
            Err("denied_addresses 10.9.0.0/16".into())
        );
        assert_eq!(
            r.check(ip("192.168.1.1")),
            Err("allowed_addresses (not in 10.0.0.0/8, ::1/128)".into())
        );
        let open = AddressRules::default();
        assert!(open.is_empty());
        assert_eq!(open.check(ip("203.0.113.9")), Ok(()));
        let deny_only = AddressRules::parse::<&str>(&[], &["127.0.0.2"]).unwrap();
        assert_eq!(deny_only.check(ip("127.0.0.1")), Ok(()));
        assert!(deny_only.check(ip("127.0.0.2")).is_err());
    }

    #[test]
    fn text_round_trip_and_errors() {
        let r = AddressRules::parse_text(Some("10.0.0.0/8, 127.0.0.1\n::1/128"), None).unwrap();
        assert_eq!(r.allowed.len(), 3);
        assert_eq!(
            r.allowed_text().as_deref(),
            Some("10.0.0.0/8,127.0.0.1/32,::1/128")
        );
        assert_eq!(r.denied_text(), None);
        assert_eq!(
            AddressRules::parse_text(r.allowed_text().as_deref(), None).unwrap(),
            r
        );
        assert!(AddressRules::parse_text(Some("10.0.0.0/33"), None).is_err());
        assert!(AddressRules::parse_text(None, Some("example.com")).is_err());
        assert_eq!(
            AddressRules::parse_text(Some(" "), Some("")).unwrap(),
            AddressRules::default()
        );
    }
}
