#!/usr/bin/env bash
# A bystander cluster for scripts/test.sh: a `skiff server` with its own node, data
# dir, ports, bridge, sink, cgroup root and address ranges, running one pod while the
# test suite runs on the same machine. The suite must leave it untouched.
#
#   scripts/bystander.sh start SKIFF STATE_DIR   starts it, waits for its pod, records
#                                                what it owns on the host
#   scripts/bystander.sh check STATE_DIR         fails if its pod, bridge, veth, sink or
#                                                cgroups changed
#   scripts/bystander.sh stop STATE_DIR          deletes its pod, stops the server by
#                                                PID, removes what it made
# Needs root (the server's node runs real containers).
set -euo pipefail

BRIDGE=skiffbys0
SINK="$BRIDGE-sink"
CGROUP_ROOT=/skiff-bystander
CLUSTER_CIDR=10.142.0.0/16
SERVICE_CIDR=10.143.0.0/16
CLUSTER_DNS=10.143.0.10

free_port() {
  local port=$1
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
  echo "$port"
}

kc() { kubectl --kubeconfig "$STATE/kubeconfig.yaml" "$@"; }

# A docker-save archive of busybox-static as `bystander:1` (no registry needed).
make_image() {
  local work=$1 out=$2
  mkdir -p "$work/rootfs/bin" "$work/image"
  cp /bin/busybox "$work/rootfs/bin/busybox"
  for applet in sh sleep; do ln -sf busybox "$work/rootfs/bin/$applet"; done
  tar --owner=0 --group=0 --numeric-owner -C "$work/rootfs" -cf "$work/image/layer.tar" .
  local diff_id
  diff_id=$(sha256sum "$work/image/layer.tar" | cut -d' ' -f1)
  cat >"$work/image/config.json" <<EOF
{"architecture":"$(dpkg --print-architecture 2>/dev/null || echo amd64)","os":"linux",
 "config":{"Cmd":["sh"],"Env":["PATH=/bin"]},
 "rootfs":{"type":"layers","diff_ids":["sha256:$diff_id"]}}
EOF
  echo '[{"Config":"config.json","RepoTags":["bystander:1"],"Layers":["layer.tar"]}]' \
    >"$work/image/manifest.json"
  tar -C "$work/image" -cf "$out" manifest.json config.json layer.tar
}

# What the bystander owns on the host, one line each; `check` compares it.
snapshot() {
  echo "pod $(kc get pod bystander -o jsonpath='{.metadata.uid} {.status.phase} {.status.containerStatuses[0].restartCount} {.status.podIP}')"
  echo "bridge $(ip -o -4 addr show dev "$BRIDGE" | awk '{print $4}')"
  echo "veths $(ip -o link show master "$BRIDGE" | awk -F': ' '{print $2}' | cut -d@ -f1 | sort | tr '\n' ' ')"
  echo "sink $(ip -o link show "$SINK" >/dev/null && echo up)"
  echo "cgroups $(find /sys/fs/cgroup -maxdepth 3 -path "*${CGROUP_ROOT}/*" -type d 2>/dev/null | sort | tr '\n' ' ')"
}

start() {
  local skiff=$1
  mkdir -p "$STATE/data/agent/images"
  make_image "$STATE/build" "$STATE/data/agent/images/bystander.tar"
  : >"$STATE/config.yaml"
  # Registries that point docker.io at a dead loopback port: nothing leaves the machine.
  printf 'mirrors:\n  docker.io:\n    endpoint: ["http://127.0.0.1:9"]\n' >"$STATE/registries.yaml"
  local port kubelet
  port=$(free_port 26443)
  kubelet=$(free_port 20250)
  SKIFF_LOG=info "$skiff" server --config "$STATE/config.yaml" \
    --data-dir "$STATE/data" --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
    --https-listen-port "$port" --write-kubeconfig "$STATE/kubeconfig.yaml" \
    --cluster-cidr "$CLUSTER_CIDR" --service-cidr "$SERVICE_CIDR" --cluster-dns "$CLUSTER_DNS" \
    --node-name bystander --node-label skiff.test/bystander=true \
    --kubelet-port "$kubelet" --cni-bridge "$BRIDGE" --cgroup-root "$CGROUP_ROOT" \
    --private-registry "$STATE/registries.yaml" --disable-default-registry-endpoint \
    >"$STATE/server.out" 2>"$STATE/server.log" &
  echo $! >"$STATE/pid"
  for _ in $(seq 1 300); do
    kc get --raw /readyz >/dev/null 2>&1 && break
    sleep 0.2
  done
  kc apply -f - >/dev/null <<'EOF'
apiVersion: v1
kind: Pod
metadata: {name: bystander}
spec:
  containers:
  - {name: c, image: "bystander:1", imagePullPolicy: IfNotPresent, command: ["sleep", "1000000"]}
EOF
  if ! kc wait --for=condition=Ready pod/bystander --timeout=180s >/dev/null; then
    kc describe pod bystander >&2 || true
    tail -n 40 "$STATE/server.log" >&2
    echo "bystander: its pod did not become Ready" >&2
    return 1
  fi
  snapshot >"$STATE/before"
  echo "bystander: skiff server (PID $(cat "$STATE/pid")) on port $port with pod bystander on $BRIDGE"
}

check() {
  snapshot >"$STATE/after"
  if ! diff -u "$STATE/before" "$STATE/after" >&2 || ! grep -q '^pod .* Running 0 ' "$STATE/after"; then
    echo "bystander: the test suite disturbed the bystander cluster (above: before/after)" >&2
    return 1
  fi
  echo "bystander: untouched (pod Running, bridge, veth, sink and cgroups as before)"
}

stop() {
  kc delete pod bystander --timeout=60s >/dev/null 2>&1 || true
  local pid
  pid=$(cat "$STATE/pid" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  # What a pod deleted in time leaves: the node's own bridge, sink and cgroup root.
  ip link del "$BRIDGE" 2>/dev/null || true
  ip link del "$SINK" 2>/dev/null || true
  find /sys/fs/cgroup -maxdepth 3 -path "*${CGROUP_ROOT}*" -type d 2>/dev/null \
    | sort -r | xargs -r rmdir 2>/dev/null || true
  grep -o " $STATE/[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$STATE"
}

cmd=${1:?usage: bystander.sh start SKIFF STATE_DIR | check STATE_DIR | stop STATE_DIR}
case "$cmd" in
  start) STATE=${3:?state dir}; start "${2:?skiff binary}" ;;
  check) STATE=${2:?state dir}; check ;;
  stop) STATE=${2:?state dir}; stop ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
