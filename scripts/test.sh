#!/usr/bin/env bash
# The whole test suite: formatting, lints, then every test, with a
# throwaway PostgreSQL server for the PostgreSQL tests (see
# scripts/test-postgres.sh; FERRY_TEST_POSTGRES_URL names an existing
# server instead). Without PostgreSQL installed it fails with a message.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --check

echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

echo "== cargo test (with PostgreSQL)"
./scripts/test-postgres.sh cargo test --locked
