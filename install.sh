#!/bin/sh
# Installs skiff as a service: a server, or an agent joining one.
#
#   curl -sfL https://…/install.sh | sh -                     # a server
#   curl -sfL https://…/install.sh | sh -s - --tls-san NAME   # flags go to `skiff server`
#   curl -sfL https://…/install.sh | SKIFF_URL=https://SERVER:6443 SKIFF_TOKEN=… sh -
#
# Downloads `skiff-<arch>` and `sha256sum-<arch>.txt`, checks the checksum, installs
# the binary, writes the systemd unit (`skiff.service` or `skiff-agent.service`), its
# environment file (mode 0600) and the skiff-killall.sh and uninstall scripts, runs
# `skiff check`, then enables and (re)starts the unit. Running it again upgrades in
# place and restarts skiff only when the binary, the unit or its environment changed.
#
# Environment (as k3s's installer, with SKIFF in the names):
#   INSTALL_SKIFF_VERSION        release to install [default: the latest]
#   INSTALL_SKIFF_BINARY_URL     base URL holding skiff-<arch> and sha256sum-<arch>.txt
#                                [default: the release's download URL]
#   INSTALL_SKIFF_SKIP_DOWNLOAD  true: use the skiff already in the bin dir (air gap)
#   INSTALL_SKIFF_BIN_DIR        [default: /usr/local/bin, /opt/bin where that is read-only]
#   INSTALL_SKIFF_SYSTEMD_DIR    [default: /etc/systemd/system]
#   INSTALL_SKIFF_EXEC           command and flags for the unit, before the arguments
#                                given after `sh -s -` (`server` or `agent` first, or
#                                flags only: agent when SKIFF_URL is set, else server)
#   INSTALL_SKIFF_SKIP_ENABLE    true: don't `systemctl enable` the unit
#   INSTALL_SKIFF_SKIP_START     true: don't (re)start it
#   INSTALL_SKIFF_FORCE_RESTART  true: restart even when nothing changed
#   SKIFF_URL, SKIFF_TOKEN, SKIFF_TOKEN_FILE and every other SKIFF_* variable (and the
#   proxy variables) go into the unit's environment file, where skiff reads them.
#
# Where systemd does not run (no /run/systemd/system), the unit is written but not
# started; on OpenRC (Alpine) the installer also writes /etc/init.d/skiff (or
# skiff-agent) and starts that instead.
#
# Everything is in functions and runs from the last line, so a truncated download
# runs nothing.
set -e
set -o noglob

GITHUB_URL=https://github.com/skiff-dev/skiff/releases

info() { echo "[INFO]  $*"; }
warn() { echo "[WARN]  $*" >&2; }
fatal() {
    echo "[ERROR] $*" >&2
    exit 1
}

# --- the environment ---------------------------------------------------------------

# Root runs everything itself; anyone else through sudo.
setup_sudo() {
    SUDO=sudo
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=
    elif ! command -v sudo >/dev/null 2>&1; then
        fatal "run the installer as root (sudo is not installed)"
    fi
}

# CMD (server or agent) and the unit's names; the remaining arguments are the flags.
setup_command() {
    case "$1" in
        server | agent)
            CMD=$1
            ;;
        -* | "")
            # Flags only: an agent when SKIFF_URL names a server (then it needs the
            # token; an explicit `agent` may pass --server and --token as flags).
            if [ -n "${SKIFF_URL}" ]; then
                if [ -z "${SKIFF_TOKEN}" ] && [ -z "${SKIFF_TOKEN_FILE}" ]; then
                    fatal "SKIFF_URL makes this an agent, and an agent needs SKIFF_TOKEN or SKIFF_TOKEN_FILE (the server's <data-dir>/server/token)"
                fi
                CMD=agent
            else
                CMD=server
            fi
            ;;
        *)
            fatal "unknown command '$1': the unit runs 'skiff server' or 'skiff agent'"
            ;;
    esac
    if [ "${CMD}" = agent ]; then
        NAME=skiff-agent
    else
        NAME=skiff
    fi
}

