#!/usr/bin/env bash
# A Ballista cluster on this machine, checked against the local engine:
#  1. builds casebook with the `ballista` feature (release);
#  2. generates demo data (or uses --data DIR, a data folder holding `demo/`);
#  3. starts a scheduler and two executors on 127.0.0.1 (`casebook ballista …`);
#  4. runs threat_investigation, suspicious_connects and rdp_bruteforce locally and through
#     the cluster (`casebook run --engine df://…`), prints both times, and compares every
#     step's table (suspicious_connects: its final one; rows sorted within a table: a step
#     whose SQL leaves ties or no order may list rows in any order) — any difference fails;
#  5. kills one executor while a run is going: the step must fail with casebook's message,
#     and the same run again must succeed on the remaining executor.
#
#   bash scripts/ballista-local.sh [--rows N] [--hours H] [--seed S] [--data DIR] [--window W]
#                                  [--executor-memory-mb MB] [--skip-kill] [--playbooks a,b]
#
# Defaults: 1,000,000 flows over 24 hours, seed 42, window "last 8d". The generated data is
# kept in ~/.cache/casebook-ballista-data/ for the next run.
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=1000000 HOURS=24 SEED=42 DATA="" WINDOW="last 8d" EXEC_MB="" SKIP_KILL=0
PLAYBOOKS="threat_investigation,suspicious_connects,rdp_bruteforce"
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) ROWS="$2"; shift 2 ;;
    --hours) HOURS="$2"; shift 2 ;;
    --seed) SEED="$2"; shift 2 ;;
    --data) DATA="$2"; shift 2 ;;
    --window) WINDOW="$2"; shift 2 ;;
    --executor-memory-mb) EXEC_MB="$2"; shift 2 ;;
    --skip-kill) SKIP_KILL=1; shift ;;
    --playbooks) PLAYBOOKS="$2"; shift 2 ;;
    *) echo "unknown option $1 (see the head of $0)" >&2; exit 2 ;;
  esac
done

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/casebook-target}"
echo "== building casebook --release --features ballista (the first time takes long: see README)"
cargo build --release --features ballista --quiet
BIN="$CARGO_TARGET_DIR/release/casebook"

if [ -z "$DATA" ]; then
  DATA="$HOME/.cache/casebook-ballista-data/${ROWS}-${HOURS}h-s${SEED}"
  if [ ! -f "$DATA/.generated" ]; then
    echo "== generating $ROWS flows over $HOURS hours (seed $SEED) into $DATA"
    rm -rf "$DATA"
    "$BIN" demo --rows "$ROWS" --hours "$HOURS" --seed "$SEED" --data "$DATA"
    touch "$DATA/.generated"
  fi
