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
  --self-test  build the planted-bug variant (target/planted) and run the scenarios against
               each planted bug: every one must be caught (target/jepsen-lite/selftest.json)
  --no-build   use the kes-node and kes-cluster binaries already built
  --loopback   run on loopback with the userspace proxy even where namespaces can be made
JEPSEN_LITE_KEEP=1 keeps every scenario's history and logs, not only a failing one's.
As root, every node runs in its own network namespace and faults are iptables rules. Without
root (or with --loopback), nodes run on loopback addresses and faults are applied by a proxy
between them: partitions and loss then cut node-to-node traffic only, and the report says so.";

struct Args {
    self_test: bool,
    timing: Timing,
    seed: u64,
    only: Vec<String>,
    build: bool,
    loopback: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        self_test: false,
        timing: quick(),
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(1),
        only: Vec::new(),
        build: true,
        loopback: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => args.timing = quick(),
            "--full" => {
                // Ten scenarios in about 15 minutes (60 s windows took 27 minutes).
                args.timing = Timing {
                    before: Duration::from_secs(10),
                    fault: Duration::from_secs(40),
                    after: Duration::from_secs(20),
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
            "--loopback" => args.loopback = true,
            "--self-test" => args.self_test = true,
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

/// Runs the chosen scenarios, each on a fresh cluster whose nodes get `node_env`.
async fn run_scenarios(
    net: &Network,
    args: &Args,
    node_env: &[(String, String)],
) -> Vec<ScenarioReport> {
    let mut reports = Vec::new();
    for s in Scenario::ALL {
        if !args.only.is_empty() && !args.only.iter().any(|n| n == s.name()) {
            continue;
        }
        let t = Instant::now();
        println!("{}: running ...", s.name());
        let r = scenario::run(net, s, args.timing, args.seed, node_env).await;
        println!(
            "{}: {} in {:.0}s; faults: {}{}",
            s.name(),
            if r.passed() { "pass" } else { "FAIL" },
            t.elapsed().as_secs_f64(),
            r.fault_names.join("; "),
            r.kept
                .as_ref()
                .map(|k| format!(" (history and logs kept in {k})"))
                .unwrap_or_default()
        );
        reports.push(r);
    }
    reports
}

/// `--self-test`: runs the scenarios against each planted bug of the `planted-bugs` build and
/// writes `selftest.json`; the exit code: 0 when every bug was caught (some scenario counted a
/// violation, a lost key, a bad DEK, a stale authorisation, a double win or two leaders).
async fn self_test(net: &Network, args: &Args) -> i32 {
    match jepsen_lite::build_planted_binaries() {
        Ok(dir) => jepsen_lite::use_node_binaries_from(dir),
        Err(e) => {
            eprintln!("{e}");
            return 2;
        }
    }
    // A longer fault than --quick's: a planted bug that shows only while a partition lasts
    // (serve-past-lease) was caught by one scenario in one CI run with 6 s windows.
    let planted_args = Args {
        timing: Timing {
            fault: Duration::from_secs(12),
            ..args.timing
        },
        only: args.only.clone(),
        ..*args
    };
    let mut bugs = Vec::new();
    for (_, name) in kes_node::planted::Bug::ALL {
        println!("\n== planted bug: {name} ==");
        let env = [("KES_PLANTED_BUG".to_owned(), name.to_owned())];
        let reports = run_scenarios(net, &planted_args, &env).await;
        let caught_by: Vec<&str> = reports
            .iter()
            .filter(|r| r.found_a_fault())
            .map(|r| r.name.as_str())
            .collect();
        println!("{}", table(&reports));
        println!("{name}: caught by {caught_by:?}");
        bugs.push(serde_json::json!({
            "name": name,
            "caught": !caught_by.is_empty(),
            "caught_by": caught_by,
        }));
    }
    let path = jepsen_lite::report_dir().join("selftest.json");
    let json = serde_json::json!({ "seed": args.seed, "bugs": bugs });
    let written = std::fs::create_dir_all(jepsen_lite::report_dir())
        .and_then(|()| std::fs::write(&path, serde_json::to_vec_pretty(&json).unwrap_or_default()));
    if let Err(e) = written {
        eprintln!("could not write {}: {e}", path.display());
    }
    println!(
        "\n{}",
        serde_json::to_string_pretty(&json).unwrap_or_default()
    );
    if bugs.iter().all(|b| b["caught"] == true) {
        0
    } else {
        1
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
    // A fourth host for the node that joins in `membership`.
    let namespaces = match args.loopback {
        true => Err("--loopback was given".to_owned()),
        false => Network::create(4),
    };
    let net = match namespaces.or_else(|why| {
        println!(
            "NOTE: no network namespaces ({why}); falling back to loopback addresses with a \
             userspace proxy between the nodes: partitions and loss cut node-to-node traffic \
             only, clients reach every node (report.json: \"network\": \"loopback-proxy\")"
        );
        Network::loopback(4)
    }) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("jepsen-lite cannot make its network hosts: {e}");
            std::process::exit(2);
        }
    };
    println!("seed {} (replay with --seed {})", args.seed, args.seed);
    if args.self_test {
        let code = self_test(&net, &args).await;
        // `exit` runs no destructors: the namespaces go first.
        drop(net);
        std::process::exit(code);
    }
    let started = Instant::now();
    let reports = run_scenarios(&net, &args, &[]).await;
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
        // `exit` runs no destructors: the namespaces go first.
        drop(net);
        std::process::exit(1);
    }
}
