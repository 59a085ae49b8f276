#!/usr/bin/env bash
# Brings up the three-node docker-compose testbed (deploy/compose) with one command:
#   1. cargo build --release --workspace
#   2. builds two local images FROM scratch (kes-node + kes-cluster; Debian's prometheus),
#      each holding the binaries and exactly the libraries ldd lists for them
#   3. writes deploy/compose/generated/ with `kes-cluster scaffold` (CA, node certificates,
#      admin and Prometheus identities, root key, node.yaml per node); existing files are kept
#   4. docker-compose up -d, waits until every node answers /v1/ready
#   5. gives the Prometheus identity a policy that allows /v1/metrics only
#   6. prints the export line for the admin (stdout) and the Prometheus URL
#
# SKIP_CARGO_BUILD=1 skips step 1 and uses target/release as it is; KES_BIN_DIR=DIR takes the
# binaries from DIR instead (and skips step 1 too).
# stdout carries only shell lines, so `eval "$(scripts/compose-up.sh)"` sets up a shell;
# progress goes to stderr. Nothing is pulled: no registry is needed.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=../deploy/compose/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../deploy/compose/lib.sh"

READY_TIMEOUT=${READY_TIMEOUT:-120}

need docker "see https://docs.docker.com/engine/install/"
need cargo "install Rust from https://rustup.rs"
need ldd
docker info >/dev/null 2>&1 || die "cannot talk to the Docker daemon (is it running, and may this user use it?)"
compose version >/dev/null

if [[ -n "${KES_BIN_DIR:-}" ]]; then
    step "Using the binaries in $BIN_DIR (KES_BIN_DIR)"
elif [[ "${SKIP_CARGO_BUILD:-0}" == 1 ]]; then
    step "Using the release binaries in target/release as they are (SKIP_CARGO_BUILD=1)"
else
    step "Building the release binaries"
    (cd "$ROOT" && cargo build --release --workspace) || die "cargo build --release --workspace failed (see above)"
fi
[[ -x "$KES_NODE" && -x "$KES_CLUSTER" ]] || die "$KES_NODE and $KES_CLUSTER are missing: build them (cargo build --release --workspace)"

# Debian's prometheus package, installed with apt-get when the binary is missing. The package
# would also start a host service on :9090, which would take the testbed's port: a service
# this script installed is stopped and disabled again (we only want the binary).
ensure_prometheus() {
    [[ -x /usr/bin/prometheus ]] && return 0
    command -v apt-get >/dev/null 2>&1 ||
        die "/usr/bin/prometheus is missing and apt-get is not available: install Debian's or Ubuntu's prometheus package"
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "installing prometheus needs root: run 'apt-get install prometheus' as root first"
        sudo=(sudo)
    fi
    step "Installing Debian's prometheus package (apt-get)"
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >&2; then
        "${sudo[@]}" apt-get update -q >&2
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >&2 ||
            die "apt-get could not install prometheus"
    fi
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
        info "Stopping the host prometheus service the package started (it would hold port 9090)."
        "${sudo[@]}" systemctl disable --now prometheus >&2 || true
    fi
    [[ -x /usr/bin/prometheus ]] || die "apt-get installed prometheus, but /usr/bin/prometheus is missing"
}

# Copies executable $2 to $1/rootfs$3, and every library ldd lists for it to the same path
# under $1/rootfs (the dynamic loader included), resolving symlinks.
stage_binary() {
    local context=$1 source=$2 target=$3 line lib
    install -D -m 0755 "$source" "$context/rootfs$target"
    local libs
    libs=$(ldd "$source" 2>&1) || {
        grep -q "not a dynamic executable" <<<"$libs" && return 0
        die "ldd $source failed: $libs"
    }
    grep -q "not found" <<<"$libs" && die "ldd $source: a library is missing:"$'\n'"$libs"
    while read -r line; do
        # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        if [[ $line =~ =\>\ (/[^ ]+) ]]; then
            lib=${BASH_REMATCH[1]}
        elif [[ $line =~ ^(/[^ ]+) ]]; then
            lib=${BASH_REMATCH[1]}
        else
            continue # linux-vdso.so.1 lives in the kernel
        fi
        mkdir -p "$context/rootfs$(dirname "$lib")"
        cp -L "$lib" "$context/rootfs$lib"
    done <<<"$libs"
}

# Image ids this run replaced, removed once the containers run the new ones.
REPLACED_IMAGES=()

build_image() {
    local tag=$1 dockerfile=$2 context=$3 old new
    old=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
    info "  docker build -t $tag ($(du -sh "$context/rootfs" | cut -f1) staged)"
    # The classic builder and BuildKit both work: FROM scratch pulls nothing, and there is no
    # `# syntax=` line that would make BuildKit fetch a frontend.
    docker build --quiet --tag "$tag" --file "$dockerfile" "$context" >/dev/null ||
        die "docker build of $tag failed"
    new=$(docker image inspect --format '{{.Id}}' "$tag")
    [[ -n "$old" && "$old" != "$new" ]] && REPLACED_IMAGES+=("$old")
    return 0
}

