#!/usr/bin/env bash
# The project's test command: format, lints, then every test with real processes, TLS and sled.
set -euo pipefail
cd "$(dirname "$0")/.."
{ command -v openssl && command -v softhsm2-util && command -v pkcs11-tool && command -v strace && command -v ip && command -v iptables && test -e /usr/share/doc/faketime; } >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl softhsm2 opensc strace iproute2 iptables faketime; }
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
command -v jq >/dev/null || { apt-get update -qq && apt-get install -y -qq jq; }
# The alert rules, against made-up series (deploy/prometheus/alerts_test.yml).
# (The package may start a host service on :9090, which the compose testbed needs: stopped.)
command -v promtool >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }
if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then systemctl disable --now prometheus || true; fi
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts_test.yml
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace
# The fault scenarios, briefly (README, "Fault injection"): real nodes, each in its own network
# namespace, so this needs root. The binaries are the ones the tests just built.
cargo run -q -p jepsen-lite -- --quick --no-build
# The docker-compose testbed end to end (scripts/compose-test.sh: up, a write and a failover,
# Prometheus, down), with the debug binaries the tests just built, whenever a Docker engine
# answers; bounded to 5 minutes.
if command -v docker >/dev/null && timeout 10 docker info >/dev/null 2>&1; then
    compose_started=$SECONDS
    KES_BIN_DIR="${CARGO_TARGET_DIR:-$PWD/target}/debug" timeout 300 scripts/compose-test.sh
    echo "compose testbed: $((SECONDS - compose_started)) s"
else
    echo "SKIPPED the compose testbed: no Docker engine answers (docker info failed)"
fi
# Every fuzz target for a few seconds, after the tests pass, so none can rot (scripts/fuzz.sh).
# An unoptimised build without AddressSanitizer: it builds in half the time, and long runs
# (`scripts/fuzz.sh 600`) use the full build.
FUZZ_BUILD_FLAGS="--dev --sanitizer none" scripts/fuzz.sh "${FUZZ_SMOKE_SECONDS:-5}"
