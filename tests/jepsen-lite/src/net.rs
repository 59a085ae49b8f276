//! Network hosts for the fault scenarios: every node in its own network namespace, on a veth
//! pair to one bridge, with its own address, so that a partition is an iptables rule between
//! two addresses and the clients (in the harness's own namespace) still reach every node.
//!
//! ```text
//!   harness (root namespace) 10.77.S.254 ── bridge jlS ─┬─ veth ── jlSn1: 10.77.S.1 (node1)
//!                                                        ├─ veth ── jlSn2: 10.77.S.2 (node2)
//!                                                        └─ veth ── jlSn3: 10.77.S.3 (node3)
//! ```
//!
//! `S` is taken from the process id, so two runs on one machine do not share a subnet, and
//! everything is removed on drop (and any leftover of the same name before it is made).
//! Making namespaces needs root (CAP_NET_ADMIN); [`Network::create`] says so when it cannot.
//!
//! Without them, [`Network::loopback`] is the fallback: every node on loopback addresses of its
//! own (127.77.S.n, which need no setup), and a userspace proxy ([`crate::proxy`]) at
//! 127.78.S.n in front of each node's gRPC port, through which its peers reach it. Faults
//! then apply to node-to-node traffic only: clients always reach every node.

use crate::proxy::Proxy;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;

/// The hosts of one run.
pub struct Network {
    subnet: u8,
    nodes: usize,
    hosts: Hosts,
}

enum Hosts {
    /// Namespaces, veth pairs and a bridge; faults are iptables rules.
    Namespaces,
    /// Loopback addresses; faults are the proxy's rules.
    Loopback(Proxy),
}

/// The gRPC port, on every host.
const GRPC_PORT: u16 = 7473;

