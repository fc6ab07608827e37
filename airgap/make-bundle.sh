#!/bin/sh
# Makes an air-gap bundle on a connected machine: a directory holding the skiff
# binary for the site's architecture, install.sh, install-bundle.sh, one archive of
# the images the site runs (`skiff image save`) and sha256sums over all of it. Copy
# the directory to the site and run `sh install-bundle.sh` there (airgap/README.md).
#
#   airgap/make-bundle.sh -a arm64 -o bundle-arm64 nginx:1.27 registry.example/app:1.0
#
# Options:
#   -a ARCH   the site's architecture: amd64, arm64 or armhf [default: this machine's]
#   -d DIR    the release files: skiff-<arch>, sha256sum-<arch>.txt (checked when
#             there) and install.sh (else the repository's) [default: dist]
#   -o DIR    the bundle directory [default: skiff-airgap-<arch>]
#   -r FILE   registries.yaml for the pulls (mirrors, credentials) [default: skiff's,
#             /etc/skiff/registries.yaml, when it exists]
#   -n NAME   the image archive's name: .tar, .tar.gz or .tar.zst
#             [default: images.tar.zst]
#
# The images are pulled and saved by a skiff that runs on this machine: $SKIFF, else
# `skiff` on PATH, else <dist>/skiff-<this machine's arch>. No image is needed for
# skiff itself (no pause image, cluster DNS is built in): list your workloads'.
set -eu

info() { echo "[INFO]  $*"; }
fatal() {
    echo "[ERROR] $*" >&2
    exit 1
}

usage() {
    sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'
    exit "$1"
}

# The release name of this machine's architecture (as install.sh names it).
host_arch() {
    case "$(uname -m)" in
        x86_64 | amd64) echo amd64 ;;
        aarch64 | arm64) echo arm64 ;;
        armv7l | armv7* | arm) echo armhf ;;
        *) fatal "no skiff release for this machine's architecture $(uname -m)" ;;
    esac
}

# The image platform of a release architecture.
platform_of() {
    case "$1" in
        amd64) echo linux/amd64 ;;
        arm64) echo linux/arm64 ;;
        armhf) echo linux/arm/v7 ;;
        *) fatal "unknown architecture '$1' (amd64, arm64 or armhf)" ;;
    esac
}

sha256_of() {
    sha256sum "$1" | awk '{print $1}'
}

# Checks dist/skiff-ARCH against dist/sha256sum-ARCH.txt when that file exists.
check_release_binary() {
    sums=$DIST/sha256sum-$ARCH.txt
    [ -f "$sums" ] || return 0
    expected=$(awk -v f="skiff-$ARCH" '$2 == f || $2 == "*" f {print $1; exit}' "$sums")
    [ -n "$expected" ] || fatal "$sums names no skiff-$ARCH"
    [ "$(sha256_of "$DIST/skiff-$ARCH")" = "$expected" ] ||
        fatal "checksum mismatch for $DIST/skiff-$ARCH (see $sums)"
}

# The skiff that runs here, for `skiff image save`.
find_saver() {
    if [ -n "${SKIFF:-}" ]; then
        echo "$SKIFF"
    elif command -v skiff >/dev/null 2>&1; then
        command -v skiff
    elif [ -x "$DIST/skiff-$(host_arch)" ]; then
        echo "$DIST/skiff-$(host_arch)"
    else
        fatal "no skiff to save images with: set SKIFF, put skiff on PATH or $DIST/skiff-$(host_arch)"
    fi
}

# Copies $1 to $2 through a temporary file beside it, with mode $3.
put() {
    cp "$1" "$2.tmp"
    chmod "$3" "$2.tmp"
    mv -f "$2.tmp" "$2"
}

# sha256sums of every file of the bundle but itself, sorted by name (summed before the
# file is opened, so find never meets it half-written).
write_sums() {
    (
        cd "$OUT"
        sums=$(find . -type f ! -name sha256sums ! -name sha256sums.tmp | sed 's|^\./||' |
            LC_ALL=C sort | while IFS= read -r f; do sha256sum "$f"; done)
        printf '%s\n' "$sums" >sha256sums.tmp
        mv -f sha256sums.tmp sha256sums
    )
}

ARCH=
DIST=dist
OUT=
REGISTRIES=
NAME=images.tar.zst
while getopts a:d:o:r:n:h opt; do
    case "$opt" in
        a) ARCH=$OPTARG ;;
        d) DIST=$OPTARG ;;
        o) OUT=$OPTARG ;;
        r) REGISTRIES=$OPTARG ;;
        n) NAME=$OPTARG ;;
        h) usage 0 ;;
        *) usage 2 >&2 ;;
    esac
done
shift $((OPTIND - 1))

[ -n "$ARCH" ] || ARCH=$(host_arch)
PLATFORM=$(platform_of "$ARCH")
[ -n "$OUT" ] || OUT=skiff-airgap-$ARCH
[ -f "$DIST/skiff-$ARCH" ] || fatal "$DIST/skiff-$ARCH is missing (scripts/build-release.sh $ARCH makes it)"
check_release_binary
HERE=$(cd "$(dirname "$0")" && pwd)
INSTALLER=$DIST/install.sh
[ -f "$INSTALLER" ] || INSTALLER=$HERE/../install.sh
[ -f "$INSTALLER" ] || fatal "no install.sh in $DIST or the repository"
case "$NAME" in
    */*) fatal "-n takes a file name, not a path: $NAME" ;;
    *.tar | *.tar.gz | *.tgz | *.tar.zst | *.tzst) ;;
    *) fatal "the image archive's name must end in .tar, .tar.gz or .tar.zst: $NAME" ;;
esac

mkdir -p "$OUT/images"
info "bundle for $ARCH ($PLATFORM) in $OUT"
put "$DIST/skiff-$ARCH" "$OUT/skiff" 0755
put "$INSTALLER" "$OUT/install.sh" 0755
put "$HERE/install-bundle.sh" "$OUT/install-bundle.sh" 0755
echo "$ARCH" >"$OUT/arch"
if [ $# -gt 0 ]; then
    SAVER=$(find_saver)
    info "saving $# images with $SAVER"
    if [ -n "$REGISTRIES" ]; then
        "$SAVER" image save --platform "$PLATFORM" --registries-config "$REGISTRIES" \
            -o "$OUT/images/$NAME" "$@"
    else
        "$SAVER" image save --platform "$PLATFORM" -o "$OUT/images/$NAME" "$@"
    fi
else
    info "no images given: the bundle holds skiff only"
fi
write_sums
info "done: copy $OUT to the site and run 'sh install-bundle.sh' there as root"
