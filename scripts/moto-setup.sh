#!/usr/bin/env bash
# Installs moto's server mode, an AWS emulator, into a Python venv and prints the path of its
# `moto_server` executable. The aws-kms seal tests start it to stand in for AWS KMS.
#
#   usage: scripts/moto-setup.sh DIR        # e.g. target/moto-venv
#
# A venv because Debian's Python refuses system-wide pip installs (PEP 668). Running it again
# reuses a working venv and only prints the path, so tests may call it every time.
set -euo pipefail

dir="${1:?usage: $0 DIR (where the venv goes, e.g. target/moto-venv)}"
# Pinned to one major: moto's KMS error shapes are what the tests assert on.
spec='moto[server]>=5.1,<6'
server="$dir/bin/moto_server"

# A venv whose interpreter or moto import is broken (an interrupted install, a removed Python)
# is rebuilt rather than trusted.
if [ -x "$server" ] && "$dir/bin/python" -c 'import moto.server' >/dev/null 2>&1; then
    echo "$server"
    exit 0
fi

python=${PYTHON:-python3}
command -v "$python" >/dev/null || {
    echo "moto-setup: $python not found; install Python 3 (apt-get install python3-venv)" >&2
    exit 1
}

make_venv() { "$python" -m venv --clear "$dir" >/dev/null; }
if ! make_venv 2>/dev/null; then
    # Debian splits ensurepip into python3-venv; install it when we may, then try once more.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "moto-setup: installing python3-venv" >&2
        apt-get update -qq >/dev/null && apt-get install -y -qq python3-venv >/dev/null
    fi
    make_venv || {
        echo "moto-setup: '$python -m venv $dir' failed; install python3-venv" >&2
        exit 1
    }
fi

"$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$spec" >&2 || {
    echo "moto-setup: pip could not install $spec into $dir (is PyPI reachable?)" >&2
    exit 1
}
[ -x "$server" ] || {
    echo "moto-setup: $server missing after install" >&2
    exit 1
}
echo "$server"
