//! `cargo run -p jepsen-lite -- [--quick|--full] [--seed N] [--scenario NAME,...] [--no-build]`
//!
//! Runs the fault scenarios against real `kes-node` processes, each on its own network host,
//! checks every history, prints a summary table and writes `target/jepsen-lite/report.json`.
//! Exits non-zero when any scenario fails the pass rule (see `scenario::report`).

use jepsen_lite::net::Network;
use jepsen_lite::scenario::report::{ScenarioReport, table, write_json};
use jepsen_lite::scenario::{self, Scenario, Timing};
use std::time::{Duration, Instant};

const USAGE: &str =
    "usage: jepsen-lite [--quick|--full] [--seed N] [--scenario NAME,...] [--no-build]
  --quick      every scenario briefly (the default; what CI runs)
  --full       every scenario for about 15 minutes in all, for a release
  --seed N     the client load's seed (printed by every run, so a run can be replayed)
  --scenario   only these scenarios: isolate-leader, isolate-follower, bridge, kill-one,
               kill-all, pause-leader, rekey, random
  --no-build   use the kes-node and kes-cluster binaries already built
Needs root: every node runs in its own network namespace.";

struct Args {
    timing: Timing,
    seed: u64,
    only: Vec<String>,
    build: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        timing: quick(),
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1),
        only: Vec::new(),
        build: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => args.timing = quick(),
            "--full" => {
                args.timing = Timing {
                    before: Duration::from_secs(20),
                    fault: Duration::from_secs(60),
                    after: Duration::from_secs(40),
                }
            }
            "--seed" => {
                let v = it.next().ok_or("--seed needs a number")?;
                args.seed = v.parse().map_err(|_| format!("--seed {v}: not a number"))?;
            }
            "--scenario" => {
                let v = it.next().ok_or("--scenario needs names")?;
                for name in v.split(',') {
                    if !Scenario::ALL.iter().any(|s| s.name() == name) {
                        return Err(format!("unknown scenario '{name}'\n{USAGE}"));
                    }
                    args.only.push(name.to_owned());
                }
            }
            "--no-build" => args.build = false,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument '{other}'\n{USAGE}")),
        }
    }
    Ok(args)
}

fn quick() -> Timing {
    Timing {
        before: Duration::from_secs(3),
        fault: Duration::from_secs(6),
        after: Duration::from_secs(6),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = jepsen_lite::ensure_node_binaries(args.build) {
        eprintln!("{e}");
        std::process::exit(2);
    }
    let net = match Network::create(3) {
        Ok(n) => n,
        Err(e) => {
            eprintln!(
                "jepsen-lite needs network namespaces (run it as root, with iproute2 and iptables): {e}"
            );
            std::process::exit(2);
        }
    };
    println!("seed {} (replay with --seed {})", args.seed, args.seed);
    let started = Instant::now();
    let mut reports: Vec<ScenarioReport> = Vec::new();
    for s in Scenario::ALL {
        if !args.only.is_empty() && !args.only.iter().any(|n| n == s.name()) {
            continue;
        }
        let t = Instant::now();
        println!("{}: running ...", s.name());
        let r = scenario::run(&net, s, args.timing, args.seed).await;
        println!(
            "{}: {} in {:.0}s{}",
            s.name(),
            if r.passed() { "pass" } else { "FAIL" },
            t.elapsed().as_secs_f64(),
            r.kept
                .as_ref()
                .map(|k| format!(" (history and logs kept in {k})"))
                .unwrap_or_default()
        );
        reports.push(r);
    }
    let path = jepsen_lite::report_dir().join("report.json");
    if let Err(e) = write_json(&path, args.seed, &reports) {
        eprintln!("could not write {}: {e}", path.display());
    }
    let html = jepsen_lite::report_dir().join("report.html");
    if let Err(e) = std::fs::write(
        &html,
        jepsen_lite::scenario::html::page(&reports, args.seed),
    ) {
        eprintln!("could not write {}: {e}", html.display());
    }
    println!(
        "\n{}\nseed {}; {:.0}s in all; report: {} and {}",
        table(&reports),
        args.seed,
        started.elapsed().as_secs_f64(),
        path.display(),
        html.display()
    );
    if !reports.iter().all(ScenarioReport::passed) {
        std::process::exit(1);
    }
}
