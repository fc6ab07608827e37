#!/usr/bin/env bash
# Builds the release binaries: stripped, the release profile of Cargo.toml (ADR 0007),
# libseccomp linked statically so each binary needs nothing but glibc (ADR 0015).
#
# Usage: scripts/build-release.sh [amd64|arm64|armhf|all]...   (default: all)
# libcontainer 0.7.0 does not compile for 32-bit targets: the armhf build uses a copy
# of it with scripts/patches/libcontainer-0.7.0-32bit.patch applied, through a cargo
# `paths` override (Cargo.lock unchanged; ADR 0015). The other targets use it as is.
#
# Writes dist/skiff-<arch> and dist/sha256sum-<arch>.txt ("<sha256>  skiff-<arch>",
# what `sha256sum -c` reads and the installer checks), and a copy of install.sh. Cross
# builds use rustup targets and Debian's cross compilers; both are installed when
# missing (packages: as root).
# The target's static libseccomp comes from Debian's libseccomp-dev:<arch>, fetched with
# a private apt configuration (the system's dpkg architectures stay as they are) and
# unpacked under target/cross-deps/.
#
# Builds go to their own target dir (target/release-cross, or $SKIFF_RELEASE_TARGET_DIR):
# tests/release_build.rs runs this script from inside `cargo test`, which holds the lock
# on target/.
#
# Environment: SKIFF_RELEASE_TARGET_DIR, SKIFF_DIST_DIR (default dist/),
# SKIFF_CROSS_DEPS_DIR (default target/cross-deps).
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir=${SKIFF_RELEASE_TARGET_DIR:-$PWD/target/release-cross}
dist_dir=${SKIFF_DIST_DIR:-$PWD/dist}
deps_dir=${SKIFF_CROSS_DEPS_DIR:-$PWD/target/cross-deps}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
die() { echo "build-release: $*" >&2; exit 1; }

# arch -> Rust target, Debian architecture, GNU triple (compiler prefix, multiarch dir).
rust_target() {
  case $1 in
    amd64) echo x86_64-unknown-linux-gnu ;;
    arm64) echo aarch64-unknown-linux-gnu ;;
    armhf) echo armv7-unknown-linux-gnueabihf ;;
    *) die "unknown architecture '$1' (amd64, arm64, armhf or all)" ;;
  esac
}
gnu_triple() {
  case $1 in
    amd64) echo x86_64-linux-gnu ;;
    arm64) echo aarch64-linux-gnu ;;
    armhf) echo arm-linux-gnueabihf ;;
  esac
}

# Installs Debian packages that are missing (apt-get, as root).
install_pkgs() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return
  echo "installing: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
}

# The directory holding libseccomp.a for `arch`.
# The host's own architecture: Debian's libseccomp-dev. Another one: libseccomp-dev:<arch>
# downloaded with a private apt configuration (own lists, cache and dpkg status; the
# system's sources) and unpacked into target/cross-deps/sysroot-<arch>.
libseccomp_dir() {
  local arch=$1 triple
  triple=$(gnu_triple "$arch")
  if [ "$arch" = "$(dpkg --print-architecture)" ]; then
    install_pkgs libseccomp-dev >&2
    echo "/usr/lib/$triple"
    return
  fi
  local sysroot="$deps_dir/sysroot-$arch" apt_dir="$deps_dir/apt-$arch"
  if [ -e "$sysroot/usr/lib/$triple/libseccomp.a" ]; then
    echo "$sysroot/usr/lib/$triple"
    return
  fi
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs" "$sysroot"
  : >"$apt_dir/status"
  cat >"$apt_dir/apt.conf" <<EOF
APT::Architecture "$arch";
APT::Architectures { "$arch"; };
Dir::State "$apt_dir";
Dir::State::Lists "$apt_dir/lists";
Dir::State::status "$apt_dir/status";
Dir::Cache "$apt_dir/cache";
APT::Sandbox::User "root";
EOF
  echo "fetching libseccomp-dev:$arch into $sysroot" >&2
  APT_CONFIG="$apt_dir/apt.conf" apt-get update -qq >&2
  (cd "$apt_dir/debs" && APT_CONFIG="$apt_dir/apt.conf" apt-get download -qq "libseccomp-dev:$arch") >&2
  local deb
  for deb in "$apt_dir"/debs/libseccomp-dev_*_"$arch".deb; do
    dpkg-deb -x "$deb" "$sysroot"
  done
  [ -e "$sysroot/usr/lib/$triple/libseccomp.a" ] || die "libseccomp.a missing from libseccomp-dev:$arch"
  echo "$sysroot/usr/lib/$triple"
}

