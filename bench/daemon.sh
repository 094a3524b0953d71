#!/usr/bin/env bash
# Measures the daemon with many flow files: the time from starting
# `ferry run` to a ready /readyz, and the time from writing one more flow
# file to seeing it in /flows. The second includes the reload debounce, so
# the script also prints the reload's own milliseconds from the log.
#
#   bench/daemon.sh                      # 200 flows, default debounce
#   FLOWS=1000 DEBOUNCE_MS=50 bench/daemon.sh
#
# Everything runs on 127.0.0.1; the flows point at a port nothing listens on
# and are scheduled once a year, so no run starts during the measurement.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FLOWS="${FLOWS:-200}"
DEBOUNCE_MS="${DEBOUNCE_MS:-500}"
PORT="${PORT:-18480}"
if [ -z "${FERRY_BIN:-}" ]; then
  (cd "${ROOT}" && cargo build --release --locked --quiet)
  FERRY_BIN="${CARGO_TARGET_DIR:-${ROOT}/target}/release/ferry"
fi

DIR="$(mktemp -d "${TMPDIR:-/tmp}/ferry-daemon-bench.XXXXXX")"
PID=""
cleanup() {
  if [ -n "${PID}" ]; then kill "${PID}" 2>/dev/null || true; wait "${PID}" 2>/dev/null || true; fi
  rm -rf "${DIR}"
}
trap cleanup EXIT
mkdir -p "${DIR}/ferry.d/flows"

cat >"${DIR}/ferry.d/shop.yaml" <<YAML
kind: Connector
name: shop
http: { base_url: "http://127.0.0.1:9" }
entities:
  customers:
    path: /v1/customers
    records: "\$.data"
    primary_key: [id]
    pagination: { type: cursor, cursor: "\$.data[-1:].id", param: starting_after }
YAML
flow() {
  cat <<YAML
kind: Flow
name: $1
source: { connector: shop }
destination: duckdb://${DIR}/data.duckdb
schema: $1
entities: [customers]
schedule: "0 0 1 1 *"
YAML
}
for i in $(seq -w 1 "${FLOWS}"); do flow "flow_${i}" >"${DIR}/ferry.d/flows/flow_${i}.yaml"; done

now() { date +%s%N; }
start=$(now)
"${FERRY_BIN}" run --config "${DIR}/ferry.d" --listen "127.0.0.1:${PORT}" \
  --reload-debounce-ms "${DEBOUNCE_MS}" 2>"${DIR}/daemon.log" &
PID=$!
until curl -sf "http://127.0.0.1:${PORT}/readyz" >/dev/null 2>&1; do
  kill -0 "${PID}" 2>/dev/null || { cat "${DIR}/daemon.log" >&2; exit 1; }
  sleep 0.002
done
ready=$(now)

written=$(now)
flow flow_new >"${DIR}/ferry.d/flows/flow_new.yaml"
until curl -sf "http://127.0.0.1:${PORT}/flows" | grep -q '"flow_new"'; do sleep 0.002; done
applied=$(now)

reload_ms="$(grep -o 'milliseconds=[0-9]*' "${DIR}/daemon.log" | tail -1 | cut -d= -f2)"
rss_kb="$(awk '/VmHWM/ {print $2}' "/proc/${PID}/status")"
echo "flows=${FLOWS} start_to_ready_ms=$(((ready - start) / 1000000)) write_to_applied_ms=$(((applied - written) / 1000000)) debounce_ms=${DEBOUNCE_MS} reload_ms=${reload_ms:-?} peak_rss_kb=${rss_kb}"
