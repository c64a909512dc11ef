//! A test directory for benchmarks: `slapd USER:PASSWORD…` starts slapd on loopback with those
//! users (in group `ftp`), prints its `ldap://` URL, and stops it when stdin closes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use wharf_testkit::slapd::{LdapUser, Slapd};

fn main() {
    let specs: Vec<(String, String)> = std::env::args()
        .skip(1)
        .filter_map(|a| {
            a.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        })
        .collect();
    let users: Vec<LdapUser> = specs
        .iter()
        .map(|(uid, password)| LdapUser {
            uid,
            password,
            home: None,
            groups: &["ftp"],
            description: None,
        })
        .collect();
    let slapd = Slapd::start(&users, None);
    println!("{}", slapd.url());
    let mut sink = String::new();
    while std::io::stdin()
        .read_line(&mut sink)
        .map(|n| n > 0)
        .unwrap_or(false)
    {}
    drop(slapd);
}
