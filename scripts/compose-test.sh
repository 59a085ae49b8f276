#!/usr/bin/env bash
# End-to-end test of the docker-compose testbed (deploy/compose), about two minutes:
#   - brings it up from empty volumes with scripts/compose-up.sh
#   - a key created through node2 decrypts through node3
#   - the Prometheus identity may read /v1/metrics and nothing else; Prometheus sees 3/3 up
#   - kills the leader's container (SIGKILL); a write through a survivor succeeds within 10 s
#   - Prometheus shows 2/3 targets up; after a restart the node catches up, and 3/3 again
#   - tears everything down (docker-compose down -v)
# The last line is "N passed, M failed"; the exit status is 0 only when nothing failed.
# KEEP_TESTBED=1 leaves the testbed running afterwards, for a look around.
# All traffic stays on 127.0.0.1 and inside the testbed's own docker network.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../deploy/compose/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../deploy/compose/lib.sh"

FAILOVER_BUDGET=10 # seconds from the kill to a committed write through a survivor

need jq "apt-get install jq"
need curl "apt-get install curl"
need timeout "it is part of coreutils"

passed=0
failed=0
started=$SECONDS

pass() {
    passed=$((passed + 1))
    printf 'PASS  %s\n' "$*"
}
fail() {
    failed=$((failed + 1))
    printf 'FAIL  %s\n' "$*"
}

