#!/usr/bin/env bash
# Builds every cargo-fuzz target in fuzz/ and runs each for SECONDS (default 60), two at a time,
# then prints per target: executions, coverage (cov/ft of libFuzzer's last status line) and
# crashes. Exits non-zero if any target crashed, leaked, timed out or ran out of memory.
#
#   scripts/fuzz.sh [SECONDS]        all targets
#   FUZZ_TARGETS="ciphertext grpc_message" scripts/fuzz.sh 600
#
# Seeds are read from fuzz/corpus/<target>/ (committed); what a run discovers goes to
# fuzz/target/corpus/<target>/ and crashing inputs to fuzz/artifacts/<target>/ (both ignored by
# git). A crash is reproduced with `fuzz/target/<triple>/release/<target> <artifact>`.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
parallel=${FUZZ_PARALLEL:-2}
[[ $seconds =~ ^[0-9]+$ ]] || { echo "usage: $0 [SECONDS]" >&2; exit 2; }

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

# cargo-fuzz passes -Z flags (the sanitizer) to rustc, which only nightly accepts; this machine
# has the stable toolchain, so the fuzz build alone is allowed them. FUZZ_BUILD_FLAGS picks
# another build (the CI smoke uses `--dev --sanitizer none`, which builds in half the time).
read -ra build_flags <<<"${FUZZ_BUILD_FLAGS:-}"
RUSTC_BOOTSTRAP=1 cargo fuzz build --fuzz-dir fuzz "${build_flags[@]}"

triple=$(rustc -vV | sed -n 's/^host: //p')
profile=release
[[ " ${build_flags[*]} " =~ " "(--dev|-D)" " ]] && profile=debug
# cargo fuzz builds into CARGO_TARGET_DIR when it is set (a shared target dir), else fuzz/target.
bin_dir=${CARGO_TARGET_DIR:-fuzz/target}/$triple/$profile
targets=${FUZZ_TARGETS:-$(cargo fuzz list --fuzz-dir fuzz)}
logs=fuzz/target/logs
mkdir -p "$logs"

run_target() {
  local target=$1 seconds=$2 bin_dir=$3 logs=$4
  local corpus=fuzz/target/corpus/$target artifacts=fuzz/artifacts/$target
  mkdir -p "$corpus" "$artifacts" "fuzz/corpus/$target"
  # -timeout: one input may take 10 s at most; -rss_limit_mb: a decode must not balloon.
  "$bin_dir/$target" "$corpus" "fuzz/corpus/$target" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" >"$logs/$target.log" 2>&1
  echo $? >"$logs/$target.rc"
}
export -f run_target

rm -f "$logs"/*.rc
touch "$logs/.started"
printf '%s\n' $targets | xargs -P "$parallel" -I{} bash -c 'run_target "$@"' _ {} "$seconds" "$bin_dir" "$logs"

failed=0
printf '%-16s %12s %8s %8s %8s  %s\n' target execs cov ft crashes result
for target in $targets; do
  log=$logs/$target.log
  rc=$(cat "$logs/$target.rc" 2>/dev/null || echo 1)
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
  status=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$status")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$status")
  crashes=$(find "fuzz/artifacts/$target" -type f -newer "$logs/.started" | wc -l)
  result=ok
  if [[ $rc != 0 ]]; then
    result="FAILED (exit $rc, see $log)"
    failed=1
  fi
  printf '%-16s %12s %8s %8s %8s  %s\n' "$target" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$crashes" "$result"
done
exit $failed
