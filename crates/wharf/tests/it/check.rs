//! `wharf check` on loopback: healthy servers of each make (Wharf, vsftpd, ProFTPD, pyftpdlib,
//! `rclone serve ftp`: all modes work, the server named),
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

/// Asserts that `field` of a step (or of the report) contains `part`.
fn has(step: &Value, field: &str, part: &str) {
    let text = step[field].as_str().unwrap_or_default();
    assert!(text.contains(part), "{field} lacks {part:?}: {step}");
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
        (peers::rclone_serve(), "rclone serve ftp"),
    ] {
        peer.seed("sample.bin", &wharf_testkit::pattern(1000, 3));
        let c = check_json(&target(&peer), &user_args(&peer));
        // The deeper steps: where the session is, binary mode, the listing parsed, and a
        // download resumed at byte 1 (vsftpd's anonymous login directory holds pub/ only).
        for s in ["pwd", "type", "list", "utf8"] {
            assert_eq!(step(&c.json, s)["verdict"], "ok", "{name} {s}: {}", c.json);
        }
        let resume = step(&c.json, "resume");
        if name == "vsftpd" {
            assert_eq!(resume["verdict"], "skipped", "{resume}");
        } else {
            assert_eq!(resume["verdict"], "ok", "{name}: {resume}");
            has(resume, "evidence", "RETR sample.bin: 999 of 1000 bytes");
            assert!(
                step(&c.json, "list")["evidence"]
                    .as_str()
                    .unwrap()
                    .contains("sample.bin (1000 bytes)"),
                "{name}: {}",
                c.json
            );
        }
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

/// `--write` against real servers: an upload whose size is checked, a rename, a delete, and a
/// non-ASCII name listed back byte for byte; nothing is left behind. vsftpd's anonymous root
/// is not writable: the upload fails and the fix is in vsftpd's terms.
#[test]
fn write_round_trip_on_real_servers() {
    for (peer, name) in [
        (peers::wharf(BIN, "127.0.0.1:0", None), "Wharf"),
        (peers::proftpd(), "ProFTPD"),
        (peers::pyftpdlib(&PyOptions::default()), "pyftpdlib"),
        (peers::rclone_serve(), "rclone serve ftp"),
    ] {
        let mut args = user_args(&peer);
        args.push("--write");
        let c = check_json(&target(&peer), &args);
        let j = &c.json;
        assert_eq!(c.code, 0, "{name}: {j}");
        assert_eq!(j["server"], name, "{j}");
        for s in ["utf8", "upload", "rename", "delete", "names"] {
            assert_eq!(step(j, s)["verdict"], "ok", "{name} {s}: {j}");
        }
        let upload = step(j, "upload")["evidence"].as_str().unwrap();
        assert!(
            upload.ends_with(": 102400 bytes sent; SIZE says 102400"),
            "{name}: {upload}"
        );
        assert!(
            step(j, "names")["evidence"]
                .as_str()
                .unwrap()
                .contains("-ünïcødé-名前.txt uploaded, listed back byte for byte, deleted"),
            "{name}: {j}"
        );
        let left: Vec<_> = std::fs::read_dir(&peer.data)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("wharf-check-"))
            .collect();
        assert!(left.is_empty(), "{name}: left {left:?}");
    }
    let peer = peers::vsftpd(&[]);
    let c = check_json(&target(&peer), &["--write"]);
    let j = &c.json;
    assert_eq!(c.code, 0, "{j}");
    let upload = step(j, "upload");
    assert_eq!(upload["verdict"], "fail", "{upload}");
    has(upload, "evidence", "553");
    assert_eq!(
        upload["cause"],
        "the server refuses uploads for this user in its login directory"
    );
    assert!(
        upload["advice"]
            .as_str()
            .unwrap()
            .starts_with("allow uploads: `write_enable=YES` in vsftpd.conf"),
        "{upload}"
    );
    assert!(
        j["summary"].as_str().unwrap().ends_with(
            "; the upload fails: the server refuses uploads for this user in its login directory"
        ),
        "{j}"
    );
    // Without --write nothing is written, and the step says how to ask for it.
    let c = check_json(&target(&peer), &[]);
    assert_eq!(step(&c.json, "write")["verdict"], "skipped");
}

