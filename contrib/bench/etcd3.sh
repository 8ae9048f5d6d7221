#!/usr/bin/env bash
# Runs a 3-member etcd cluster on loopback (clients on 127.0.0.1:23790-23792)
# for the fleet benchmarks, until Ctrl-C; its data goes under DIR (default: a
# new temporary directory), removed at the end.
#
#   contrib/bench/etcd3.sh [DIR] &
#   go run ./contrib/bench/clusterbench -etcd http://127.0.0.1:23790,http://127.0.0.1:23791,http://127.0.0.1:23792 -for 10s
set -euo pipefail
etcd=${OPSVC_ETCD:-etcd}
command -v "$etcd" >/dev/null || { echo "etcd3.sh: no etcd (apt-get install etcd-server, or set OPSVC_ETCD)" >&2; exit 1; }
dir=${1:-$(mktemp -d -t opsvc-etcd3.XXXXXX)}
mkdir -p "$dir"
initial="m0=http://127.0.0.1:23800,m1=http://127.0.0.1:23801,m2=http://127.0.0.1:23802"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait; rm -rf "$dir"' EXIT INT TERM
for i in 0 1 2; do
  "$etcd" --name "m$i" --data-dir "$dir/m$i" \
    --listen-client-urls "http://127.0.0.1:2379$i" --advertise-client-urls "http://127.0.0.1:2379$i" \
    --listen-peer-urls "http://127.0.0.1:2380$i" --initial-advertise-peer-urls "http://127.0.0.1:2380$i" \
    --initial-cluster "$initial" --initial-cluster-state new --initial-cluster-token opsvc-bench \
    --log-level warn --logger zap >"$dir/m$i.log" 2>&1 &
  pids+=($!)
done
echo "etcd3.sh: members on http://127.0.0.1:23790,http://127.0.0.1:23791,http://127.0.0.1:23792 (data in $dir)"
wait
