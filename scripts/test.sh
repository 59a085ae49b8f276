#!/usr/bin/env bash
# The project's test command: format, lints, then every test with real processes, TLS and sled.
set -euo pipefail
cd "$(dirname "$0")/.."
{ command -v openssl && command -v softhsm2-util && command -v pkcs11-tool && command -v strace && command -v ip && command -v iptables && test -e /usr/share/doc/faketime; } >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl softhsm2 opensc strace iproute2 iptables faketime; }
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
# The alert rules, against made-up series (deploy/prometheus/alerts_test.yml).
command -v promtool >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus; }
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts_test.yml
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace
# The fault scenarios, briefly (README, "Fault injection"): real nodes, each in its own network
# namespace, so this needs root. The binaries are the ones the tests just built.
cargo run -q -p jepsen-lite -- --quick --no-build
# Every fuzz target for a few seconds, after the tests pass, so none can rot (scripts/fuzz.sh).
# An unoptimised build without AddressSanitizer: it builds in half the time, and long runs
# (`scripts/fuzz.sh 600`) use the full build.
FUZZ_BUILD_FLAGS="--dev --sanitizer none" scripts/fuzz.sh "${FUZZ_SMOKE_SECONDS:-5}"