#[test]
fn ipv6_target_skips_pasv_and_port() {
    let peer = peers::wharf(BIN, "[::1]:0", None);
    let c = check_json(
        &format!("[::1]:{}", peer.addr.port()),
        &["--user", peers::USER],
    );
    let j = &c.json;
    assert_eq!(c.code, 0, "{j}");
    assert_eq!(
        j["working_modes"],
        serde_json::json!(["EPSV", "EPRT"]),
        "{j}"
    );
    assert_eq!(step(j, "PASV")["verdict"], "skipped");
    assert_eq!(step(j, "PORT")["verdict"], "skipped");
    assert!(
        step(j, "connect")["evidence"]
            .as_str()
            .unwrap()
            .starts_with("connected to [::1]:"),
        "{j}"
    );
    // A bare IPv6 address is a host (port 21), never host-plus-port.
    let c = check_json("::1", &["--timeout", "1"]);
    assert_eq!(
        step(&c.json, "connect")["evidence"]
            .as_str()
            .unwrap()
            .split(':')
            .next(),
        Some("[")
    );
    assert!(c.json["target"] == "[::1]:21", "{}", c.json);
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
    has(st, "evidence", "Connection refused");
    assert!(
        st["cause"]
            .as_str()
            .unwrap()
            .starts_with("refused: nothing listens on port"),
        "{st}"
    );
    has(st, "advice", "firewall");
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
    has(st, "evidence", "timed out");
    has(st, "cause", "dropped");
    has(st, "advice", "another network");
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
    has(pasv, "cause", "NAT/masquerade");
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
        has(st, "evidence", "127.0.0.1:1");
        has(st, "cause", "passive data connection to 127.0.0.1:1");
        has(st, "advice", "`handler.passive_ports = range(A, B)`");
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
    cmd.args(["check", "-v", "--user", peers::USER, &target(&peer)])
        .env("WHARF_PASSWORD", "not-the-password");
    let out = output_with_input(&mut cmd, None, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("Command: PASS ****"), "{log}");
    assert!(!log.contains("not-the-password"), "{log}");
    assert!(
        text.contains("cause: the server refused the user name or password"),
        "{text}"
    );
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

/// The failures built for real: a server host and a client host in network namespaces, with
/// nftables rules where a firewall would be, only documentation addresses, no route out.
mod namespaces {
    use std::time::Duration;

    use wharf_testkit::netns::{Lab, SERVER_IP};
    use wharf_testkit::{Server, output_with_input};

    use super::{Checked, has, step};
    use crate::BIN;

    fn serve(lab: &Lab, extra: &[&str]) -> Server {
        Server::builder(BIN)
            .netns(&lab.server)
            .listen(&format!("{SERVER_IP}:21"))
            .args(extra)
            .start()
    }

    fn check_from_client(lab: &Lab, extra: &[&str]) -> Checked {
        let mut cmd = lab.command(&lab.client, std::path::Path::new(BIN));
        cmd.args(["check", "--json", "--timeout", "3"])
            .args(extra)
            .arg(SERVER_IP);
        let out = output_with_input(&mut cmd, None, Duration::from_secs(120));
        let stdout = String::from_utf8_lossy(&out.stdout);
        Checked {
            code: out.status.code().unwrap_or(-1),
            json: serde_json::from_str(&stdout).unwrap_or_else(|e| {
                panic!(
                    "not JSON ({e}): {stdout}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            }),
        }
    }

    const INPUT: &str = "table inet wharf_test {\n chain input {\n  type filter hook input priority 0; policy accept;\n";

    #[test]
    fn a_control_port_dropped_is_filtered() {
        let lab = Lab::new();
        let _server = serve(&lab, &[]);
        lab.firewall(
            &lab.server,
            &format!("{INPUT}  tcp dport 21 drop\n }}\n}}\n"),
        );
        let c = check_from_client(&lab, &[]);
        assert_eq!(c.code, 3, "{}", c.json);
        let st = step(&c.json, "connect");
        assert_eq!(st["verdict"], "fail");
        has(st, "evidence", "timed out: filtered");
        has(st, "cause", "packets to port 21 are dropped");
        has(st, "advice", "open TCP port 21");
        assert_eq!(
            c.json["summary"],
            "192.0.2.1:21 cannot be reached: no FTP possible"
        );
    }

    #[test]
    fn b_control_port_rejected_is_refused() {
        let lab = Lab::new();
        let _server = serve(&lab, &[]);
        lab.firewall(
            &lab.server,
            &format!("{INPUT}  tcp dport 21 reject with tcp reset\n }}\n}}\n"),
        );
        let c = check_from_client(&lab, &[]);
        assert_eq!(c.code, 3, "{}", c.json);
        let st = step(&c.json, "connect");
        has(st, "evidence", "Connection refused");
        assert!(
            st["cause"]
                .as_str()
                .unwrap()
                .starts_with("refused: nothing listens on port 21 at 192.0.2.1"),
            "{st}"
        );
    }

    #[test]
    fn c_passive_range_dropped_leaves_active() {
        let lab = Lab::new();
        let _server = serve(&lab, &["--passive-ports", "50000-50009"]);
        lab.firewall(
            &lab.server,
            &format!("{INPUT}  tcp dport 50000-50009 drop\n }}\n}}\n"),
        );
        let c = check_from_client(&lab, &[]);
        let j = &c.json;
        assert_eq!(c.code, 0, "{j}");
        assert_eq!(j["server"], "Wharf");
        assert_eq!(
            j["working_modes"],
            serde_json::json!(["EPRT", "PORT"]),
            "{j}"
        );
        for s in ["EPSV", "PASV"] {
            let st = step(j, s);
            assert_eq!(st["verdict"], "fail", "{st}");
            let cause = st["cause"].as_str().unwrap();
            assert!(
                cause.contains("passive data connection to 192.0.2.1:500"),
                "{cause}"
            );
            assert!(cause.contains("timed out"), "{cause}");
            let advice = st["advice"].as_str().unwrap();
            assert!(
                advice.contains("(this time it offered port 500"),
                "{advice}"
            );
            assert!(advice.contains("`--passive-ports A-B`"), "{advice}");
        }
        assert_eq!(step(j, "EPRT")["verdict"], "ok");
        // The server's end (SITE DIAG): its listeners waited and nobody came.
        let server = step(j, "server");
        assert_eq!(server["verdict"], "warn", "{server}");
        assert!(
            server["evidence"]
                .as_str()
                .unwrap()
                .starts_with("it sees this client as 192.0.2.2; announces 192.0.2.1 for PASV (its own address); passive ports 50000-50009; TLS off"),
            "{server}"
        );
        let cause = server["cause"].as_str().unwrap();
        for verb in ["EPSV", "PASV"] {
            assert!(
                cause.contains(&format!(
                    "({verb}) and no connection came: the range 50000-50009 is not open between you"
                )),
                "{cause}"
            );
        }
        assert!(cause.starts_with("the server waited "), "{cause}");
        assert_eq!(
            server["advice"],
            "open TCP ports 50000-50009 in the firewall in front of the server (and in any firewall between), or use active mode"
        );
        let summary = j["summary"].as_str().unwrap();
        assert!(summary.contains("only active mode works"), "{j}");
        assert!(
            summary.contains("; the server's end: the server waited "),
            "{summary}"
        );
        // A data step that timed out is not a slow server, and no cause is said twice.
        let steps = j["steps"].as_array().unwrap();
        assert!(!steps.iter().any(|s| s["name"] == "speed"), "{j}");
        let parts: Vec<&str> = summary.split("; ").collect();
        let mut seen = std::collections::HashSet::new();
        assert!(parts.iter().all(|p| seen.insert(*p)), "{summary}");
    }

    #[test]
    fn d_client_refusing_inbound_connections_breaks_active_only() {
        let lab = Lab::new();
        let _server = serve(&lab, &[]);
        lab.firewall(
            &lab.client,
            &format!("{INPUT}  ct state new drop\n }}\n}}\n"),
        );
        let c = check_from_client(&lab, &[]);
        let j = &c.json;
        assert_eq!(c.code, 0, "{j}");
        assert_eq!(
            j["working_modes"],
            serde_json::json!(["EPSV", "PASV"]),
            "{j}"
        );
        for s in ["EPRT", "PORT"] {
            let st = step(j, s);
            assert_eq!(st["verdict"], "fail", "{st}");
            has(st, "evidence", "did not connect back");
            has(st, "cause", "this client's firewall or NAT");
            assert!(
                st["advice"]
                    .as_str()
                    .unwrap()
                    .starts_with("use passive mode"),
                "{st}"
            );
        }
        assert_eq!(j["summary"], "working: EPSV, PASV; use passive mode");
    }

    #[test]
    fn e_wrong_pasv_address_is_flagged_and_the_control_address_works() {
        let lab = Lab::new();
        let _server = serve(&lab, &["--passive-address", "198.51.100.7"]);
        let c = check_from_client(&lab, &[]);
        let j = &c.json;
        assert_eq!(c.code, 0, "{j}");
        let pasv = step(j, "PASV");
        assert_eq!(pasv["verdict"], "warn", "{pasv}");
        let evidence = pasv["evidence"].as_str().unwrap();
        assert!(
            evidence.starts_with("227 Entering Passive Mode (198,51,100,7,"),
            "{evidence}"
        );
        assert!(
            evidence.contains("announced 198.51.100.7, not 192.0.2.1"),
            "{evidence}"
        );
        assert!(
            evidence.contains("the server's own address 192.0.2.1 worked"),
            "{evidence}"
        );
        assert_eq!(
            pasv["advice"],
            "set the server's public address with `--passive-address ADDR` (or `[passive] address` in the config)"
        );
        assert_eq!(step(j, "EPSV")["verdict"], "ok");
        assert_eq!(
            j["working_modes"],
            serde_json::json!(["EPSV", "PASV", "EPRT", "PORT"])
        );
    }

    #[test]
    fn e_private_pasv_address_is_not_even_tried() {
        let lab = Lab::new();
        let _server = serve(&lab, &["--passive-address", "10.1.2.3"]);
        let c = check_from_client(&lab, &[]);
        let j = &c.json;
        assert_eq!(c.code, 0, "{j}");
        let pasv = step(j, "PASV");
        assert_eq!(pasv["verdict"], "warn", "{pasv}");
        let evidence = pasv["evidence"].as_str().unwrap();
        assert!(
            evidence.contains(
                "announced 10.1.2.3, not 192.0.2.1 (a private address): not connected to"
            ),
            "{evidence}"
        );
        has(pasv, "cause", "10.1.2.3 (a private address)");
        has(pasv, "advice", "--passive-address");
    }

    /// A client behind a NAT router without an FTP helper: its EPRT/PORT carry its private
    /// address, which the server refuses and explains; SITE DIAG shows the address the server
    /// sees, and the check says "behind NAT".
    #[test]
    fn g_client_behind_nat_in_active_mode_is_diagnosed_by_site_diag() {
        let lab = Lab::behind_nat();
        let server = serve(&lab, &[]);
        let c = check_from_client(&lab, &[]);
        let j = &c.json;
        assert_eq!(c.code, 0, "{j}");
        assert_eq!(
            j["working_modes"],
            serde_json::json!(["EPSV", "PASV"]),
            "{j}"
        );
        for s in ["EPRT", "PORT"] {
            let st = step(j, s);
            assert_eq!(st["verdict"], "fail", "{st}");
            has(
                st,
                "evidence",
                "10.0.0.2 is not your address as this server sees it (192.0.2.2): a NAT between you rewrites your address, so use passive mode",
            );
            has(
                st,
                "cause",
                "refuses the data address this client sent (10.0.0.2)",
            );
        }
        let st = step(j, "server");
        assert_eq!(st["verdict"], "warn", "{st}");
        assert_eq!(
            st["cause"],
            "the server saw you as 192.0.2.2 while your side says 10.0.0.2: you are behind NAT, so active mode (the server connecting back to you) does not reach you"
        );
        assert_eq!(
            st["advice"],
            "use passive mode; active mode needs a NAT with an FTP helper and a forwarded port range"
        );
        assert!(
            j["summary"]
                .as_str()
                .unwrap()
                .starts_with("working: EPSV, PASV; use passive mode; the server's end: the server saw you as 192.0.2.2"),
            "{j}"
        );
        assert!(
            server.log().contains("refused EPRT to a foreign address: 10.0.0.2 is not the client's address as seen here (192.0.2.2): a client behind NAT without an FTP helper"),
            "{}",
            server.log()
        );
        // Any client's log shows the server's explanation: wharf forced into active mode.
        let mut cmd = lab.command(&lab.client, std::path::Path::new(BIN));
        cmd.args(["ls", "--active", "-v", "--timeout", "3", "ftp://192.0.2.1/"]);
        let out = output_with_input(&mut cmd, None, Duration::from_secs(60));
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{text}");
        assert!(
            text.contains("Response: 504 Illegal EPRT: 10.0.0.2 is not your address as this server sees it (192.0.2.2)"),
            "{text}"
        );
    }

    /// Active mode into a client that drops incoming connections, the server giving up before
    /// the check does: the 425 says what the server saw, and SITE DIAG says it again.
    #[test]
    fn h_active_mode_blocked_is_seen_from_both_ends() {
        let lab = Lab::new();
        let server = Server::builder(BIN)
            .netns(&lab.server)
            .listen(&format!("{SERVER_IP}:21"))
            .config("[limits]\nconnect_timeout = 1\n")
            .start();
        lab.firewall(
            &lab.client,
            &format!("{INPUT}  ct state new drop\n }}\n}}\n"),
        );
        let c = check_from_client(&lab, &[]);
        let j = &c.json;
        assert_eq!(c.code, 0, "{j}");
        for s in ["EPRT", "PORT"] {
            let st = step(j, s);
            assert_eq!(st["verdict"], "fail", "{st}");
            has(
                st,
                "evidence",
                "425 No data connection: no answer from 192.0.2.2:",
            );
        }
        let st = step(j, "server");
        assert_eq!(st["verdict"], "warn", "{st}");
        let cause = st["cause"].as_str().unwrap();
        assert!(
            cause.starts_with("the server's connection to 192.0.2.2:")
                && cause.contains("got no answer in 1 s: a firewall or NAT on this side drops it"),
            "{cause}"
        );
        assert_eq!(st["advice"], "use passive mode");
        assert!(
            server
                .log()
                .contains("data connection failed: No data connection: no answer from 192.0.2.2:"),
            "{}",
            server.log()
        );
    }

    /// A name with an IPv6 and an IPv4 address: the check uses the first that works (IPv6,
    /// by the default address selection), then tries the other family the same way. Here the
    /// server's firewall drops the passive ports over IPv4 only.
    #[test]
    fn i_both_address_families_are_checked() {
        use wharf_testkit::netns::SERVER_IP6;
        let lab = Lab::new().with_ipv6();
        lab.hosts(
            &lab.client,
            &format!("127.0.0.1 localhost\n{SERVER_IP} ftp.lab.test\n{SERVER_IP6} ftp.lab.test\n"),
        );
        let _server = Server::builder(BIN)
            .netns(&lab.server)
            .listen(&format!("{SERVER_IP}:21"))
            .args(&[
                "--listen",
                &format!("[{SERVER_IP6}]:21"),
                "--passive-ports",
                "50000-50009",
            ])
            .start();
        lab.firewall(
            &lab.server,
            &format!("{INPUT}  meta nfproto ipv4 tcp dport 50000-50009 drop\n }}\n}}\n"),
        );
        let mut cmd = lab.command(&lab.client, std::path::Path::new(BIN));
        cmd.args(["check", "--json", "--timeout", "3", "ftp.lab.test"]);
        let out = output_with_input(&mut cmd, None, Duration::from_secs(120));
        let j: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(out.status.code(), Some(0), "{j}");
        assert_eq!(
            step(&j, "resolve")["evidence"],
            format!("ftp.lab.test → {SERVER_IP6}, {SERVER_IP}"),
            "{j}"
        );
        assert_eq!(
            step(&j, "connect")["evidence"],
            format!("connected to [{SERVER_IP6}]:21"),
            "{j}"
        );
        assert_eq!(step(&j, "EPSV")["verdict"], "ok", "{j}");
        let v4 = step(&j, "IPv4");
        assert_eq!(v4["verdict"], "warn", "{v4}");
        assert!(
            v4["evidence"].as_str().unwrap().starts_with(&format!(
                "{SERVER_IP}:21: connected and logged in; EPSV listing:"
            )),
            "{v4}"
        );
        assert!(
            v4["cause"].as_str().unwrap().starts_with(
                "over IPv4 the control connection works but the passive data connection does not"
            ),
            "{v4}"
        );
        has(&j, "summary", "; warning (IPv4): over IPv4");
    }

    #[test]
    fn f_healthy_server_across_hosts() {
        let lab = Lab::new();
        let _server = serve(&lab, &[]);
        let c = check_from_client(&lab, &[]);
        let j = &c.json;
        assert_eq!(c.code, 0, "{j}");
        assert_eq!(j["server"], "Wharf");
        assert_eq!(j["target"], "192.0.2.1:21");
        assert_eq!(
            j["working_modes"],
            serde_json::json!(["EPSV", "PASV", "EPRT", "PORT"])
        );
        assert_eq!(j["exit_code"], 0);
    }
}

#[test]
fn no_banner_and_reset_are_told_apart() {
    // Accepts and says nothing.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let holder = std::thread::spawn(move || {
        let (s, _) = silent.accept().unwrap();
        std::thread::sleep(Duration::from_secs(3));
        drop(s);
    });
    let c = check_json(&silent_addr.to_string(), &["--timeout", "1"]);
    assert_eq!(c.code, 1, "{}", c.json);
    assert_eq!(step(&c.json, "connect")["verdict"], "ok");
    let st = step(&c.json, "banner");
    assert_eq!(st["verdict"], "fail");
    has(st, "evidence", "welcome message");
    has(st, "cause", "nothing speaks FTP");
    assert_eq!(
        c.json["summary"],
        "the server does not get as far as a login"
    );
    holder.join().unwrap();

    // Accepts and resets at once.
    let resetting = TcpListener::bind("127.0.0.1:0").unwrap();
    let resetting_addr = resetting.local_addr().unwrap();
    let resetter = std::thread::spawn(move || {
        let (s, _) = resetting.accept().unwrap();
        // After the client's connect has returned, so that the reset meets the banner read (a
        // reset racing the handshake is reported at the connect step instead).
        std::thread::sleep(Duration::from_millis(300));
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(s);
    });
    let c = check_json(&resetting_addr.to_string(), &["--timeout", "2"]);
    assert_eq!(c.code, 1, "{}", c.json);
    let st = step(&c.json, "banner");
    assert_eq!(st["verdict"], "fail");
    assert!(
        st["cause"]
            .as_str()
            .unwrap()
            .starts_with("reset: the connection was cut before the welcome message"),
        "{st}"
    );
    resetter.join().unwrap();
}

/// A server no rule names: "unknown", with its banner shown so the reader can tell.
#[test]
fn an_unknown_server_is_shown_with_its_banner() {
    use std::io::{BufRead, BufReader, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fake = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut w = s.try_clone().unwrap();
        w.write_all(b"220 MysteryFTP 9.1 ready\r\n").unwrap();
        for line in BufReader::new(s).lines() {
            let Ok(line) = line else { break };
            let reply: &[u8] = match line.split(' ').next().unwrap_or("") {
                "USER" => b"331 Password required.\r\n",
                "PASS" => b"530 Login incorrect.\r\n",
                "QUIT" => b"221 Bye.\r\n",
                _ => b"500 Unknown command.\r\n",
            };
            if w.write_all(reply).is_err() || line.starts_with("QUIT") {
                break;
            }
        }
    });
    let mut cmd = Command::new(BIN);
    cmd.args(["check", "--timeout", "3", "--user", "demo"])
        .arg(addr.to_string())
        .env("WHARF_PASSWORD", "x");
    let out = output_with_input(&mut cmd, None, Duration::from_secs(60));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Server: unknown (banner: 220 MysteryFTP 9.1 ready)"),
        "{text}"
    );
    assert_eq!(out.status.code(), Some(1), "{text}");
    fake.join().unwrap();
}