# BIN_DIR and SYSTEMD_DIR, and the files the installer writes there.
setup_paths() {
    if [ -n "${INSTALL_SKIFF_BIN_DIR}" ]; then
        BIN_DIR=${INSTALL_SKIFF_BIN_DIR}
    else
        BIN_DIR=/usr/local/bin
        if ! $SUDO sh -c "touch '${BIN_DIR}/.skiff-ro-test' && rm -f '${BIN_DIR}/.skiff-ro-test'" 2>/dev/null; then
            info "${BIN_DIR} is read-only: installing into /opt/bin"
            BIN_DIR=/opt/bin
        fi
    fi
    SYSTEMD_DIR=${INSTALL_SKIFF_SYSTEMD_DIR:-/etc/systemd/system}
    BIN=${BIN_DIR}/skiff
    UNIT_FILE=${SYSTEMD_DIR}/${NAME}.service
    ENV_FILE=${SYSTEMD_DIR}/${NAME}.service.env
    INIT_FILE=/etc/init.d/${NAME}
    KILLALL=${BIN_DIR}/skiff-killall.sh
    UNINSTALL=${BIN_DIR}/${NAME}-uninstall.sh
}

# The flags that name what a node makes on the host (read by skiff-killall.sh).
scan_node_flags() {
    FLAG_DATA_DIR=
    FLAG_CNI_BRIDGE=
    FLAG_CGROUP_ROOT=
    FLAG_CLUSTER_CIDR=
    FLAG_CONFIG=
    while [ $# -gt 0 ]; do
        case "$1" in
            --data-dir=*) FLAG_DATA_DIR=${1#*=} ;;
            --cni-bridge=*) FLAG_CNI_BRIDGE=${1#*=} ;;
            --cgroup-root=*) FLAG_CGROUP_ROOT=${1#*=} ;;
            --cluster-cidr=*) FLAG_CLUSTER_CIDR=${1#*=} ;;
            --config=*) FLAG_CONFIG=${1#*=} ;;
            --data-dir | -d) [ $# -gt 1 ] && FLAG_DATA_DIR=$2 && shift ;;
            -d*) FLAG_DATA_DIR=${1#-d} ;;
            --cni-bridge) [ $# -gt 1 ] && FLAG_CNI_BRIDGE=$2 && shift ;;
            --cgroup-root) [ $# -gt 1 ] && FLAG_CGROUP_ROOT=$2 && shift ;;
            --cluster-cidr) [ $# -gt 1 ] && FLAG_CLUSTER_CIDR=$2 && shift ;;
            --config | -c) [ $# -gt 1 ] && FLAG_CONFIG=$2 && shift ;;
        esac
        shift
    done
}

# One argument of ExecStart, quoted for systemd: in double quotes, with \ and " escaped,
# % (specifiers) and $ (variables) doubled.
systemd_quote() {
    printf '"%s"' "$(printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/%/%%/g' -e 's/\$/$$/g')"
}

# One word for sh, in single quotes.
sh_quote() {
    printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

# EXEC_ARGS: the flags, quoted for the unit's ExecStart; SH_ARGS: quoted for sh.
setup_exec_args() {
    EXEC_ARGS=
    SH_ARGS=
    for arg in "$@"; do
        EXEC_ARGS="${EXEC_ARGS} $(systemd_quote "${arg}")"
        SH_ARGS="${SH_ARGS} $(sh_quote "${arg}")"
    done
}

verify_tools() {
    if command -v curl >/dev/null 2>&1; then
        DOWNLOADER=curl
    elif command -v wget >/dev/null 2>&1; then
        DOWNLOADER=wget
    else
        DOWNLOADER=
    fi
    if command -v sha256sum >/dev/null 2>&1; then
        SHA256=sha256sum
    elif command -v shasum >/dev/null 2>&1; then
        SHA256=shasum
    else
        fatal "sha256sum or shasum is needed to check the download"
    fi
}

setup_arch() {
    case "$(uname -m)" in
        x86_64 | amd64) ARCH=amd64 ;;
        aarch64 | arm64) ARCH=arm64 ;;
        armv7l | armv7* | arm) ARCH=armhf ;;
        *) fatal "skiff has no release for this architecture: $(uname -m)" ;;
    esac
}

