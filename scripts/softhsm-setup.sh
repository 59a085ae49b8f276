#!/usr/bin/env bash
# Makes a SoftHSM2 token for the `pkcs11` seal: token `kes-cluster`, AES-256 root key `kes-root`.
#
#   KES_HSM_PIN=... scripts/softhsm-setup.sh DIR
#   eval "$(KES_HSM_PIN=... scripts/softhsm-setup.sh DIR | tail -n 1)"
#
# Installs Debian's softhsm2 and opensc (for pkcs11-tool) when missing, writes DIR/softhsm2.conf
# with its tokens under DIR/tokens, initialises the token with KES_HSM_PIN as both the SO and the
# user PIN, and generates the root key inside the token as sensitive and non-extractable, so it
# never exists outside the token. Running it again keeps the token and the key it already has.
# The last line printed is the `export SOFTHSM2_CONF=...` to run before starting kes-node.
set -euo pipefail

TOKEN_LABEL=kes-cluster
KEY_LABEL=kes-root
MODULE=/usr/lib/softhsm/libsofthsm2.so

die() { echo "softhsm-setup: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: KES_HSM_PIN=<pin> $0 DIR"
[ -n "${KES_HSM_PIN:-}" ] || die "KES_HSM_PIN is not set; export the token PIN (4 to 255 characters) first, e.g. KES_HSM_PIN=\$(openssl rand -hex 16)"
# SoftHSM2 refuses PINs outside 4..255 bytes; say so here instead of through a PKCS#11 error code.
[ ${#KES_HSM_PIN} -ge 4 ] && [ ${#KES_HSM_PIN} -le 255 ] || die "KES_HSM_PIN must be 4 to 255 characters long"

if ! command -v softhsm2-util >/dev/null || ! command -v pkcs11-tool >/dev/null || [ ! -e "$MODULE" ]; then
    [ "$(id -u)" -eq 0 ] || die "softhsm2 and opensc are missing; install them as root: apt-get install softhsm2 opensc"
    echo "softhsm-setup: installing softhsm2 and opensc" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq softhsm2 opensc >/dev/null
fi

mkdir -p "$1/tokens"
DIR=$(cd "$1" && pwd)
chmod 700 "$DIR/tokens"
cat > "$DIR/softhsm2.conf" <<CONF
# SoftHSM2 configuration for kes-cluster, written by scripts/softhsm-setup.sh.
directories.tokendir = $DIR/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
CONF
export SOFTHSM2_CONF="$DIR/softhsm2.conf"

# PINs go to the tools on their command line, which other local users could read in `ps`; this
# script is for development and CI tokens, and production HSMs are initialised by their own tools.
p11() { pkcs11-tool --module "$MODULE" --token-label "$TOKEN_LABEL" "$@"; }

if softhsm2-util --show-slots 2>/dev/null | grep -Eq "^[[:space:]]*Label:[[:space:]]+$TOKEN_LABEL[[:space:]]*$"; then
    echo "softhsm-setup: token $TOKEN_LABEL already exists in $DIR/tokens; keeping it" >&2
else
    softhsm2-util --init-token --free --label "$TOKEN_LABEL" \
        --so-pin "$KES_HSM_PIN" --pin "$KES_HSM_PIN" >/dev/null
    echo "softhsm-setup: initialised token $TOKEN_LABEL in $DIR/tokens" >&2
fi

keys=$(p11 --login --pin "$KES_HSM_PIN" --list-objects --type secrkey 2>&1) \
    || die "cannot log in to token $TOKEN_LABEL with KES_HSM_PIN (was it made with another PIN?):
$keys"
if grep -Eq "^[[:space:]]*label:[[:space:]]+$KEY_LABEL[[:space:]]*$" <<<"$keys"; then
    echo "softhsm-setup: key $KEY_LABEL already exists; keeping it" >&2
else
    # Without --extractable pkcs11-tool leaves CKA_EXTRACTABLE to SoftHSM2, whose default is
    # false; the check below proves it. --usage-decrypt sets CKA_ENCRYPT and CKA_DECRYPT on a
    # secret key, and --allowed-mechanisms limits the key to the one mechanism kes-node uses.
    out=$(p11 --login --pin "$KES_HSM_PIN" --keygen --key-type AES:32 --label "$KEY_LABEL" \
        --sensitive --private --usage-decrypt --allowed-mechanisms AES-GCM 2>&1) \
        || die "cannot generate the key $KEY_LABEL:
$out"
    echo "softhsm-setup: generated AES-256 key $KEY_LABEL inside the token" >&2
fi

# Refuse to hand out a token whose root key could be read out of it.
attrs=$(p11 --login --pin "$KES_HSM_PIN" --list-objects --type secrkey --label "$KEY_LABEL" 2>/dev/null)
grep -Eq "Access:.*\bnever extractable\b" <<<"$attrs" || die "key $KEY_LABEL is not marked never-extractable:
$attrs"
grep -Eq "Access:.*\bsensitive\b" <<<"$attrs" || die "key $KEY_LABEL is not sensitive:
$attrs"
grep -Eq "Usage:.*\bencrypt\b.*\bdecrypt\b" <<<"$attrs" || die "key $KEY_LABEL cannot encrypt and decrypt:
$attrs"

echo "export SOFTHSM2_CONF=$DIR/softhsm2.conf"
