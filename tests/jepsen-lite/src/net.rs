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

use std::process::Command;

/// The namespaces, veth pairs and bridge of one run.
pub struct Network {
    subnet: u8,
    nodes: usize,
}

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
        let subnet = (std::process::id() % 200) as u8 + 20;
        let net = Network { subnet, nodes };
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
            let ns = net.namespace(i);
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

    fn bridge(&self) -> String {
        format!("jl{}", self.subnet)
    }

    /// The harness's own address on the bridge.
    fn gateway(&self) -> String {
        format!("10.77.{}.254", self.subnet)
    }

    /// The namespace of node `i` (0-based).
    pub fn namespace(&self, i: usize) -> String {
        format!("jl{}n{}", self.subnet, i + 1)
    }

    /// The address of node `i` (0-based).
    pub fn ip(&self, i: usize) -> String {
        format!("10.77.{}.{}", self.subnet, i + 1)
    }

    fn in_ns(&self, i: usize, program: &str, args: &[&str]) -> Result<(), String> {
        let ns = self.namespace(i);
        let mut all = vec!["netns", "exec", ns.as_str(), program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// Drops all traffic between nodes `a` and `b`, both ways (each side drops what it sends
    /// to and receives from the other).
    pub fn cut(&self, a: usize, b: usize) -> Result<(), String> {
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
    /// match: no netem needed), from peers and clients alike.
    pub fn lossy(&self, probability: f64) -> Result<(), String> {
        let p = format!("{probability}");
        for i in 0..self.nodes {
            let rule = ["-A", "INPUT", "-m", "statistic", "--mode", "random"];
            let rule = [&rule[..], &["--probability", &p, "-j", "DROP"]].concat();
            self.in_ns(i, "iptables", &rule)?;
        }
        Ok(())
    }

    /// Removes every rule: the network is whole again.
    pub fn heal(&self) -> Result<(), String> {
        for i in 0..self.nodes {
            self.in_ns(i, "iptables", &["-F"])?;
        }
        Ok(())
    }

    /// Removes the namespaces and the bridge (their veth pairs go with them); quiet about
    /// what is not there.
    fn remove(&self) {
        for i in 0..self.nodes {
            let _ = run("ip", &["netns", "del", &self.namespace(i)]);
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

impl Drop for Network {
    fn drop(&mut self) {
        self.remove();
    }
}
