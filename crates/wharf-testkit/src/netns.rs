//! Two hosts on one machine for tests of what crosses a network: a server host (192.0.2.1) and a
//! client host (192.0.2.2) in network namespaces made here, joined by a veth pair, with only the
//! documentation range 192.0.2.0/24 and no route out. Firewall rules go in with nftables.
//! Needs root; where the kernel refuses namespaces the test fails and says so.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The server host's address.
pub const SERVER_IP: &str = "192.0.2.1";
/// The client host's address.
pub const CLIENT_IP: &str = "192.0.2.2";

/// A server host and a client host; both namespaces are deleted when dropped.
pub struct Lab {
    pub server: String,
    pub client: String,
    /// The server end of the veth pair (deleted with its namespace, or by name if it never
    /// got there).
    veth: String,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip` ({e}); run scripts/install-peers"));
    assert!(
        out.status.success(),
        "`ip {}` failed: {} (network namespaces need root and a kernel that allows them)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

impl Lab {
    pub fn new() -> Lab {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}x{n}", std::process::id() % 100_000);
        // Built first, so that a failure halfway through still deletes what was made.
        let lab = Lab {
            server: format!("whs{id}"),
            client: format!("whc{id}"),
            veth: format!("wvs{id}"),
        };
        let (vs, vc) = (lab.veth.clone(), format!("wvc{id}"));
        ip(&["netns", "add", &lab.server]);
        ip(&["netns", "add", &lab.client]);
        ip(&["link", "add", &vs, "type", "veth", "peer", "name", &vc]);
        ip(&["link", "set", &vs, "netns", &lab.server]);
        ip(&["link", "set", &vc, "netns", &lab.client]);
        for (ns, dev, addr) in [(&lab.server, &vs, SERVER_IP), (&lab.client, &vc, CLIENT_IP)] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        lab
    }

    /// Loads an nftables ruleset into a namespace.
    pub fn firewall(&self, ns: &str, ruleset: &str) {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run nft ({e}); run scripts/install-peers"));
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(ruleset.as_bytes())
            .expect("nft stdin");
        let out = child.wait_with_output().expect("nft");
        assert!(
            out.status.success(),
            "nft failed: {}\n{ruleset}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A command to run `program` inside namespace `ns`.
    pub fn command(&self, ns: &str, program: &Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(program);
        cmd
    }
}

impl Default for Lab {
    fn default() -> Lab {
        Lab::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for args in [
            ["netns", "del", self.server.as_str()],
            ["netns", "del", self.client.as_str()],
            ["link", "del", self.veth.as_str()],
        ] {
            let _ = Command::new("ip")
                .args(args)
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