/// A server that announces another address in PASV replies (127.0.0.2, where a listener counts
/// connections): the check never connects there — it tests the server's own address with the
/// announced port, names the announced address's kind, and the warning reaches the summary.
#[test]
fn a_pasv_address_elsewhere_is_never_connected_to() {
    // Each server announces 127.0.0.2 with its one passive port, where a decoy listens and
    // counts: the check must connect there never, and use the server's own address instead.
    for make in ["Wharf", "vsftpd", "ProFTPD", "pyftpdlib"] {
        // Two decoys on consecutive ports (ProFTPD's PassivePorts needs min < max).
        let (decoys, port) = (0..50)
            .find_map(|_| {
                let first = TcpListener::bind("127.0.0.2:0").ok()?;
                let port = first.local_addr().ok()?.port();
                let second = TcpListener::bind(("127.0.0.2", port.checked_add(1)?)).ok()?;
                Some(([first, second], port))
            })
            .expect("two consecutive free ports on 127.0.0.2");
        let range = format!("{port}-{port}");
        let peer = match make {
            "Wharf" => peers::wharf(
                BIN,
                "127.0.0.1:0",
                Some(&format!(
                    "[passive]\naddress = \"127.0.0.2\"\nports = \"{range}\"\n"
                )),
            ),
            "vsftpd" => peers::vsftpd(&[
                "pasv_address=127.0.0.2",
                &format!("pasv_min_port={port}"),
                &format!("pasv_max_port={port}"),
            ]),
            "ProFTPD" => peers::proftpd_with(&[
                "MasqueradeAddress 127.0.0.2",
                &format!("PassivePorts {port} {}", port + 1),
            ]),
            _ => peers::pyftpdlib(&PyOptions {
                masquerade: Some("127.0.0.2"),
                passive_port: Some(port),
                ..PyOptions::default()
            }),
        };
        let c = check_json(&target(&peer), &user_args(&peer));
        let j = &c.json;
        for decoy in &decoys {
            decoy.set_nonblocking(true).unwrap();
            assert!(
                decoy.accept().is_err(),
                "{make}: the check connected to 127.0.0.2: {j}"
            );
        }
        assert_eq!(j["server"], make, "{j}");
        let pasv = step(j, "PASV");
        assert_eq!(pasv["verdict"], "warn", "{make}: {pasv}");
        let evidence = pasv["evidence"].as_str().unwrap();
        assert!(
            evidence.contains(
                "announced 127.0.0.2, not 127.0.0.1 (a loopback address): not connected to"
            ),
            "{make}: {evidence}"
        );
        assert!(
            j["summary"]
                .as_str()
                .unwrap()
                .contains("warning (PASV): the server announces 127.0.0.2 (a loopback address)"),
            "{make}: {j}"
        );
        let want = match make {
            "Wharf" => "`--passive-address ADDR` (or `[passive] address` in the config)",
            "vsftpd" => "`pasv_address=ADDR` in vsftpd.conf",
            "ProFTPD" => "`MasqueradeAddress ADDR` in proftpd.conf",
            _ => "`handler.masquerade_address = ADDR`",
        };
        assert_eq!(
            pasv["advice"],
            format!("set the server's public address with {want}"),
            "{make}"
        );
    }
}

