#!/usr/bin/env bash
# Runs the sync benchmark: ferry beside dlt and airbyte-cdk on the same local
# API and data, through the shared harness (../shared/bench, see
# docs/benchmarks.md). Arguments go to the harness's run_all.sh:
#
#   bench/run.sh                                  # every dataset, every runner
#   bench/run.sh --only ' stripe '                # one dataset
#   SIZE=1000000 RUNS=1 bench/run.sh --only 'floor|ours'
#
# FERRY_BIN names a ferry binary; by default the release build is made (and
# reused) in CARGO_TARGET_DIR. The harness's state (data, venv, results)
# lives in BENCH_STATE, default /tmp/ferry-bench.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
HARNESS="${FERRY_BENCH_HARNESS:-${ROOT}/../shared/bench}"
if [ ! -x "${HARNESS}/run_all.sh" ]; then
  echo "bench: no harness at ${HARNESS}; set FERRY_BENCH_HARNESS to the shared bench folder" >&2
  exit 1
fi
export BENCH_STATE="${BENCH_STATE:-${TMPDIR:-/tmp}/ferry-bench}"

if [ -z "${FERRY_BIN:-}" ]; then
  (cd "${ROOT}" && cargo build --release --locked --quiet)
  FERRY_BIN="${CARGO_TARGET_DIR:-${ROOT}/target}/release/ferry"
fi
FERRY_BIN="$(cd "$(dirname "${FERRY_BIN}")" && pwd)/$(basename "${FERRY_BIN}")"

# DuckDB files go beside the harness's other output; the flows read BENCH_DIR.
export BENCH_DIR="${BENCH_STATE}/work/ferry"
mkdir -p "${BENCH_DIR}"
# The harness starts PostgreSQL with the role and database bench/bench.
export BENCH_POSTGRES_URL="${BENCH_POSTGRES_URL:-postgres://bench:bench@127.0.0.1:5432/bench}"
CONFIG="${ROOT}/bench/ferry.d"
PYTHON="${BENCH_STATE}/venv/bin/python"

declare -A TABLE=([stripe]=customers [posthog]=events [close]=leads)
for dataset in stripe posthog close; do
  table="${TABLE[${dataset}]}"
  upper="${dataset^^}"

  # DuckDB: a new file per run, counted afterwards with the harness's duckdb module.
  file="${BENCH_DIR}/${dataset}.duckdb"
  export "OURS_CMD_${upper}_DUCKDB=${FERRY_BIN} sync bench_${dataset}_duckdb --config ${CONFIG}"
  export "OURS_SETUP_${upper}_DUCKDB=rm -f ${file} ${file}.wal"
  export "OURS_VERIFY_${upper}_DUCKDB=${PYTHON} -c \"import duckdb; print('rows=%d' % duckdb.connect('${file}', read_only=True).sql('select count(distinct id) from ${dataset}.${dataset}.${table}').fetchall()[0][0])\""

  # PostgreSQL: the flow's schema and ferry's bookkeeping are dropped before each run.
  schema="ferry_${dataset}"
  psql="PGPASSWORD=bench psql -qtA -h 127.0.0.1 -U bench bench"
  export "OURS_CMD_${upper}_POSTGRES=${FERRY_BIN} sync bench_${dataset}_postgres --config ${CONFIG}"
  export "OURS_SETUP_${upper}_POSTGRES=${psql} -c 'drop schema if exists ${schema} cascade; drop schema if exists _ferry cascade'"
  export "OURS_VERIFY_${upper}_POSTGRES=${psql} -c \"select 'rows=' || count(distinct id) from ${schema}.${table}\""
done

echo "bench: ferry is ${FERRY_BIN}"
exec "${HARNESS}/run_all.sh" "$@"
