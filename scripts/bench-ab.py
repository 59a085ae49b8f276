#!/usr/bin/env python3
"""Two builds of kes-node side by side: replicated creates on two 3-node clusters, grown together.

    scripts/bench-ab.py BEFORE_KES_NODE AFTER_KES_NODE [--rounds 8] [--conns 16,64]

Each build runs its own `kes-cluster dev` (the kes-cluster of target/release). Both take the
same rounds of creates through their leader (oha, BENCH_DURATION each, new keys every time), in
turns, and who goes first alternates from round to round. So both clusters grow alike, and
whatever the machine does meanwhile falls on both: on these shared 2-core machines one build's
rate moved by 30 % between two runs minutes apart, more than most changes are worth, while
rounds a few seconds apart stay comparable (docs/bench/analysis.md, time-ordered request ids).

Besides each round's rate and p99 it prints the CPU the three nodes used per create, read from
/proc before and after the round and divided by the requests answered, which moves less than
the rate. Ends with the means of each build over all rounds and over the second half, where
the clusters are larger.
"""
import argparse
import os
import subprocess
import tempfile

import bench


def cpu_seconds(pids):
    """User and system CPU time of the processes `pids` so far."""
    ticks = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before", help="the kes-node binary to compare against")
    p.add_argument("after", help="the kes-node binary with the change")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--conns", default="16,64", help="connection counts, each taken every round")
    args = p.parse_args()
    conns_list = [int(c) for c in args.conns.split(",")]
    builds = {"before": os.path.realpath(args.before), "after": os.path.realpath(args.after)}
    work = tempfile.mkdtemp(prefix="kes-bench-ab-")
    clusters = {}
    try:
        for name, binary in builds.items():
            _, leader, cert, key = bench.dev_cluster(3, work, kes_node=binary, name=name)
            pids = subprocess.run(["pgrep", "-f", "--", f"--config {work}/{name}/"],
                                  capture_output=True, text=True).stdout.split()
            clusters[name] = (leader.replace("127.0.0.1", "localhost"), cert, key, pids)
        rounds = {name: {conns: [] for conns in conns_list} for name in builds}
        for i in range(args.rounds):
            for conns in conns_list:
                for name in ("before", "after") if i % 2 == 0 else ("after", "before"):
                    leader, cert, key, pids = clusters[name]
                    used = cpu_seconds(pids)
                    r = bench.oha(f"{leader}/v1/key/create/c{conns}r{i}[a-z0-9]{{20}}", conns, cert, key, "PUT",
                                  extra=["--rand-regex-url"])
                    answered = sum(r["codes"].values())
                    r["cpu_us"] = 1e6 * (cpu_seconds(pids) - used) / max(answered, 1)
                    rounds[name][conns].append(r)
                    print(f"round {i}, {conns} conns, {name}: {r['rate']:.0f} creates/s, p99 {r['p99']:.1f} ms, "
                          f"{r['cpu_us']:.0f} µs of CPU per create, {r['errors']} errors", flush=True)
        for conns in conns_list:
            for name in builds:
                rs = rounds[name][conns]
                late = rs[len(rs) // 2:]

                def mean(runs, q):
                    return sum(r[q] for r in runs) / len(runs)
                print(f"{conns} conns, {name}: {mean(rs, 'rate'):.0f} creates/s and {mean(rs, 'cpu_us'):.0f} µs "
                      f"per create over all rounds; {mean(late, 'rate'):.0f}/s and {mean(late, 'cpu_us'):.0f} µs "
                      "over the second half")
    finally:
        bench.stop_all()


if __name__ == "__main__":
    main()