/// Runs `ip`/`iptables` with `args`; the error names the command and what it printed.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Network {
    /// Makes the bridge and one namespace per node. Fails (with the reason) without root.
    pub fn create(nodes: usize) -> Result<Network, String> {
        let net = Network {
            subnet: subnet(),
            nodes,
            hosts: Hosts::Namespaces,
        };
        net.remove();
        let br = net.bridge();
        let gateway = format!("{}/24", net.gateway());
        run("ip", &["link", "add", &br, "type", "bridge"])?;
        run("ip", &["link", "set", &br, "up"])?;
        run("ip", &["addr", "add", &gateway, "dev", &br])?;
        // With br_netfilter loaded (Docker loads it, and sets FORWARD's policy to DROP),
        // traffic between two ports of a bridge goes through the host's FORWARD chain.
        run(
            "iptables",
            &["-I", "FORWARD", "-i", &br, "-o", &br, "-j", "ACCEPT"],
        )?;
        for i in 0..nodes {
            let ns = net.ns_name(i);
            let veth = format!("{br}v{}", i + 1);
            let addr = format!("{}/24", net.ip(i));
            run("ip", &["netns", "add", &ns])?;
            run(
                "ip",
                &[
                    "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                ],
            )?;
            run("ip", &["link", "set", &veth, "master", &br, "up"])?;
            net.in_ns(i, "ip", &["addr", "add", &addr, "dev", "eth0"])?;
            net.in_ns(i, "ip", &["link", "set", "eth0", "up"])?;
            net.in_ns(i, "ip", &["link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// The loopback fallback: no root needed. Must run inside a tokio runtime (the proxy).
    pub fn loopback(nodes: usize) -> Result<Network, String> {
        let subnet = subnet();
        let host = |net: u8, i: usize| -> IpAddr { [127, net, subnet, i as u8 + 1].into() };
        let at = |net: u8| -> Vec<SocketAddr> {
            (0..nodes)
                .map(|i| SocketAddr::new(host(net, i), GRPC_PORT))
                .collect()
        };
        let sources: Vec<IpAddr> = (0..nodes).map(|i| host(77, i)).collect();
        let proxy = Proxy::start(&at(78), &at(77), &sources)?;
        Ok(Network {
            subnet,
            nodes,
            hosts: Hosts::Loopback(proxy),
        })
    }

    /// How the nodes are hosted, for the report: `netns` or `loopback-proxy`.
    pub fn kind(&self) -> &'static str {
        match self.hosts {
            Hosts::Namespaces => "netns",
            Hosts::Loopback(_) => "loopback-proxy",
        }
    }

    /// Whether the nodes' traffic passes the proxy (which can add latency).
    pub fn proxied(&self) -> bool {
        self.proxy().is_some()
    }

    fn proxy(&self) -> Option<&Proxy> {
        match &self.hosts {
            Hosts::Namespaces => None,
            Hosts::Loopback(proxy) => Some(proxy),
        }
    }

    fn bridge(&self) -> String {
        format!("jl{}", self.subnet)
    }

    /// The harness's own address on the bridge.
    fn gateway(&self) -> String {
        format!("10.77.{}.254", self.subnet)
    }

    fn ns_name(&self, i: usize) -> String {
        format!("jl{}n{}", self.subnet, i + 1)
    }

    /// The namespace node `i` (0-based) runs in, if it runs in one.
    pub fn namespace(&self, i: usize) -> Option<String> {
        match self.hosts {
            Hosts::Namespaces => Some(self.ns_name(i)),
            Hosts::Loopback(_) => None,
        }
    }

    /// The address of node `i` (0-based): its KES API and its own gRPC port listen on it.
    pub fn ip(&self, i: usize) -> String {
        match self.hosts {
            Hosts::Namespaces => format!("10.77.{}.{}", self.subnet, i + 1),
            Hosts::Loopback(_) => format!("127.77.{}.{}", self.subnet, i + 1),
        }
    }

    /// Where node `i`'s peers reach its gRPC port, when that is not its own address: the
    /// proxy in front of it.
    pub fn grpc_front(&self, i: usize) -> Option<String> {
        self.proxy()
            .map(|_| format!("127.78.{}.{}:{GRPC_PORT}", self.subnet, i + 1))
    }

    fn in_ns(&self, i: usize, program: &str, args: &[&str]) -> Result<(), String> {
        let ns = self.ns_name(i);
        let mut all = vec!["netns", "exec", ns.as_str(), program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Drops all traffic between nodes `a` and `b`, both ways (each side drops what it sends
    /// to and receives from the other).
    pub fn cut(&self, a: usize, b: usize) -> Result<(), String> {
        if let Some(proxy) = self.proxy() {
            proxy.set(|r| {
                r.cut.insert((a, b));
                r.cut.insert((b, a));
            });
            return Ok(());
        }
        for (me, other) in [(a, b), (b, a)] {
            let peer = self.ip(other);
            self.in_ns(me, "iptables", &["-A", "INPUT", "-s", &peer, "-j", "DROP"])?;
            self.in_ns(me, "iptables", &["-A", "OUTPUT", "-d", &peer, "-j", "DROP"])?;
        }
        Ok(())
    }

    /// Cuts node `i` off from every other node. Clients still reach it.
    pub fn isolate(&self, i: usize) -> Result<(), String> {
        for other in (0..self.nodes).filter(|&o| o != i) {
            self.cut(i, other)?;
        }
        Ok(())
    }

    /// Every node drops each packet it receives with `probability` (iptables' `statistic`
    /// match: no netem needed), from peers and clients alike. On loopback the proxy holds back
    /// that share of the chunks between nodes, as long as a retransmission takes.
    pub fn lossy(&self, probability: f64) -> Result<(), String> {
        if let Some(proxy) = self.proxy() {
            proxy.set(|r| r.loss = probability);
            return Ok(());
        }
        let p = format!("{probability}");
        for i in 0..self.nodes {
            let rule = ["-A", "INPUT", "-m", "statistic", "--mode", "random"];
            let rule = [&rule[..], &["--probability", &p, "-j", "DROP"]].concat();
            self.in_ns(i, "iptables", &rule)?;
        }
        Ok(())
    }

    /// Adds `delay` to everything nodes send each other; only the loopback proxy can (this
    /// kernel has no netem).
    pub fn delay(&self, delay: Duration) -> Result<(), String> {
        let proxy = self
            .proxy()
            .ok_or("latency needs the loopback proxy: this kernel has no netem")?;
        proxy.set(|r| r.delay = delay);
        Ok(())
    }

    /// Removes every rule: the network is whole again.
    pub fn heal(&self) -> Result<(), String> {
        if let Some(proxy) = self.proxy() {
            proxy.set(|r| *r = Default::default());
            return Ok(());
        }
        for i in 0..self.nodes {
            self.in_ns(i, "iptables", &["-F"])?;
        }
        Ok(())
    }

    /// Removes the namespaces and the bridge (their veth pairs go with them); quiet about
    /// what is not there.
    fn remove(&self) {
        if self.proxy().is_some() {
            return;
        }
        for i in 0..self.nodes {
            let _ = run("ip", &["netns", "del", &self.ns_name(i)]);
        }
        let br = self.bridge();
        while run(
            "iptables",
            &["-D", "FORWARD", "-i", &br, "-o", &br, "-j", "ACCEPT"],
        )
        .is_ok()
        {}
        let _ = run("ip", &["link", "del", &br]);
    }
}

/// A subnet number of this process's own, so two runs on one machine do not share one.
fn subnet() -> u8 {
    (std::process::id() % 200) as u8 + 20
}

impl Drop for Network {
    fn drop(&mut self) {
        self.remove();
    }
}
