#!/usr/bin/env bash
# Every benchmark side by side with its baseline, in one go; writes BENCHMARKS.md and
# docs/bench/*.svg. Installs what it needs: nginx, etcd (Debian), oha (crates).
set -euo pipefail
cd "$(dirname "$0")/.."
need_apt=()
command -v nginx >/dev/null || need_apt+=(nginx)
command -v etcd >/dev/null || need_apt+=(etcd-server)
command -v etcdctl >/dev/null || need_apt+=(etcd-client)
command -v openssl >/dev/null || need_apt+=(openssl)
if ((${#need_apt[@]})); then
  apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
fi
command -v oha >/dev/null || cargo install oha --locked --quiet
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release -p kes-node -p kes-cluster -p jepsen-lite --bins
exec python3 scripts/bench.py "$@"