# --- the binary --------------------------------------------------------------------

# The SHA-256 of stdin, in hex.
sha256() {
    if [ "${SHA256}" = shasum ]; then shasum -a 256; else sha256sum; fi | awk '{print $1}'
}

sha256_of() {
    $SUDO cat "$1" | sha256
}

download() {
    info "downloading $2"
    case "${DOWNLOADER}" in
        curl) curl -sfL -o "$1" "$2" ;;
        wget) wget -q -O "$1" "$2" ;;
        *) fatal "curl or wget is needed to download skiff" ;;
    esac || fatal "download failed: $2"
}

release_url() {
    if [ -n "${INSTALL_SKIFF_BINARY_URL}" ]; then
        echo "${INSTALL_SKIFF_BINARY_URL%/}"
    elif [ -n "${INSTALL_SKIFF_VERSION}" ]; then
        echo "${GITHUB_URL}/download/${INSTALL_SKIFF_VERSION}"
    else
        echo "${GITHUB_URL}/latest/download"
    fi
}

# Downloads and checks skiff-<arch>; installs it (by rename, so running processes
# keep their file) unless the installed binary is the same.
install_binary() {
    if [ "${INSTALL_SKIFF_SKIP_DOWNLOAD}" = true ]; then
        [ -x "${BIN}" ] || fatal "INSTALL_SKIFF_SKIP_DOWNLOAD=true, but there is no executable ${BIN}"
        info "using ${BIN} in place (INSTALL_SKIFF_SKIP_DOWNLOAD=true)"
        return
    fi
    base=$(release_url)
    download "${TMP_DIR}/sha256sum.txt" "${base}/sha256sum-${ARCH}.txt"
    download "${TMP_DIR}/skiff" "${base}/skiff-${ARCH}"
    expected=$(awk -v f="skiff-${ARCH}" '$2 == f || $2 == "*" f {print $1; exit}' "${TMP_DIR}/sha256sum.txt")
    [ -n "${expected}" ] || fatal "sha256sum-${ARCH}.txt names no skiff-${ARCH}"
    actual=$(sha256_of "${TMP_DIR}/skiff")
    if [ "${actual}" != "${expected}" ]; then
        fatal "checksum mismatch for skiff-${ARCH}: expected ${expected}, got ${actual}; nothing installed"
    fi
    if [ -f "${BIN}" ] && [ "$(sha256_of "${BIN}")" = "${expected}" ]; then
        info "${BIN} is already this release"
        return
    fi
    info "installing ${BIN}"
    $SUDO mkdir -p "${BIN_DIR}"
    $SUDO cp "${TMP_DIR}/skiff" "${BIN}.new"
    $SUDO chmod 0755 "${BIN}.new"
    $SUDO mv -f "${BIN}.new" "${BIN}"
}

# --- the files ---------------------------------------------------------------------

# Writes stdin to $1 with mode $2 (through a temporary file beside it).
write_file() {
    $SUDO mkdir -p "$(dirname "$1")"
    $SUDO sh -c "umask 077 && cat > '$1.new' && chmod $2 '$1.new' && mv -f '$1.new' '$1'"
}