# The crate's source directory as cargo resolved it (Cargo.lock's version).
crate_source() {
  cargo metadata --format-version 1 --locked |
    grep -o "\"manifest_path\":\"[^\"]*/$1-[0-9][^\"/]*/Cargo.toml\"" | head -n 1 |
    sed -e 's/^"manifest_path":"//' -e 's|/Cargo.toml"$||'
}

# A copy of libcontainer with the 32-bit patch applied, under target/cross-deps; made
# again only when the source or the patch changes (a new copy would rebuild it).
patched_libcontainer() {
  local source patch=$PWD/scripts/patches/libcontainer-0.7.0-32bit.patch dir stamp
  source=$(crate_source libcontainer)
  [ -n "$source" ] || die "libcontainer's source was not found (cargo fetch --locked)"
  [ "$(basename "$source")" = libcontainer-0.7.0 ] ||
    die "$(basename "$source"): the 32-bit patch is for libcontainer-0.7.0; check whether this version builds for armhf without it and update scripts/patches/"
  dir=$deps_dir/libcontainer-0.7.0-32bit
  stamp="$source $(sha256sum <"$patch")"
  if [ "$(cat "$dir/.skiff-patch" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$dir"
    mkdir -p "$deps_dir"
    cp -r "$source" "$dir"
    patch -s -d "$dir" -p1 <"$patch" || die "applying $patch to $dir failed"
    echo "$stamp" >"$dir/.skiff-patch"
  fi
  echo "$dir"
}

# Rust target and C cross compiler for `arch`.
ensure_toolchain() {
  local arch=$1 target triple
  target=$(rust_target "$arch")
  triple=$(gnu_triple "$arch")
  rustup target list --installed 2>/dev/null | grep -qx "$target" || rustup target add "$target"
  if [ "$arch" != "$(dpkg --print-architecture)" ]; then
    command -v "$triple-gcc" >/dev/null || install_pkgs "gcc-$triple"
  else
    command -v cc >/dev/null || install_pkgs build-essential
  fi
}

build_one() {
  local arch=$1 target triple seccomp_dir upper start
  target=$(rust_target "$arch")
  triple=$(gnu_triple "$arch")
  ensure_toolchain "$arch"
  seccomp_dir=$(libseccomp_dir "$arch")
  upper=$(echo "$target" | tr 'a-z-' 'A-Z_')

  local env=(
    "CARGO_TARGET_DIR=$target_dir"
    "LIBSECCOMP_LINK_TYPE=static"
    "LIBSECCOMP_LIB_PATH=$seccomp_dir"
  )
  if [ "$arch" != "$(dpkg --print-architecture)" ]; then
    # The C parts (bundled SQLite, ring, mimalloc) and the link use the cross compiler.
    env+=(
      "CARGO_TARGET_${upper}_LINKER=$triple-gcc"
      "CC_${target//-/_}=$triple-gcc"
      "AR_${target//-/_}=$triple-ar"
    )
  fi

  local overrides=()
  if [ "$arch" = armhf ]; then
    overrides=(--config "paths=[\"$(patched_libcontainer)\"]")
  fi

  echo "building $arch ($target) in $target_dir"
  start=$(date +%s)
  env "${env[@]}" cargo build --release --locked --target "$target" --bin skiff \
    ${overrides[@]+"${overrides[@]}"} || die "building $arch failed"
  echo "built $arch in $(($(date +%s) - start)) s"

  mkdir -p "$dist_dir"
  cp "$target_dir/$target/release/skiff" "$dist_dir/skiff-$arch.tmp"
  mv "$dist_dir/skiff-$arch.tmp" "$dist_dir/skiff-$arch"
  (cd "$dist_dir" && sha256sum "skiff-$arch" >"sha256sum-$arch.txt")
}

archs=()
for arg in "${@:-all}"; do
  case $arg in
    all) archs+=(amd64 arm64 armhf) ;;
    amd64 | arm64 | armhf) archs+=("$arg") ;;
    *) die "unknown architecture '$arg' (amd64, arm64, armhf or all)" ;;
  esac
done

for arch in "${archs[@]}"; do
  build_one "$arch"
done
# A release carries the installer beside the binaries (what `curl …/install.sh | sh -` fetches).
cp install.sh "$dist_dir/install.sh"

echo
echo "release binaries in $dist_dir:"
for arch in "${archs[@]}"; do
  printf '  skiff-%-6s %12s bytes  %s\n' "$arch" "$(stat -c %s "$dist_dir/skiff-$arch")" \
    "$(cut -d' ' -f1 "$dist_dir/sha256sum-$arch.txt")"
done
