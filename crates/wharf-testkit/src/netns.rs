//! Two hosts on one machine for tests of what crosses a network: a server host (192.0.2.1) and a
//! client host (192.0.2.2) in network namespaces made here, joined by a veth pair, with only the
//! documentation range 192.0.2.0/24 and no route out. Firewall rules go in with nftables.
//! Needs root; where the kernel refuses namespaces the test fails and says so.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The server host's address.
pub const SERVER_IP: &str = "192.0.2.1";
/// The client host's address (behind NAT: the router's outside address, which the server sees).
pub const CLIENT_IP: &str = "192.0.2.2";
/// Behind NAT ([`Lab::behind_nat`]): the client's own, private address.
pub const INSIDE_IP: &str = "10.0.0.2";
/// With [`Lab::with_ipv6`]: the server host's IPv6 address (documentation range).
pub const SERVER_IP6: &str = "2001:db8::1";
/// With [`Lab::with_ipv6`]: the client host's IPv6 address.
pub const CLIENT_IP6: &str = "2001:db8::2";
/// Behind NAT: the router's inside address, the client's default route.
const ROUTER_INSIDE_IP: &str = "10.0.0.1";

/// A server host and a client host; both namespaces are deleted when dropped.
pub struct Lab {
    pub server: String,
    pub client: String,
    /// The server end of the veth pair (deleted with its namespace, or by name if it never
    /// got there).
    veth: String,
    /// Behind NAT: the router between the client and the server.
    router: Option<String>,
    /// The client end of the link to the server (or to the router).
    client_veth: String,
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
            router: None,
            client_veth: format!("wvc{id}"),
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

    /// A client behind a NAT router without an FTP helper, as at home or in an office: the
    /// client host has [`INSIDE_IP`]; the router masquerades it as [`CLIENT_IP`], which is what
    /// the server (at [`SERVER_IP`]) sees. PORT/EPRT carrying the inside address pass through
    /// unchanged (no helper rewrites them), and nothing from outside reaches the client.
    pub fn behind_nat() -> Lab {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let id = format!("{}x{n}", std::process::id() % 100_000);
        let router = format!("whr{id}");
        let lab = Lab {
            server: format!("whs{id}"),
            client: format!("whc{id}"),
            veth: format!("wvs{id}"),
            router: Some(router.clone()),
            client_veth: format!("wvc{id}"),
        };
        let (vs, vo) = (lab.veth.clone(), format!("wvo{id}"));
        let (vi, vc) = (format!("wvi{id}"), format!("wvc{id}"));
        for ns in [&lab.server, &router, &lab.client] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&["link", "add", &vs, "type", "veth", "peer", "name", &vo]);
        ip(&["link", "add", &vi, "type", "veth", "peer", "name", &vc]);
        for (dev, ns) in [
            (&vs, &lab.server),
            (&vo, &router),
            (&vi, &router),
            (&vc, &lab.client),
        ] {
            ip(&["link", "set", dev, "netns", ns]);
        }
        for (ns, dev, addr) in [
            (&lab.server, &vs, format!("{SERVER_IP}/24")),
            (&router, &vo, format!("{CLIENT_IP}/24")),
            (&router, &vi, format!("{ROUTER_INSIDE_IP}/24")),
            (&lab.client, &vc, format!("{INSIDE_IP}/24")),
        ] {
            ip(&["-n", ns, "addr", "add", &addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        ip(&[
            "-n",
            &lab.client,
            "route",
            "add",
            "default",
            "via",
            ROUTER_INSIDE_IP,
        ]);
        // /proc/sys/net is the namespace's own for a process inside it.
        ip(&[
            "netns",
            "exec",
            &router,
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv4/ip_forward",
        ]);
        lab.firewall(
            &router,
            &format!(
                "table ip wharf_nat {{\n chain post {{\n  type nat hook postrouting priority 100; policy accept;\n  oifname \"{vo}\" masquerade\n }}\n}}\n"
            ),
        );
        lab
    }

    /// Gives both hosts an IPv6 address too ([`SERVER_IP6`], [`CLIENT_IP6`]), usable at once
    /// (no duplicate address detection to wait for).
    pub fn with_ipv6(self) -> Lab {
        for (ns, dev, addr) in [
            (&self.server, &self.veth, SERVER_IP6),
            (&self.client, &self.client_veth, CLIENT_IP6),
        ] {
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{addr}/64"),
                "dev",
                dev,
                "nodad",
            ]);
        }
        self
    }

    /// The `/etc/hosts` that programs in namespace `ns` see (`ip netns exec` mounts
    /// `/etc/netns/NS/hosts` over it); removed with the lab.
    pub fn hosts(&self, ns: &str, text: &str) {
        let dir = Path::new("/etc/netns").join(ns);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {} ({e}): needs root", dir.display()));
        std::fs::write(dir.join("hosts"), text).expect("write hosts");
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
        for ns in [&self.server, &self.client] {
            let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(ns));
        }
        let router = self.router.as_deref().unwrap_or(self.client.as_str());
        for args in [
            ["netns", "del", self.server.as_str()],
            ["netns", "del", self.client.as_str()],
            ["netns", "del", router],
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
