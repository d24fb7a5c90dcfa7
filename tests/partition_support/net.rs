//! Hosts made of network namespaces: each host `eqpart-h<N>` has its own
//! loopback, `epmd` and address 10.213.0.<N>/24 on a veth whose other end
//! sits on a bridge in a namespace of its own (`eqpart-br`). The addresses
//! exist only inside the namespaces.
//!
//! A partition is a set of blackhole routes between the hosts of its two
//! sides (packets from one side to the other are dropped at the sender,
//! established TCP connections stay open and silent, as on a real
//! network); healing removes them. Needs only iproute2 and root.
//!
//! Everything carries the prefix `eqpart-` (namespaces) or `eqp` (links),
//! so that [`Net::create`] first removes what a crashed run left, and the
//! [`Net`]'s `Drop` removes it all, on panic too.

use std::process::{Command, Stdio};

pub const PREFIX: &str = "eqpart-";
const BRIDGE_NS: &str = "eqpart-br";

/// The address of host `n`.
pub fn addr(n: u8) -> String {
    format!("10.213.0.{n}")
}

pub fn ns(n: u8) -> String {
    format!("{PREFIX}h{n}")
}

/// Runs `ip ARGS`; `Err` with its stderr when it fails.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn must(args: &[&str]) {
    if let Err(e) = ip(args) {
        panic!("{e}");
    }
}

/// The namespaces named with our prefix.
fn ours() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(PREFIX))
        .map(str::to_owned)
        .collect()
}

/// Kills every process inside namespace `name` (kill -9), then deletes it.
fn remove_ns(name: &str) {
    let pids = Command::new("ip")
        .args(["netns", "pids", name])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for pid in pids.split_whitespace() {
        let _ = Command::new("kill").args(["-9", pid]).status();
    }
    let _ = ip(&["netns", "del", name]);
}

/// Removes every namespace and root-namespace link with our prefix.
pub fn cleanup() {
    for name in ours() {
        remove_ns(&name);
    }
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for line in links.lines() {
        if let Some(name) = line.split(": ").nth(1) {
            let name = name.split('@').next().unwrap_or(name);
            if name.starts_with("eqp") {
                let _ = ip(&["link", "del", name]);
            }
        }
    }
}

/// The hosts; dropping it removes them (and kills what runs inside).
pub struct Net {
    hosts: Vec<u8>,
}

impl Net {
    /// Hosts `hosts` (their numbers are the last byte of their address),
    /// each with `epmd` started. Panics, loudly, when not root or when
    /// namespaces are unavailable: the test must not pass by doing nothing.
    pub fn create(hosts: &[u8]) -> Net {
        cleanup();
        let net = Net {
            hosts: hosts.to_vec(),
        };
        must(&["netns", "add", BRIDGE_NS]);
        must(&["-n", BRIDGE_NS, "link", "add", "br0", "type", "bridge"]);
        must(&["-n", BRIDGE_NS, "link", "set", "br0", "up"]);
        for &h in hosts {
            let ns = ns(h);
            let (outer, inner) = (format!("eqpb{h}"), format!("eqph{h}"));
            must(&["netns", "add", &ns]);
            must(&[
                "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ]);
            must(&["link", "set", &outer, "netns", BRIDGE_NS]);
            must(&["link", "set", &inner, "netns", &ns]);
            must(&["-n", BRIDGE_NS, "link", "set", &outer, "master", "br0"]);
            must(&["-n", BRIDGE_NS, "link", "set", &outer, "up"]);
            let cidr = format!("{}/24", addr(h));
            must(&["-n", &ns, "addr", "add", &cidr, "dev", &inner]);
            must(&["-n", &ns, "link", "set", &inner, "up"]);
            must(&["-n", &ns, "link", "set", "lo", "up"]);
            let epmd = Command::new("ip")
                .args(["netns", "exec", &ns, "epmd", "-daemon"])
                .status()
                .expect("run epmd");
            assert!(epmd.success(), "epmd in {ns}");
        }
        net
    }

    /// Cuts every host of `a` off from every host of `b`, both ways.
    pub fn partition(&self, a: &[u8], b: &[u8]) {
        self.routes("add", a, b);
    }

    /// Undoes [`Net::partition`] of the same sides.
    pub fn heal(&self, a: &[u8], b: &[u8]) {
        self.routes("del", a, b);
    }

    fn routes(&self, op: &str, a: &[u8], b: &[u8]) {
        for &x in a {
            for &y in b {
                for (from, to) in [(x, y), (y, x)] {
                    let dst = format!("{}/32", addr(to));
                    let r = ip(&["-n", &ns(from), "route", op, "blackhole", &dst]);
                    if op == "add" {
                        r.unwrap_or_else(|e| panic!("{e}"));
                    }
                }
            }
        }
    }

    pub fn hosts(&self) -> &[u8] {
        &self.hosts
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        cleanup();
    }
}