finish() {
    local status=$?
    # An abort (a failed `set -e` command or `die`) is a failure too.
    if ((status != 0 && failed == 0)); then
        fail "the test stopped early (exit status $status); see the messages above"
    fi
    if [[ "${KEEP_TESTBED:-0}" == 1 ]]; then
        info "KEEP_TESTBED=1: the testbed keeps running; stop it with (cd deploy/compose && docker-compose down -v)"
    else
        step "Tearing down (docker-compose down -v)"
        if compose down -v --remove-orphans >&2 && [[ -z "$(docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT")" ]]; then
            pass "docker-compose down -v removed the containers and volumes"
        else
            fail "docker-compose down -v left something behind (docker ps -a; docker volume ls)"
        fi
    fi
    info "took $((SECONDS - started))s"
    echo "$passed passed, $failed failed"
    ((failed == 0))
}
trap finish EXIT

# Waits up to $1 seconds for Prometheus to report "$2" (UP DOWN) for the kes job; prints
# what it saw last.
wait_targets() {
    local timeout=$1 want=$2 since=$SECONDS seen=""
    while ((SECONDS - since < timeout)); do
        seen=$(prometheus_targets 2>/dev/null || echo "unreachable")
        [[ "$seen" == "$want" ]] && { echo "$seen"; return 0; }
        sleep 1
    done
    echo "$seen"
    return 1
}

# Milliseconds since the epoch.
now_ms() {
    local t=${EPOCHREALTIME/[.,]/}
    echo $((t / 1000))
}

step "Starting from empty volumes"
compose down -v --remove-orphans >/dev/null 2>&1 || true
if "$(dirname "${BASH_SOURCE[0]}")/compose-up.sh" >/dev/null; then
    pass "scripts/compose-up.sh brought up three ready nodes and Prometheus"
else
    fail "scripts/compose-up.sh failed"
    exit 1
fi

step "Replication"
status=$(kes --server https://127.0.0.1:7373 status --json)
leaders=$(jq '[.nodes[] | select(.role == "leader")] | length' <<<"$status")
voters=$(jq '[.nodes[] | select(.role == "leader" or .role == "follower")] | length' <<<"$status")
if [[ "$leaders" == 1 && "$voters" == 3 ]]; then
    pass "one leader and three voters"
else
    fail "expected one leader and three voters, got: $(kes --server https://127.0.0.1:7373 status 2>&1)"
fi

plaintext=$(printf 'hello from node2' | base64)
if kes --server https://127.0.0.1:7374 key create testbed-key &&
    ciphertext=$(kes --server https://127.0.0.1:7374 key encrypt testbed-key 'hello from node2') &&
    decrypted=$(kes --server https://127.0.0.1:7375 key decrypt testbed-key "$ciphertext") &&
    [[ "$decrypted" == "$plaintext" ]]; then
    pass "a key created through node2 decrypts through node3"
else
    fail "a key created through node2 did not decrypt through node3 (got '${decrypted:-}')"
fi

step "Prometheus"
if kes_as prometheus --server https://127.0.0.1:7375 metric | grep -q '^kes_'; then
    if out=$(kes_as prometheus --server https://127.0.0.1:7375 key create not-allowed 2>&1); then
        fail "the Prometheus identity could create a key"
    elif grep -qi "not authorized\|insufficient permissions\|prohibited" <<<"$out"; then
        pass "the Prometheus identity reads /v1/metrics and is refused a key ($out)"
    else
        fail "creating a key as Prometheus failed, but not with a refusal: $out"
    fi
else
    fail "the Prometheus identity cannot read /v1/metrics"
fi
if seen=$(wait_targets 30 "3 0"); then
    pass "Prometheus shows 3/3 targets up"
else
    fail "Prometheus should show 3/3 targets up; up/down: $seen"
fi

step "Failover"
leader_address=$(kes --server https://127.0.0.1:7373 status --json |
    jq -r '.nodes[] | select(.role == "leader") | .address')
leader=${leader_address#https://}
leader=${leader%%:*}
survivors=()
for node in "${NODES[@]}"; do
    [[ "$node" != "$leader" ]] && survivors+=("$node")
done
[[ ${#survivors[@]} == 2 ]] || die "cannot tell the leader from the status (leader address '$leader_address')"
info "The leader is $leader; killing its container (SIGKILL)."
compose kill "$leader" >&2
killed_at=$(now_ms)
written=""
attempt=0
while :; do
    remaining=$((killed_at + FAILOVER_BUDGET * 1000 - $(now_ms)))
    ((remaining > 0)) || break
    node=${survivors[$((attempt % 2))]}
    attempt=$((attempt + 1))
    # A try may hang on the way to the dead leader: give each one at most 5 s, and never
    # more than what is left of the budget.
    try_secs=$(((remaining + 999) / 1000))
    ((try_secs > 5)) && try_secs=5
    if KES_TIMEOUT=$try_secs \
        kes --server "https://127.0.0.1:$(port_of "$node")" key create "failover-$attempt" >/dev/null 2>&1; then
        written="failover-$attempt through $node"
        break
    fi
    sleep 0.2
done
elapsed=$(($(now_ms) - killed_at))
if [[ -n "$written" ]] && ((elapsed <= FAILOVER_BUDGET * 1000)); then
    pass "with $leader killed, a write ($written) committed after ${elapsed} ms"
else
    fail "no write through ${survivors[*]} committed within ${FAILOVER_BUDGET}s of killing $leader ($attempt tries)"
fi
survivor_port=$(port_of "${survivors[0]}")
new_leader=$(kes --server "https://127.0.0.1:$survivor_port" status --json 2>/dev/null |
    jq -r '.nodes[] | select(.role == "leader") | .address' || true)
if [[ -n "$new_leader" && "$new_leader" != "$leader_address" ]]; then
    pass "the survivors elected a new leader ($new_leader)"
else
    fail "no new leader among the survivors (status says '${new_leader:-none}')"
fi
# Right after an election a node may answer 503 until it has confirmed its lease; clients
# retry, and so does this check (for up to 5 s).
read_from=$(now_ms)
decrypted=""
until decrypted=$(KES_TIMEOUT=2 kes --server "https://127.0.0.1:$survivor_port" key decrypt testbed-key "$ciphertext" 2>&1) ||
    (($(now_ms) - read_from > 5000)); do
    sleep 0.2
done
if [[ "$decrypted" == "$plaintext" ]]; then
    pass "the key made before the failover still decrypts through ${survivors[0]} (after $(($(now_ms) - read_from)) ms)"
else
    fail "the key made before the failover does not decrypt through ${survivors[0]}: $decrypted"
fi
if seen=$(wait_targets 30 "2 1"); then
    pass "Prometheus shows 2/3 targets up"
else
    fail "Prometheus should show 2/3 targets up; up/down: $seen"
fi

step "Restarting $leader"
compose start "$leader" >&2
if wait_ready 90 "$leader" &&
    kes --server "https://127.0.0.1:$(port_of "$leader")" key info "${written%% *}" >/dev/null; then
    pass "$leader is ready again and serves the write made while it was down"
else
    fail "$leader did not come back with the write made while it was down"
fi
if seen=$(wait_targets 30 "3 0"); then
    pass "Prometheus shows 3/3 targets up again"
else
    fail "Prometheus should show 3/3 targets up after the restart; up/down: $seen"
fi
