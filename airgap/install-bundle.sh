#!/bin/sh
# Installs skiff on an air-gapped machine from a bundle of airgap/make-bundle.sh, run
# as root from the bundle directory (or by its path):
#
#   sh install-bundle.sh                                  # a server
#   sh install-bundle.sh --tls-san edge-1                 # flags go to install.sh
#   SKIFF_URL=https://SERVER:6443 SKIFF_TOKEN=… sh install-bundle.sh    # an agent
#
# 1. checks the bundle against its sha256sums and this machine's architecture;
# 2. copies the image archives into <data-dir>/agent/images/ (--data-dir among the
#    arguments, else /var/lib/skiff), where skiff imports them when it starts;
# 3. installs the binary as <bin dir>/skiff (INSTALL_SKIFF_BIN_DIR, else
#    /usr/local/bin, /opt/bin where that is read-only, as install.sh decides);
# 4. runs the bundle's install.sh with INSTALL_SKIFF_SKIP_DOWNLOAD=true and the
#    arguments, which writes the service and starts it.
# Files already in place and unchanged are left alone (an unchanged archive is not
# imported again). Every INSTALL_SKIFF_* and SKIFF_* variable goes on to install.sh.
set -eu

info() { echo "[INFO]  $*"; }
fatal() {
    echo "[ERROR] $*" >&2
    exit 1
}

# The release name of this machine's architecture (as install.sh names it).
host_arch() {
    case "$(uname -m)" in
        x86_64 | amd64) echo amd64 ;;
        aarch64 | arm64) echo arm64 ;;
        armv7l | armv7* | arm) echo armhf ;;
        *) echo "unknown ($(uname -m))" ;;
    esac
}

# The --data-dir (-d) of the arguments, else /var/lib/skiff.
data_dir() {
    dir=/var/lib/skiff
    while [ $# -gt 0 ]; do
        case "$1" in
            --data-dir=*) dir=${1#*=} ;;
            --data-dir | -d) [ $# -gt 1 ] && dir=$2 && shift ;;
        esac
        shift
    done
    echo "${dir%/}"
}

# As install.sh: INSTALL_SKIFF_BIN_DIR, else /usr/local/bin unless it is read-only.
bin_dir() {
    if [ -n "${INSTALL_SKIFF_BIN_DIR:-}" ]; then
        echo "$INSTALL_SKIFF_BIN_DIR"
    elif touch /usr/local/bin/.skiff-ro-test 2>/dev/null; then
        rm -f /usr/local/bin/.skiff-ro-test
        echo /usr/local/bin
    else
        echo /opt/bin
    fi
}

# Copies $1 to $2 (through a hidden temporary file beside it, so nothing ever sees
# half a file) with mode $3, unless $2 has the same bytes already.
put() {
    if [ -f "$2" ] && cmp -s "$1" "$2"; then
        info "$2 is up to date"
        return
    fi
    tmp=$(dirname "$2")/.$(basename "$2").tmp
    cp "$1" "$tmp"
    chmod "$3" "$tmp"
    mv -f "$tmp" "$2"
    info "installed $2"
}

BUNDLE=$(cd "$(dirname "$0")" && pwd)
[ "$(id -u)" -eq 0 ] || fatal "run install-bundle.sh as root"
[ -f "$BUNDLE/sha256sums" ] || fatal "$BUNDLE/sha256sums is missing: not a bundle of make-bundle.sh"
(cd "$BUNDLE" && sha256sum -c sha256sums >/dev/null 2>&1) ||
    fatal "the bundle in $BUNDLE is damaged: $(cd "$BUNDLE" && sha256sum -c sha256sums 2>&1 | grep -v ': OK$' | head -n 3 | tr '\n' ' ')"
ARCH=$(cat "$BUNDLE/arch")
[ "$ARCH" = "$(host_arch)" ] ||
    fatal "the bundle is for $ARCH, this machine is $(host_arch): make one with make-bundle.sh -a $(host_arch)"

IMAGES=$(data_dir "$@")/agent/images
mkdir -p "$IMAGES"
for archive in "$BUNDLE"/images/*; do
    [ -f "$archive" ] || continue
    put "$archive" "$IMAGES/$(basename "$archive")" 0644
done

BIN_DIR=$(bin_dir)
mkdir -p "$BIN_DIR"
put "$BUNDLE/skiff" "$BIN_DIR/skiff" 0755

INSTALL_SKIFF_SKIP_DOWNLOAD=true
INSTALL_SKIFF_BIN_DIR=$BIN_DIR
export INSTALL_SKIFF_SKIP_DOWNLOAD INSTALL_SKIFF_BIN_DIR
info "running install.sh with INSTALL_SKIFF_SKIP_DOWNLOAD=true"
exec sh "$BUNDLE/install.sh" "$@"
