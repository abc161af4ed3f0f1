#!/usr/bin/env bash
# Instructions per request of an Envoy config, counted by valgrind's callgrind
# (every thread of Envoy: its own code, V8's runtime and the JIT-compiled Wasm
# module; not the kernel). Unlike CPU time, the count repeats to within a
# fraction of a percent whatever else the machine is doing, so it can tell
# apart two builds of a filter whose timed runs overlap.
#
#   bench/envoy-instructions.sh CONFIG.yaml [REQUESTS] [PATH]
#
# CONFIG is a bench config (bench/configs/*.yaml): its ports 9901, 10000 and
# 10001 are moved to BASE_PORT+0, +1, +2 (BASE_PORT defaults to 19000), and
# its relative paths resolved from the repository root. Envoy starts with
# instrumentation off; 10 requests warm it up (the lazy DFAs build their
# states, V8 has compiled the module at load), then REQUESTS (default 30)
# requests are counted. Prints the count per request.
#
# Needs valgrind and curl, and Envoy from `make setup`. Start-up under
# valgrind takes about half a minute.
set -euo pipefail

config=${1:?usage: $0 CONFIG.yaml [REQUESTS] [PATH]}
requests=${2:-30}
path=${3:-/v1/orders?limit=1000}
root=$(cd "$(dirname "$0")/.." && pwd)
base=${BASE_PORT:-19000}
envoy=$(ls "$root"/.venv/lib/python3*/site-packages/envoy/_bin/envoy)
work=$(mktemp -d)
pid=
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

sed -e "s/port_value: 9901/port_value: $base/" \
    -e "s/port_value: 10000/port_value: $((base + 1))/" \
    -e "s/port_value: 10001/port_value: $((base + 2))/" \
    -e "s#filename: target/#filename: $root/target/#" \
    -e "s#filename: bench/#filename: $root/bench/#" \
    "$config" >"$work/config.yaml"

valgrind --tool=callgrind --smc-check=all-non-file --instr-atstart=no \
    --callgrind-out-file="$work/callgrind.out" \
    "$envoy" -c "$work/config.yaml" --disable-hot-restart --concurrency 1 -l warning \
    >"$work/envoy.log" 2>&1 &
pid=$!

url="http://127.0.0.1:$((base + 1))$path"
for _ in $(seq 120); do
    if curl -s -o /dev/null -m 5 "$url"; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then cat "$work/envoy.log" >&2; exit 1; fi
    sleep 1
done

callgrind_control -i on "$pid" >/dev/null 2>&1
for _ in $(seq 10); do curl -s -o /dev/null "$url"; done
callgrind_control -z "$pid" >/dev/null 2>&1
for _ in $(seq "$requests"); do curl -s -o /dev/null "$url"; done
total=$(callgrind_control -e "$pid" 2>/dev/null | awk '/Th /{gsub(",", "", $3); s += $3} END {print s}')
echo "$(basename "$config"): $((total / requests)) instructions per request ($requests requests)"
