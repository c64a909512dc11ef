//! `wharf check` on loopback: healthy servers of each make (all modes work, the server named),
//! a refused and a filtered control port, a PASV address that cannot be reached, passive ports
//! that cannot be reached, a refused login. The JSON is checked field by field.
//! (Scenarios that need two hosts and firewalls run in network namespaces: see issue 4.)

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use wharf_testkit::output_with_input;
use wharf_testkit::peers::{self, Peer, PyOptions};

use crate::BIN;

struct Checked {
    code: i32,
    json: Value,
}

fn check_json(target: &str, extra: &[&str]) -> Checked {
    let mut cmd = Command::new(BIN);
    cmd.args(["check", "--json"])
        .args(if extra.contains(&"--timeout") {
            &[][..]
        } else {
            &["--timeout", "3"][..]
        })
        .args(extra)
        .arg(target)
        .env("WHARF_PASSWORD", peers::PASSWORD);
    let out = output_with_input(&mut cmd, None, Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    Checked {
        code: out.status.code().unwrap_or(-1),
        json,
    }
}

fn step<'a>(json: &'a Value, name: &str) -> &'a Value {
    json["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name}: {json}"))
}

fn target(peer: &Peer) -> String {
    peer.addr.to_string()
}

fn user_args(peer: &Peer) -> Vec<&'static str> {
    if peer.name == "vsftpd" {
        vec![]
    } else {
        vec!["--user", peers::USER]
    }
}

#[test]
fn healthy_servers_all_modes_work_and_are_named() {
    for (peer, name) in [
        (peers::wharf(BIN, "127.0.0.1:0", None), "Wharf"),
        (peers::vsftpd(&[]), "vsftpd"),
        (peers::proftpd(), "ProFTPD"),
        (peers::pyftpdlib(&PyOptions::default()), "pyftpdlib"),
    ] {
        let c = check_json(&target(&peer), &user_args(&peer));
        let j = &c.json;
        assert_eq!(c.code, 0, "{name}: {j}");
        assert_eq!(j["exit_code"], 0);
        assert_eq!(j["server"], name, "{j}");
        assert_eq!(j["target"], target(&peer));
        assert_eq!(
            j["working_modes"],
            serde_json::json!(["EPSV", "PASV", "EPRT", "PORT"]),
            "{name}: {j}"
        );
        for s in [
            "connect", "banner", "login", "syst", "feat", "EPSV", "PASV", "EPRT", "PORT",
        ] {
            let st = step(j, s);
            assert_eq!(st["verdict"], "ok", "{name} {s}: {st}");
            assert!(st["cause"].is_null() && st["advice"].is_null(), "{st}");
            assert!(st["ms"].is_u64());
        }
        assert_eq!(step(j, "resolve")["verdict"], "skipped");
        assert!(
            step(j, "banner")["evidence"]
                .as_str()
                .unwrap()
                .starts_with("220 ")
        );
        assert!(
            step(j, "EPSV")["evidence"]
                .as_str()
                .unwrap()
                .starts_with("229 ")
        );
        assert!(
            step(j, "PASV")["evidence"]
                .as_str()
                .unwrap()
                .starts_with("227 ")
        );
        assert_eq!(j["advice"], serde_json::json!([]));
        assert_eq!(
            j["summary"],
            "working: EPSV, PASV, EPRT, PORT; use passive mode (the default)"
        );
    }
}

#[test]
fn refused_control_port_exits_3() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = check_json(&format!("127.0.0.1:{port}"), &[]);
    assert_eq!(c.code, 3, "{}", c.json);
    let st = step(&c.json, "connect");
    assert_eq!(st["verdict"], "fail");
    assert!(
        st["evidence"]
            .as_str()
            .unwrap()
            .contains("Connection refused"),
        "{st}"
    );
    assert!(
        st["cause"]
            .as_str()
            .unwrap()
            .starts_with("refused: nothing listens on port"),
        "{st}"
    );
    assert!(st["advice"].as_str().unwrap().contains("firewall"), "{st}");
    assert_eq!(c.json["working_modes"], serde_json::json!([]));
    assert!(c.json["server"].is_null());
}

