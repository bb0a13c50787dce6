#!/usr/bin/env bash
# Every shipped playbook through casebook's run engine, and the same SQL chain on the same
# files in DuckDB (and the heavy step of several playbooks in pandas, scripts/pandas_chains.py),
# side by side in one run (see BENCHMARKS.md). Installs DuckDB, pandas, pyarrow, PyYAML and
# publicsuffixlist from PyPI into a private venv, builds casebook in release, generates the
# data if it is not there yet, and prints the table. Arguments go to scripts/bench.py:
#
#   bash scripts/bench.sh                         # 10M flows, one day
#   bash scripts/bench.sh --rows 100000000 --hours 168 --run-memory-mb 2048
#   bash scripts/bench.sh --rows 1000000 --runs 1 --playbooks rdp_bruteforce
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${CASEBOOK_BENCH_VENV:-$HOME/.cache/casebook-bench-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  "duckdb>=1.3" "pandas==2.*" "pyarrow>=18" "pyyaml==6.*" "publicsuffixlist>=1"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/casebook-bench}"
cargo build --release --quiet
exec "$venv/bin/python" scripts/bench.py --casebook "$CARGO_TARGET_DIR/release/casebook" "$@"
