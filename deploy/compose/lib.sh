# Shared by scripts/compose-up.sh and scripts/compose-test.sh; sourced, never run.
# shellcheck shell=bash

# The settings below are read by the scripts that source this file.
# shellcheck disable=SC2034
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
COMPOSE_DIR="$ROOT/deploy/compose"
GEN="$COMPOSE_DIR/generated"
# The binaries that go into the node image: release builds, unless KES_BIN_DIR names others
# (CI uses the debug builds its tests just made, to stay within its time budget).
BIN_DIR="${KES_BIN_DIR:-$ROOT/target/release}"
KES_CLUSTER="$BIN_DIR/kes-cluster"
KES_NODE="$BIN_DIR/kes-node"
PROJECT="kes-testbed" # as .env names it
NODE_IMAGE="kes-cluster-node:testbed"
PROMETHEUS_IMAGE="kes-cluster-prometheus:testbed"
NODES=(node1 node2 node3)
# Host port of each node, in the order of NODES.
NODE_PORTS=(7373 7374 7375)
PROMETHEUS_URL="http://127.0.0.1:9090"

info() { printf '%s\n' "$*" >&2; }
step() { printf '\n==> %s\n' "$*" >&2; }
die() {
    printf 'Error: %s\n' "$*" >&2
    exit 1
}

# Fails with a hint unless command $1 exists.
need() {
    command -v "$1" >/dev/null 2>&1 || die "$1 is not installed${2:+: $2}"
}

# docker-compose v1 or the `docker compose` plugin, run in deploy/compose (where .env names
# the project kes-testbed).
compose() {
    if [[ -z "${COMPOSE_BIN:-}" ]]; then
        if docker compose version >/dev/null 2>&1; then
            COMPOSE_BIN="docker compose"
        elif command -v docker-compose >/dev/null 2>&1; then
            COMPOSE_BIN="docker-compose"
        else
            die "neither 'docker compose' nor docker-compose is installed (apt-get install docker-compose)"
        fi
    fi
    # Word splitting of COMPOSE_BIN is intended: "docker compose" is two words.
    # shellcheck disable=SC2086
    (cd "$COMPOSE_DIR" && $COMPOSE_BIN "$@")
}

# Our CLI as identity $1 of generated/ (admin, prometheus), deaf to KES_* variables a user
# may have exported for some other server. With KES_TIMEOUT set, it gives up after that many
# seconds.
kes_as() {
    local name=$1 limit=()
    shift
    [[ -n "${KES_TIMEOUT:-}" ]] && limit=(timeout "$KES_TIMEOUT")
    "${limit[@]}" env -u KES_SERVER -u KES_CLIENT_CERT -u KES_CLIENT_KEY -u KES_CA -u KES_ENCLAVE \
        -u MINIO_KES_SERVER -u MINIO_KMS_KES_ENDPOINT \
        "$KES_CLUSTER" --ca "$GEN/ca.crt" --cert "$GEN/$name.crt" --key "$GEN/$name.key" "$@"
}

# Our CLI as the testbed's admin.
kes() {
    kes_as admin "$@"
}

# `kes-cluster health` against a node's host port, without a client certificate.
node_health() {
    env -u KES_CLIENT_CERT -u KES_CLIENT_KEY -u KES_CA \
        "$KES_CLUSTER" health --server "https://127.0.0.1:$1" --ca "$GEN/ca.crt" --timeout 3
}

# The host port of node $1 (node1 -> 7373).
port_of() {
    local i
    for i in "${!NODES[@]}"; do
        [[ "${NODES[$i]}" == "$1" ]] && { echo "${NODE_PORTS[$i]}"; return 0; }
    done
    die "unknown node $1"
}

# Waits up to $1 seconds until every node named after it answers /v1/ready with 200.
# On a timeout it shows why and the end of each waiting node's log, and fails.
wait_ready() {
    local timeout=$1 started=$SECONDS node
    shift
    local waiting=("$@")
    declare -A why=()
    while ((${#waiting[@]} > 0)); do
        local still=()
        for node in "${waiting[@]}"; do
            local out
            if out=$(node_health "$(port_of "$node")" 2>&1); then
                info "  $node is ready after $((SECONDS - started))s"
            else
                why[$node]=$out
                still+=("$node")
            fi
        done
        waiting=("${still[@]+"${still[@]}"}")
        ((${#waiting[@]} == 0)) && return 0
        if ((SECONDS - started >= timeout)); then
            for node in "${waiting[@]}"; do
                info "$node is not ready after ${timeout}s: ${why[$node]}"
                info "--- the end of $node's log ---"
                compose logs --no-color --tail=25 "$node" >&2 || true
            done
            return 1
        fi
        sleep 1
    done
}

# How many of Prometheus' kes targets are up, and how many are down: "UP DOWN".
prometheus_targets() {
    local json
    json=$(curl -fsS --max-time 5 "$PROMETHEUS_URL/api/v1/targets?state=active") || return 1
    jq -r '[.data.activeTargets[] | select(.labels.job == "kes") | .health]
           | "\(map(select(. == "up")) | length) \(map(select(. != "up")) | length)"' <<<"$json"
}