/// A one-connection service for the check to meet: `greeting` sent at once (if any), and
/// `answer` sent back to the first line it reads (if any).
fn service(
    greeting: &'static [u8],
    answer: &'static [u8],
) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    use std::io::{BufRead, BufReader, Write};
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let Ok((s, _)) = l.accept() else { return };
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut w = s.try_clone().unwrap();
        let _ = w.write_all(greeting);
        let mut line = String::new();
        if BufReader::new(s).read_line(&mut line).unwrap_or(0) > 0 && !answer.is_empty() {
            let _ = w.write_all(answer);
        }
        std::thread::sleep(Duration::from_millis(200));
    });
    (addr, t)
}

/// What is not FTP is shown and named: an SSH greeting, a web server (silent until asked, then
/// HTTP), a mail server, and Wharf's own implicit FTPS port checked as plain FTP (a TLS alert,
/// or a close, after the HELP line).
#[test]
fn services_that_are_not_ftp_are_named_with_what_they_sent() {
    let cases: [(&[u8], &[u8], &str, &str); 3] = [
        (
            b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n",
            b"",
            "received instead of an FTP welcome: \"SSH-2.0-OpenSSH_9.2p1 Debian-2\\r\\n\"",
            "an SSH server",
        ),
        (
            b"",
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
            "after a HELP line it answered: \"HTTP/1.1 400 Bad Request",
            "a web server (HTTP)",
        ),
        (
            b"220 mail.example.net ESMTP Postfix\r\n",
            b"",
            "ESMTP Postfix",
            "a mail server (SMTP)",
        ),
    ];
    for (greeting, answer, evidence, named) in cases {
        let (addr, t) = service(greeting, answer);
        let c = check_json(&addr.to_string(), &["--timeout", "2"]);
        assert_eq!(c.code, 1, "{}", c.json);
        let st = step(&c.json, "banner");
        assert_eq!(st["verdict"], "fail", "{st}");
        assert!(st["evidence"].as_str().unwrap().contains(evidence), "{st}");
        assert!(st["cause"].as_str().unwrap().contains(named), "{st}");
        t.join().unwrap();
    }
    // An implicit FTPS port checked as plain FTP.
    let dir = tempfile::tempdir().unwrap();
    let out = output_with_input(
        Command::new(BIN)
            .args(["cert", "localhost", "--out"])
            .arg(dir.path()),
        None,
        Duration::from_secs(30),
    );
    assert!(out.status.success());
    let s = crate::server()
        .args(&[
            "--tls-cert",
            &dir.path().join("localhost.crt").to_string_lossy(),
            "--tls-key",
            &dir.path().join("localhost.key").to_string_lossy(),
            "--listen-implicit",
            "127.0.0.1:0",
        ])
        .start();
    let implicit = s.implicit.expect("implicit listener");
    let c = check_json(&implicit.to_string(), &["--timeout", "2"]);
    let st = step(&c.json, "banner");
    assert_eq!(st["verdict"], "fail", "{st}");
    let advice = st["advice"].as_str().unwrap();
    assert!(
        advice.contains(&format!("wharf check ftps://127.0.0.1:{}", implicit.port())),
        "{st}"
    );
    println!("implicit FTPS port checked as plain: {st}");
}