fi
DATA="$(cd "$DATA" && pwd)"
[ -d "$DATA/demo" ] || { echo "$DATA has no demo/ folder" >&2; exit 2; }

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# A state folder of its own per engine, over the same files.
for side in local cluster; do
  mkdir -p "$WORK/$side"
  ln -s "$DATA/demo" "$WORK/$side/demo"
  for f in "$DATA"/*.yaml; do [ -e "$f" ] && ln -s "$f" "$WORK/$side/"; done
done

free_port() {  # a port with the next one free too (an executor takes two)
  python3 - <<'EOF'
import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
    try:
        t = socket.socket(); t.bind(("127.0.0.1", p + 1)); t.close(); s.close(); print(p); break
    except OSError:
        s.close()
EOF
}

ready() { curl -s "http://127.0.0.1:$SCHED/readyz" 2>/dev/null || true; }

SCHED="$(free_port)"
URL="df://127.0.0.1:$SCHED"
"$BIN" ballista scheduler --bind "127.0.0.1:$SCHED" >"$WORK/scheduler.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do [ -n "$(ready)" ] && break; sleep 0.1; done
EXECUTORS=()
for n in 1 2; do
  port="$(free_port)"
  mem=()
  [ -n "$EXEC_MB" ] && mem=(--memory-mb "$EXEC_MB")
  "$BIN" ballista executor --scheduler "$URL" --bind "127.0.0.1:$port" --concurrency 1 \
    --work-dir "$WORK/executor-$n" "${mem[@]}" >"$WORK/executor-$n.log" 2>&1 &
  PIDS+=($!)
  EXECUTORS+=($!)
done
for _ in $(seq 100); do ready | grep -q "ready: 2 executors" && break; sleep 0.2; done
echo "== cluster at $URL: $(ready)"

compare() {  # two `casebook run --format csv` outputs: every step's rows, sorted
  python3 - "$1" "$2" <<'EOF'
import sys
def tables(path):
    out, cur = [], None
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if line.startswith("# step: "):
            cur = [line[8:], None, []]; out.append(cur); continue
        if cur is None:
            cur = ["", None, []]; out.append(cur)
        if cur[1] is None:
            cur[1] = line
        elif line:
            cur[2].append(line)
    return [(s, h, sorted(r)) for s, h, r in out]
a, b = tables(sys.argv[1]), tables(sys.argv[2])
if [(s, h) for s, h, _ in a] != [(s, h) for s, h, _ in b]:
    print("different steps or columns"); sys.exit(1)
bad = [s for (s, _, ra), (_, _, rb) in zip(a, b) if ra != rb]
rows = sum(len(r) for _, _, r in a)
if bad:
    print("rows differ in step(s): " + ", ".join(bad)); sys.exit(1)
print(f"identical ({len(a)} tables, {rows} rows)")
EOF
}

run() {  # side playbook params… → seconds, output in $WORK/<side>-<playbook>.csv
  local side="$1" pb="$2"; shift 2
  local engine=()
  [ "$side" = cluster ] && engine=(--engine "$URL")
  local args=()
  for p in "$@"; do args+=(-p "$p"); done
  # suspicious_connects' hidden steps hold a row per host pair (tens of millions on a big
  # week): its scored, enriched result is what is printed and compared.
  [ "$pb" = suspicious_connects ] && args+=(--step most_suspicious)
  local start end
  start=$(date +%s.%N)
  "$BIN" run "$pb" --format csv --max-rows 100000000 --data "$WORK/$side" "${engine[@]}" "${args[@]}" \
    >"$WORK/$side-$pb.csv" 2>"$WORK/$side-$pb.err" || { { echo "FAILED: $pb ($side):"; tail -5 "$WORK/$side-$pb.err"; } >&2; return 1; }
  end=$(date +%s.%N)
  python3 -c "print(f'{$end - $start:.1f}')"
}

status=0
printf '%-22s %10s %10s  %s\n' playbook "local s" "cluster s" "tables"
IFS=, read -r -a CHOSEN <<<"$PLAYBOOKS"
for pb in "${CHOSEN[@]}"; do
  params=("window=$WINDOW")
  [ "$pb" = threat_investigation ] && params+=("ip=10.0.10.25")
  l="$(run local "$pb" "${params[@]}")" || { status=1; continue; }
  c="$(run cluster "$pb" "${params[@]}")" || { status=1; continue; }
  verdict="$(compare "$WORK/local-$pb.csv" "$WORK/cluster-$pb.csv")" || status=1
  printf '%-22s %10s %10s  %s\n' "$pb" "$l" "$c" "$verdict"
done

if [ "$SKIP_KILL" = 0 ]; then
  echo "== an executor lost mid-run"
  # Enough work for several seconds of a release build on any data size: about two billion
  # joined rows.
  copies=$(( 2000000000 / ROWS )); [ "$copies" -lt 4 ] && copies=4
  cat >"$WORK/heavy.yaml" <<EOF
title: Heavy
params:
  window: { type: time_range, default: $WINDOW }
sections:
  - title: S
    steps:
      - id: all
        query:
          sql: |
            SELECT f.dport, c.copy % 7 AS k, count(*) AS n, sum(f.ibyt) AS b FROM flows f
            CROSS JOIN (SELECT * FROM unnest(range(0, $copies)) AS t(copy)) c
            WHERE f.treceived >= \$window.start AND f.treceived < \$window.end
            GROUP BY f.dport, c.copy % 7 ORDER BY f.dport, k
EOF
  "$BIN" run "$WORK/heavy.yaml" --format csv --data "$WORK/cluster" --engine "$URL" >"$WORK/heavy.out" 2>&1 &
  heavy=$!
  sleep 3
  kill -9 "${EXECUTORS[0]}"
  if wait "$heavy"; then
    echo "the run finished before the executor was lost (too little work): not checked"
  elif grep -q "lost an executor during this step" "$WORK/heavy.out"; then
    echo "the step failed with: $(grep -o 'the cluster at .*' "$WORK/heavy.out" | head -1)"
  else
    echo "FAILED: the step failed without casebook's message:"; tail -5 "$WORK/heavy.out"; status=1
  fi
  # The scheduler has noticed the loss (the step above saw it too) before the re-run.
  for _ in $(seq 100); do ready | grep -q "ready: 1 executors" && break; sleep 0.2; done
  if "$BIN" run "$WORK/heavy.yaml" --format csv --data "$WORK/cluster" --engine "$URL" >"$WORK/heavy2.out" 2>&1; then
    echo "the same run again succeeded on the remaining executor ($(ready))"
  else
    echo "FAILED: the re-run failed:"; tail -5 "$WORK/heavy2.out"; status=1
  fi
fi
exit "$status"