# The unit: systemd/skiff.service or systemd/skiff-agent.service of the repository,
# with this installation's paths and the flags on the ExecStart line.
unit_text() {
    cat <<EOF
[Unit]
Description=skiff ${CMD}: a one-binary Kubernetes-compatible edge cluster
Wants=network-online.target
After=network-online.target

[Install]
WantedBy=multi-user.target

[Service]
Type=notify
EnvironmentFile=-/etc/default/%N
EnvironmentFile=-/etc/sysconfig/%N
EnvironmentFile=-${ENV_FILE}
# Stopping or restarting skiff stops only skiff: containers keep running under their
# shims, and skiff finds them again when it comes back (skiff-killall.sh stops all).
KillMode=process
Delegate=yes
User=root
# Containers are accounted in their own cgroups: no limits on skiff's.
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
ExecStart=${BIN} ${CMD}${EXEC_ARGS}
EOF
}

# SKIFF_* and proxy variables of the installer's environment, one KEY=value a line.
env_text() {
    env | grep -E '^(SKIFF_[A-Z0-9_]*|HTTPS?_PROXY|NO_PROXY|https?_proxy|no_proxy)=' | sort || true
}

write_env_file() {
    info "writing ${ENV_FILE}"
    env_text | write_file "${ENV_FILE}" 0600
}

write_unit() {
    info "writing ${UNIT_FILE}"
    unit_text | write_file "${UNIT_FILE}" 0644
}