#[test]
fn filtered_control_port_times_out_and_exits_3() {
    // A full accept queue: the kernel drops the SYN, as a firewall that drops port 21 does.
    let full = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    full.bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    full.listen(0).unwrap();
    let addr = full.local_addr().unwrap().as_socket().unwrap();
    let _fillers: Vec<_> = (0..4)
        .filter_map(|_| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()
        })
        .collect();
    let c = check_json(&addr.to_string(), &["--timeout", "1"]);
    assert_eq!(c.code, 3, "{}", c.json);
    let st = step(&c.json, "connect");
    assert_eq!(st["verdict"], "fail");
    assert!(
        st["evidence"].as_str().unwrap().contains("timed out"),
        "{st}"
    );
    assert!(st["cause"].as_str().unwrap().contains("dropped"), "{st}");
    assert!(
        st["advice"].as_str().unwrap().contains("another network"),
        "{st}"
    );
}

#[test]
fn wrong_pasv_address_is_flagged_in_the_servers_terms() {
    let peer = peers::pyftpdlib(&PyOptions {
        masquerade: Some("127.0.0.2"),
        ..PyOptions::default()
    });
    let c = check_json(&target(&peer), &["--user", peers::USER]);
    let j = &c.json;
    assert_eq!(c.code, 0, "{j}");
    let pasv = step(j, "PASV");
    assert_eq!(pasv["verdict"], "warn", "{pasv}");
    let evidence = pasv["evidence"].as_str().unwrap();
    assert!(
        evidence.contains("announced 127.0.0.2, not 127.0.0.1"),
        "{evidence}"
    );
    assert!(
        evidence.contains("the server's own address 127.0.0.1 worked"),
        "{evidence}"
    );
    assert!(
        pasv["cause"].as_str().unwrap().contains("NAT/masquerade"),
        "{pasv}"
    );
    assert_eq!(
        pasv["advice"],
        "set the server's public address with `handler.masquerade_address = ADDR`"
    );
    assert_eq!(step(j, "EPSV")["verdict"], "ok");
    assert_eq!(j["advice"].as_array().unwrap().len(), 1);
}

#[test]
fn unreachable_passive_ports_leave_active_mode() {
    let peer = peers::pyftpdlib(&PyOptions {
        broken_passive: true,
        ..PyOptions::default()
    });
    let c = check_json(&target(&peer), &["--user", peers::USER]);
    let j = &c.json;
    assert_eq!(c.code, 0, "{j}");
    assert_eq!(j["working_modes"], serde_json::json!(["EPRT", "PORT"]));
    for s in ["EPSV", "PASV"] {
        let st = step(j, s);
        assert_eq!(st["verdict"], "fail", "{st}");
        assert!(
            st["evidence"].as_str().unwrap().contains("127.0.0.1:1"),
            "{st}"
        );
        assert!(
            st["cause"]
                .as_str()
                .unwrap()
                .contains("passive data connection to 127.0.0.1:1"),
            "{st}"
        );
        assert!(
            st["advice"]
                .as_str()
                .unwrap()
                .contains("`handler.passive_ports = range(A, B)`"),
            "{st}"
        );
    }
    assert_eq!(
        j["summary"],
        "working: EPRT, PORT; only active mode works: use active mode (`--active`)"
    );
}

#[test]
fn refused_login_exits_1_with_text_output() {
    let peer = peers::proftpd();
    let mut cmd = Command::new(BIN);
    cmd.args(["check", "--user", peers::USER, &target(&peer)])
        .env("WHARF_PASSWORD", "not-the-password");
    let out = output_with_input(&mut cmd, None, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("[FAIL] login"), "{text}");
    assert!(text.contains("530"), "{text}");
    assert!(text.contains("Server: ProFTPD"), "{text}");
    assert!(
        text.contains("Summary: the server answers, but the login fails"),
        "{text}"
    );
    assert!(!text.contains("not-the-password"), "{text}");
}
