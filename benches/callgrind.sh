#!/usr/bin/env bash
# Instruction-count profile of `dynoguard serve` on a fixed load (issue 21):
# stable on a busy machine, unlike wall-clock figures.
#
#   benches/callgrind.sh [worst|mix] [requests] [outfile]
#
# Builds the `profiling` profile (release with symbols), runs serve under
# `valgrind --tool=callgrind` (SQLite, dry run, as benches/end_to_end.sh),
# zeroes the counts once it is up, posts the bodies one by one
# (benches/post_bodies.py) and dumps. Prints the top functions (inclusive
# and self) with callgrind_annotate and the instructions per request/line.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
kind="${1:-worst}"
requests="${2:-400}"
out="${3:-/tmp/callgrind.$kind.out}"
port="${BENCH_PORT:-5097}"
work="$(mktemp -d /tmp/dynoguard-cg.XXXXXX)"
pid=""
cleanup() { if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; fi; rm -rf "$work"; }
trap cleanup EXIT

(cd "$root" && cargo build --profile profiling --quiet --bin dynoguard)
if [[ "$kind" == worst ]]; then
    python3 "$here/gen_drain.py" --out "$work/b.nul" --bodies 2000 --frames 100 --worst-case --seed 3 2>/dev/null
    adv=--advance
else
    python3 "$here/gen_drain.py" --out "$work/b.nul" --bodies 400 --frames 100 --seed 11 2>/dev/null
    adv=
fi
APP_ID_OR_NAME=bench-app DRAIN_PASSWORD=secret DASHBOARD_PASSWORD=secret \
    DATABASE_URL="sqlite://$work/db.sqlite" PORT="$port" DYNOGUARD_DRY_RUN=1 \
    HEROKU_API_URL=http://127.0.0.1:9 HEROKU_API_KEY=bench RUST_LOG=warn \
    valgrind --tool=callgrind --callgrind-out-file="$out" \
    "$target/profiling/dynoguard" serve >"$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
    curl -s -o /dev/null "http://127.0.0.1:$port/healthz" --max-time 2 && break
    sleep 0.5
done
# Warm up (first samples of each dyno create its state), then count.
python3 "$here/post_bodies.py" --bodies "$work/b.nul" --requests 100 --port "$port" $adv
callgrind_control -z "$pid" >/dev/null
python3 "$here/post_bodies.py" --bodies "$work/b.nul" --requests "$requests" --port "$port" --skip 100 $adv
callgrind_control -d "$pid" >/dev/null
sleep 1
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""
dump="$out.1"
total="$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')"
echo "# $kind: $requests requests × 100 lines; $total instructions: $((total / requests)) per request, $((total / requests / 100)) per line ($dump)"
callgrind_annotate --inclusive=yes "$dump" 2>/dev/null | sed -n '/Ir/,$p' | head -45
callgrind_annotate "$dump" 2>/dev/null | sed -n '/Ir/,$p' | head -45