ensure_prometheus

step "Building the images (FROM scratch)"
IMAGES="$GEN/images"
rm -rf "$IMAGES"
mkdir -p "$GEN" && chmod 700 "$GEN"
stage_binary "$IMAGES/node" "$KES_NODE" /usr/local/bin/kes-node
stage_binary "$IMAGES/node" "$KES_CLUSTER" /usr/local/bin/kes-cluster
mkdir -p "$IMAGES/node/rootfs/var/lib/kes" "$IMAGES/node/rootfs/etc/kes"
install -d -m 1777 "$IMAGES/node/rootfs/tmp"
build_image "$NODE_IMAGE" "$COMPOSE_DIR/node.Dockerfile" "$IMAGES/node"

stage_binary "$IMAGES/prometheus" /usr/bin/prometheus /usr/bin/prometheus
mkdir -p "$IMAGES/prometheus/rootfs/usr/share/prometheus" "$IMAGES/prometheus/rootfs/prometheus" \
    "$IMAGES/prometheus/rootfs/etc/prometheus"
if [[ -d /usr/share/prometheus/web ]]; then
    # The Debian package's web UI (served under /classic) links into /usr/share/javascript:
    # copy what the links name (tar -h), except moment-timezone's 200 MB of raw zone data,
    # which the UI never loads (it uses moment-timezone-with-data.min.js).
    tar -C /usr/share/prometheus -chf - --exclude='web/static/moment-timezone/data' web |
        tar -C "$IMAGES/prometheus/rootfs/usr/share/prometheus" -xf -
fi
install -d -m 1777 "$IMAGES/prometheus/rootfs/tmp"
build_image "$PROMETHEUS_IMAGE" "$COMPOSE_DIR/prometheus.Dockerfile" "$IMAGES/prometheus"
docker image ls --format '  {{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E 'kes-cluster-(node|prometheus):testbed' >&2 || true

step "Writing certificates, keys and node configs to ${GEN#"$ROOT"/}"
hosts=$(IFS=,; echo "${NODES[*]}")
"$KES_CLUSTER" scaffold --dir "$GEN" --host "$hosts" --identity prometheus --public-ready \
    --config-dir /etc/kes --san localhost,127.0.0.1 >/dev/null

step "Starting the containers"
# Ports are checked only when none of the testbed's containers run: a second `compose-up.sh`
# updates a running testbed in place.
if [[ -z "$(docker ps -q --filter "label=com.docker.compose.project=$PROJECT")" ]]; then
    for port in "${NODE_PORTS[@]}" 9090; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            die "127.0.0.1:$port is taken by another program; the testbed publishes 7373-7375 and 9090 there (a host prometheus service? 'systemctl disable --now prometheus')"
        fi
    done
fi
compose up -d --remove-orphans >&2
if ((${#REPLACED_IMAGES[@]} > 0)); then
    # The previous build of an image, now unused (an image still in use is kept).
    docker image rm "${REPLACED_IMAGES[@]}" >/dev/null 2>&1 || true
fi

step "Waiting until every node is ready (up to ${READY_TIMEOUT}s)"
wait_ready "$READY_TIMEOUT" "${NODES[@]}" || die "the testbed did not become ready; 'cd deploy/compose && docker-compose logs' shows more"

step "Letting Prometheus read /v1/metrics (and nothing else)"
prometheus_identity=$("$KES_CLUSTER" identity of "$GEN/prometheus.crt")
attempt=0
until kes --server https://127.0.0.1:7373 policy create prometheus "$COMPOSE_DIR/prometheus-policy.json" &&
    kes --server https://127.0.0.1:7373 policy assign prometheus "$prometheus_identity"; do
    attempt=$((attempt + 1))
    ((attempt < 5)) || die "cannot create the prometheus policy through node1"
    sleep 2
done
info "  policy prometheus (allow /v1/metrics) assigned to $prometheus_identity"

step "The testbed is up"
export_line=$(printf 'export KES_SERVER=https://127.0.0.1:7373 KES_CLIENT_CERT=%q KES_CLIENT_KEY=%q KES_CA=%q' \
    "$GEN/admin.crt" "$GEN/admin.key" "$GEN/ca.crt")
info "Nodes:      node1 https://127.0.0.1:7373, node2 :7374, node3 :7375 (only on 127.0.0.1)"
info "Prometheus: $PROMETHEUS_URL/classic/targets (the API: $PROMETHEUS_URL/api/v1/targets)"
info "As the admin, in this shell:"
printf '%s\n' "$export_line"
printf '# Prometheus: %s/classic/targets\n' "$PROMETHEUS_URL"
info "Then: $KES_CLUSTER status    Stop: (cd deploy/compose && docker-compose down -v)"