/// Live output: each step is printed as it starts, with what it waits for, and as it ends — a
/// person watching sees the wait for a silent server's welcome while it lasts.
#[test]
fn steps_are_printed_as_they_run() {
    use std::io::{BufRead, BufReader};
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let holder = std::thread::spawn(move || {
        let (s, _) = silent.accept().unwrap();
        std::thread::sleep(Duration::from_secs(8));
        drop(s);
    });
    let mut child = Command::new(BIN)
        .args(["check", "--timeout", "3"])
        .arg(addr.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let mut waiting_seen_at = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.starts_with("[....] banner") {
            waiting_seen_at = Some(started.elapsed());
            seen.push(line);
            break;
        }
        seen.push(line);
    }
    let at = waiting_seen_at.unwrap_or_else(|| panic!("no live line: {seen:?}"));
    assert!(
        child.try_wait().unwrap().is_none(),
        "printed only at the end: {seen:?}"
    );
    assert_eq!(
        seen.last().map(String::as_str),
        Some("[....] banner   waiting for the welcome message, up to 3 s")
    );
    assert!(
        seen.iter().any(|l| l.starts_with("[ OK ] connect")),
        "{seen:?}"
    );
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let _ = child.wait();
    assert!(
        rest.iter().any(|l| l.starts_with("[FAIL] banner")),
        "{rest:?}"
    );
    assert!(rest.iter().any(|l| l.starts_with("Summary: ")), "{rest:?}");
    println!(
        "the wait was shown after {:.0} ms: {seen:?}",
        at.as_secs_f64() * 1000.0
    );
    holder.join().unwrap();
}