killall_text() {
    cat <<EOF
#!/bin/sh
# Written by skiff's install.sh: stops skiff and every container of this installation,
# unmounts what they mounted, removes skiff's network links and nftables rules, and
# keeps the data (${NAME}-uninstall.sh removes it).
#
# Which processes: never any picked by name. This installation's own processes
# (server, agent, container shims, exec helpers) are those whose /proc/PID/exe is
# SKIFF_BIN below (or that file deleted, after an upgrade replaced it) in this mount
# namespace; its containers are the processes in the cgroups under its cgroup root
# (--cgroup-root, default /skiff) in every cgroup hierarchy. Another skiff on the same
# machine runs another binary file, under its own cgroup root, bridge and data dir,
# and is left alone.
SKIFF_BIN=$(sh_quote "${BIN}")
SYSTEMD_DIR=$(sh_quote "${SYSTEMD_DIR}")
# The node flags this installation was installed with (empty: the config file's or
# the default).
FLAG_DATA_DIR=$(sh_quote "${FLAG_DATA_DIR}")
FLAG_CNI_BRIDGE=$(sh_quote "${FLAG_CNI_BRIDGE}")
FLAG_CGROUP_ROOT=$(sh_quote "${FLAG_CGROUP_ROOT}")
FLAG_CLUSTER_CIDR=$(sh_quote "${FLAG_CLUSTER_CIDR}")
CONFIG_FILE=$(sh_quote "${FLAG_CONFIG:-/etc/skiff/config.yaml}")
EOF
    cat <<'EOF'

[ "$(id -u)" -eq 0 ] || exec sudo "$0" "$@"

# A top-level `key: value` of the config file, without quotes.
config_value() {
    [ -r "$CONFIG_FILE" ] || return 0
    sed -n "s/^$1:[[:space:]]*//p" "$CONFIG_FILE" | head -n 1 |
        sed -e 's/[[:space:]]#.*$//' -e 's/[[:space:]]*$//' -e "s/^[\"']//" -e "s/[\"']\$//"
}

# Flag, else config file, else default.
setting() {
    if [ -n "$2" ]; then echo "$2"; else
        value=$(config_value "$1")
        echo "${value:-$3}"
    fi
}

DATA_DIR=$(setting data-dir "$FLAG_DATA_DIR" /var/lib/skiff)
CNI_BRIDGE=$(setting cni-bridge "$FLAG_CNI_BRIDGE" cni0)
CGROUP_ROOT=$(setting cgroup-root "$FLAG_CGROUP_ROOT" /skiff)
CLUSTER_CIDR=$(setting cluster-cidr "$FLAG_CLUSTER_CIDR" 10.42.0.0/16)
DATA_DIR=${DATA_DIR%/}
CGROUP_ROOT=/${CGROUP_ROOT#/}
MY_MNT_NS=$(readlink /proc/self/ns/mnt)

stop_services() {
    for name in skiff skiff-agent; do
        if [ -d /run/systemd/system ] && [ -f "$SYSTEMD_DIR/$name.service" ]; then
            systemctl stop "$name.service" || true
        elif [ -x "/etc/init.d/$name" ] && command -v rc-service >/dev/null 2>&1; then
            rc-service "$name" stop || true
        fi
    done
}

# This installation's processes: /proc/PID/exe is SKIFF_BIN, in this mount namespace
# (a container running a file of the same name has its own).
skiff_pids() {
    for dir in /proc/[0-9]*; do
        pid=${dir#/proc/}
        [ "$pid" != "$$" ] || continue
        exe=$(readlink "$dir/exe" 2>/dev/null) || continue
        case "$exe" in
            "$SKIFF_BIN" | "$SKIFF_BIN (deleted)") ;;
            *) continue ;;
        esac
        [ "$(readlink "$dir/ns/mnt" 2>/dev/null)" = "$MY_MNT_NS" ] || continue
        if [ -z "$1" ] || tr '\0' ' ' <"$dir/cmdline" 2>/dev/null | grep -Eq "^[^ ]+ ($1) "; then
            echo "$pid"
        fi
    done
}

# The cgroup directories of this installation's containers: CGROUP_ROOT in each
# mounted cgroup hierarchy (one on cgroup v2, one per controller on v1).
cgroup_dirs() {
    awk '{ for (i = 7; i < NF; i++) if ($i == "-") { if ($(i+1) == "cgroup" || $(i+1) == "cgroup2") print $5; break } }' \
        /proc/self/mountinfo | sort -u | while read -r mount; do
        [ -d "$mount$CGROUP_ROOT" ] && echo "$mount$CGROUP_ROOT"
    done
}

# (0 stands for a process of another PID namespace: not one to signal from here.)
container_pids() {
    cgroup_dirs | while read -r dir; do
        find "$dir" -name cgroup.procs -type f -exec cat {} + 2>/dev/null
    done | grep -v '^0$'
}

# Asks skiff's server and agent to stop, then kills what is left of skiff and its
# containers until nothing is.
kill_all() {
    pids=$(skiff_pids 'server|agent')
    if [ -n "$pids" ]; then
        # shellcheck disable=SC2086
        kill $pids 2>/dev/null || true
        tries=0
        while [ -n "$(skiff_pids 'server|agent')" ] && [ $tries -lt 10 ]; do
            sleep 1
            tries=$((tries + 1))
        done
    fi
    tries=0
    while :; do
        pids=$({ skiff_pids; container_pids; } | tr '\n' ' ' | sed 's/ *$//')
        [ -n "$pids" ] || return 0
        if [ $tries -ge 20 ]; then
            echo "skiff-killall: still running after 20 s: $pids" >&2
            return 1
        fi
        # shellcheck disable=SC2086
        kill -9 $pids 2>/dev/null || true
        sleep 1
        tries=$((tries + 1))
    done
}

# Every mount point strictly below $1, deepest first (mountinfo escapes blanks).
mounts_below() {
    awk -v d="$1/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

unmount_below() {
    mounts_below "$1" | while read -r mount; do
        umount "$mount" 2>/dev/null || umount -l "$mount" || echo "skiff-killall: cannot unmount $mount" >&2
    done
}

# The empty cgroups of CGROUP_ROOT, and it (a cgroup with processes is never removed).
remove_cgroups() {
    cgroup_dirs | while read -r dir; do
        find "$dir" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
}

status=0
stop_services
kill_all || status=1
unmount_below "$DATA_DIR"
unmount_below /run/skiff
remove_cgroups
if [ -x "$SKIFF_BIN" ]; then
    # Overlay routes only inside this cluster's pod range: another cluster's stay.
    "$SKIFF_BIN" network cleanup --cni-bridge "$CNI_BRIDGE" --data-dir "$DATA_DIR" \
        --cluster-cidr "$CLUSTER_CIDR" || status=1
fi
exit "$status"
EOF
}

uninstall_text() {
    if [ "${NAME}" = skiff ]; then other=skiff-agent; else other=skiff; fi
    cat <<EOF
#!/bin/sh
# Written by skiff's install.sh: stops skiff and its containers (skiff-killall.sh),
# removes the ${NAME} unit and, unless ${other} is installed too, the binary and
# scripts; then removes /etc/skiff and /var/lib/skiff (the data).
NAME=${NAME}
OTHER=${other}
BIN_DIR=$(sh_quote "${BIN_DIR}")
SYSTEMD_DIR=$(sh_quote "${SYSTEMD_DIR}")
EOF
    cat <<'EOF'

[ "$(id -u)" -eq 0 ] || exec sudo "$0" "$@"

"$BIN_DIR/skiff-killall.sh" || echo "$NAME-uninstall: skiff-killall.sh failed; going on" >&2

if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable "$NAME.service" 2>/dev/null || true
    systemctl reset-failed "$NAME.service" 2>/dev/null || true
fi
if [ -x "/etc/init.d/$NAME" ] && command -v rc-update >/dev/null 2>&1; then
    rc-update delete "$NAME" default 2>/dev/null || true
    rm -f "/etc/init.d/$NAME"
fi
rm -f "$SYSTEMD_DIR/$NAME.service" "$SYSTEMD_DIR/$NAME.service.env"
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload || true
fi

# Data goes only when nothing is mounted below it any more: removing through a
# mount (a pod's hostPath volume) would delete files outside skiff.
remove_dir() {
    [ -e "$1" ] || return 0
    if awk -v d="$1/" 'index($5, d) == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
        echo "$NAME-uninstall: something is still mounted below $1; not removing it" >&2
        return 1
    fi
    if awk -v d="$1" '$5 == d { found = 1 } END { exit !found }' /proc/self/mountinfo; then
        find "$1" -mindepth 1 -maxdepth 1 -exec rm -rf {} +   # a mount point: its contents
    else
        rm -rf "$1"
    fi
}

status=0
if [ ! -f "$SYSTEMD_DIR/$OTHER.service" ]; then
    remove_dir /var/lib/skiff || status=1
    remove_dir /etc/skiff || status=1
    remove_dir /run/skiff || status=1
    rm -f "$BIN_DIR/skiff" "$BIN_DIR/skiff-killall.sh"
fi
rm -f "$0" "$BIN_DIR/$NAME-uninstall.sh"
exit $status
EOF
}

write_scripts() {
    info "writing ${KILLALL}"
    killall_text | write_file "${KILLALL}" 0755
    info "writing ${UNINSTALL}"
    uninstall_text | write_file "${UNINSTALL}" 0755
}

# The OpenRC service (Alpine), as k3s's: supervise-daemon restarts skiff.
openrc_text() {
    cat <<EOF
#!/sbin/openrc-run
# Written by skiff's install.sh.
description="skiff ${CMD}"
supervisor=supervise-daemon
command=$(sh_quote "${BIN}")
command_args=$(sh_quote "${CMD}${SH_ARGS}")
output_log=/var/log/${NAME}.log
error_log=/var/log/${NAME}.log
pidfile=/var/run/${NAME}.pid
respawn_delay=5
respawn_max=0

depend() {
    after network-online
    want cgroups
}

start_pre() {
    modprobe br_netfilter 2>/dev/null || true
    modprobe overlay 2>/dev/null || true
}

set -o allexport
if [ -f $(sh_quote "${ENV_FILE}") ]; then . $(sh_quote "${ENV_FILE}"); fi
set +o allexport
EOF
}

has_openrc() {
    [ ! -d /run/systemd/system ] && [ -x /sbin/openrc-run ]
}

write_openrc() {
    has_openrc || return 0
    info "writing ${INIT_FILE}"
    openrc_text | write_file "${INIT_FILE}" 0755
}

# --- the service -------------------------------------------------------------------

# The hashes of what decides whether skiff must restart.
installed_hashes() {
    for file in "${BIN}" "${UNIT_FILE}" "${ENV_FILE}" "${INIT_FILE}"; do
        if $SUDO test -f "${file}"; then sha256_of "${file}"; else echo "none"; fi
    done
}

# `skiff check` only warns, as k3s's checks: on an upgrade the running skiff holds
# the ports it checks.
run_check() {
    info "checking the host: ${BIN} check"
    if [ -n "${FLAG_DATA_DIR}" ]; then
        set -- --data-dir "${FLAG_DATA_DIR}"
    fi
    $SUDO "${BIN}" check "$@" ||
        warn "skiff check found something missing (above; on an upgrade, the running skiff's ports are in use): skiff may not run until it is in place"
}

start_openrc() {
    if [ "${INSTALL_SKIFF_SKIP_ENABLE}" = true ]; then
        info "not enabling ${NAME} (INSTALL_SKIFF_SKIP_ENABLE=true)"
    else
        info "enabling ${NAME}"
        $SUDO rc-update add "${NAME}" default >/dev/null
    fi
    if [ "${INSTALL_SKIFF_SKIP_START}" = true ]; then
        info "not starting ${NAME} (INSTALL_SKIFF_SKIP_START=true)"
    elif [ "${CHANGED}" = true ] || [ "${INSTALL_SKIFF_FORCE_RESTART}" = true ]; then
        info "restarting ${NAME}"
        $SUDO rc-service "${NAME}" restart
    else
        info "${NAME} unchanged, not restarting (making sure it runs)"
        $SUDO rc-service "${NAME}" start
    fi
}

start_service() {
    if has_openrc; then
        start_openrc
        return
    fi
    if [ ! -d /run/systemd/system ]; then
        info "systemd is not running here (no /run/systemd/system): wrote ${UNIT_FILE}, not enabling or starting it"
        info "run skiff yourself: ${BIN} ${CMD}${SH_ARGS}"
        return
    fi
    $SUDO systemctl daemon-reload
    if [ "${INSTALL_SKIFF_SKIP_ENABLE}" = true ]; then
        info "not enabling ${NAME}.service (INSTALL_SKIFF_SKIP_ENABLE=true)"
    else
        info "enabling ${NAME}.service"
        $SUDO systemctl enable "${NAME}.service" >/dev/null
    fi
    if [ "${INSTALL_SKIFF_SKIP_START}" = true ]; then
        info "not starting ${NAME}.service (INSTALL_SKIFF_SKIP_START=true)"
    elif [ "${CHANGED}" = true ] || [ "${INSTALL_SKIFF_FORCE_RESTART}" = true ]; then
        info "restarting ${NAME}.service"
        $SUDO systemctl restart "${NAME}.service"
    else
        info "${NAME} unchanged, not restarting (making sure it runs)"
        $SUDO systemctl start "${NAME}.service"
    fi
}

main() {
    # INSTALL_SKIFF_EXEC's words come before the arguments after `sh -s -`.
    # shellcheck disable=SC2086
    set -- ${INSTALL_SKIFF_EXEC} "$@"
    setup_sudo
    setup_command "$@"
    case "$1" in server | agent) shift ;; esac
    setup_paths
    scan_node_flags "$@"
    setup_exec_args "$@"
    verify_tools
    setup_arch
    TMP_DIR=$(mktemp -d)
    trap 'rm -rf "${TMP_DIR}"' EXIT

    before=$(installed_hashes)
    install_binary
    write_unit
    write_env_file
    write_openrc
    write_scripts
    if [ "$(installed_hashes)" = "${before}" ]; then
        CHANGED=false
        info "no change to ${BIN}, ${UNIT_FILE} or ${ENV_FILE}"
    else
        CHANGED=true
    fi
    run_check
    start_service
}

main "$@"
