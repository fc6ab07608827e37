#!/usr/bin/env bash
# Runs the whole test suite: installs what the tests need when it is missing
# (Debian/Ubuntu packages, rustup components), then formatting, lint, unit and
# end-to-end tests, including the root ones (`#[ignore = "needs root"]`, run with
# --include-ignored) -- while a bystander skiff cluster (scripts/bystander.sh) runs a
# pod on the same machine; after the suite the bystander must be untouched.
# Usage: scripts/test.sh [extra cargo test args] [-- extra test binary args]
# Runs as root (re-runs itself with sudo when it is not).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "the end-to-end tests run real containers: re-running as root with sudo"
  exec sudo env "PATH=$PATH" "CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}" \
    "RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}" "$0" "$@"
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages the build and the tests use.
need_pkgs=()
command -v cc >/dev/null || need_pkgs+=(build-essential)
command -v pkg-config >/dev/null || need_pkgs+=(pkg-config)
command -v curl >/dev/null || need_pkgs+=(curl)
command -v ip >/dev/null || need_pkgs+=(iproute2)
command -v ping >/dev/null || need_pkgs+=(iputils-ping)
command -v nsenter >/dev/null || need_pkgs+=(util-linux)
# Debian's CNI plugins: the tests run the same cases against them as against
# skiff's built-in ones (tests/cni_plugins.rs, pod_network.rs).
[ -x /usr/lib/cni/bridge ] || need_pkgs+=(containernetworking-plugins)
# The node's network at run time: nftables (services, built-in portmap) and
# conntrack (stale UDP flows of services).
command -v nft >/dev/null || need_pkgs+=(nftables)
command -v conntrack >/dev/null || need_pkgs+=(conntrack)
# Debian's portmap and masquerading, and the tests' clean-up of their chains.
command -v iptables >/dev/null || need_pkgs+=(iptables)
# Multi-node tests (tests/cluster_network.rs): captures on the test underlay.
command -v tcpdump >/dev/null || need_pkgs+=(tcpdump)
# The container runtime (libcontainer links libseccomp statically) and its tests.
[ -e /usr/include/seccomp.h ] || need_pkgs+=(libseccomp-dev)
dpkg -s busybox-static >/dev/null 2>&1 || need_pkgs+=(busybox-static)
# Image tests: a real registry fed by skopeo, archives, basic auth, TLS.
command -v docker-registry >/dev/null || need_pkgs+=(docker-registry)
command -v skopeo >/dev/null || need_pkgs+=(skopeo)
command -v zstd >/dev/null || need_pkgs+=(zstd)
command -v htpasswd >/dev/null || need_pkgs+=(apache2-utils)
command -v openssl >/dev/null || need_pkgs+=(openssl)
# Cluster DNS tests ask with dig.
command -v dig >/dev/null || need_pkgs+=(dnsutils)
# install.sh, the scripts it writes and airgap/*.sh must be shellcheck-clean
# (tests/install.rs, tests/airgap.rs).
command -v shellcheck >/dev/null || need_pkgs+=(shellcheck)
# The written systemd units must pass `systemd-analyze verify` (tests/install.rs).
command -v systemd-analyze >/dev/null || need_pkgs+=(systemd)
# tests/install.rs serves the release to the installer with python3's http.server.
command -v python3 >/dev/null || need_pkgs+=(python3)
# Release builds (tests/release_build.rs): Debian's cross compilers (with their libc
# sysroots under /usr/<triple>) and qemu-user to run the arm64/armhf binaries.
command -v aarch64-linux-gnu-gcc >/dev/null || need_pkgs+=(gcc-aarch64-linux-gnu)
command -v arm-linux-gnueabihf-gcc >/dev/null || need_pkgs+=(gcc-arm-linux-gnueabihf)
command -v qemu-aarch64-static >/dev/null || need_pkgs+=(qemu-user-static)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "installing: ${need_pkgs[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}"
fi

# The end-to-end tests drive the real kubectl.
if [ ! -x /usr/bin/kubectl ]; then
  echo "installing kubectl"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubectl \
    || as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kubernetes-client \
    || { echo "error: /usr/bin/kubectl is missing and no package provides it; install kubectl 1.32" >&2; exit 1; }
fi

if command -v rustup >/dev/null; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings

# Cargo's arguments, then the test binaries' (after `--`).
cargo_args=()
test_args=()
seen_separator=false
for arg in "$@"; do
  if ! $seen_separator && [ "$arg" = "--" ]; then seen_separator=true; continue; fi
  if $seen_separator; then test_args+=("$arg"); else cargo_args+=("$arg"); fi
done

# The bystander: another skiff cluster with its own node on this machine.
cargo build --locked
bystander_state=$(mktemp -d /tmp/skiff-bystander.XXXXXX)
trap 'scripts/bystander.sh stop "$bystander_state"' EXIT
scripts/bystander.sh start "${CARGO_TARGET_DIR:-target}/debug/skiff" "$bystander_state"

cargo test --locked ${cargo_args[@]+"${cargo_args[@]}"} -- --include-ignored \
  ${test_args[@]+"${test_args[@]}"}

scripts/bystander.sh check "$bystander_state"