/// A server that answers slowly (its welcome after 2.5 s) gets a speed warning with the cause.
#[test]
fn a_slow_server_is_warned_about() {
    let (addr, t) = {
        use std::io::{BufRead, BufReader, Write};
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let Ok((s, _)) = l.accept() else { return };
            s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
            let mut w = s.try_clone().unwrap();
            std::thread::sleep(Duration::from_millis(2500));
            let _ = w.write_all(b"220 slow but here\r\n");
            for line in BufReader::new(s).lines() {
                let Ok(line) = line else { break };
                let reply: &[u8] = if line.starts_with("USER") {
                    b"331 go on\r\n"
                } else if line.starts_with("PASS") {
                    b"530 no\r\n"
                } else {
                    b"221 bye\r\n"
                };
                if w.write_all(reply).is_err() || line.starts_with("QUIT") {
                    break;
                }
            }
        });
        (addr, t)
    };
    let c = check_json(&addr.to_string(), &["--timeout", "5"]);
    let speed = step(&c.json, "speed");
    assert_eq!(speed["verdict"], "warn", "{}", c.json);
    has(speed, "evidence", "banner 2.");
    has(speed, "cause", "reverse DNS");
    t.join().unwrap();
}

/// The resume step reads the last few kilobytes of a large file (REST to 4096 bytes before its
/// end), never the whole file: 20 MB at a 2 MB/s cap used to take ten seconds of the check.
#[test]
fn resume_step_reads_a_few_bytes_of_a_large_file() {
    let peer = peers::wharf(
        BIN,
        "127.0.0.1:0",
        Some("[limits]\ndownload_rate = 2000000\n"),
    );
    peer.seed("big.bin", &wharf_testkit::pattern(20_000_000, 7));
    let c = check_json(&target(&peer), &user_args(&peer));
    let resume = step(&c.json, "resume");
    assert_eq!(resume["verdict"], "ok", "{resume}");
    has(
        resume,
        "evidence",
        "REST 19995904 + RETR big.bin: the last 4096 of 20000000 bytes",
    );
    let log = peer.log();
    assert!(
        !log.contains("bytes=19999999"),
        "the whole file was read:\n{log}"
    );
}

/// Every problem of the TLS step gets its cause: a certificate for another name that also
/// expires in ten days is said to be both (the expiry was hidden behind the name).
#[test]
fn tls_step_says_every_certificate_problem() {
    let dir = tempfile::tempdir().unwrap();
    let out = output_with_input(
        Command::new(BIN)
            .args(["cert", "other.example", "--days", "10", "--out"])
            .arg(dir.path()),
        None,
        Duration::from_secs(30),
    );
    assert!(out.status.success());
    let cert = dir.path().join("other.example.crt");
    let s = crate::server()
        .args(&[
            "--tls-cert",
            &cert.to_string_lossy(),
            "--tls-key",
            &dir.path().join("other.example.key").to_string_lossy(),
        ])
        .start();
    let c = check_json(
        &format!("ftpes://{}", s.addr),
        &["--ca-file", &cert.to_string_lossy()],
    );
    let st = step(&c.json, "tls");
    assert_eq!(st["verdict"], "fail", "{st}");
    has(st, "cause", "not issued for 127.0.0.1");
    has(st, "cause", "the certificate expires on");
    has(st, "advice", "renew the certificate");
    // Not trusted either (the system's CAs): all three said.
    let c = check_json(&format!("ftpes://{}", s.addr), &[]);
    let st = step(&c.json, "tls");
    has(st, "cause", "not issued for 127.0.0.1");
    has(st, "cause", "not trusted");
    has(st, "cause", "the certificate expires on");
}
