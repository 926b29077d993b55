#!/usr/bin/env bash
# Drain throughput of a follower and of the leader of two replicas on
# PostgreSQL against a single process on SQLite (issue 20; BENCHMARKS.md,
# "Replicas").
#
#   benches/replicas.sh [--rounds N] [--seconds S] [--conns "8 2"]
#                       [--baseline REV] [--loadtest-seconds S] [--no-build]
#
# Builds the release binaries, generates drain bodies (benches/gen_drain.py:
# 500 bodies x 100 frames, 200 dynos, 1 % of memory samples over quota - the
# load of BENCHMARKS.md's end-to-end test), then for each round and each
# connection count runs, interleaved so that machine noise hits all alike:
#
#   single    one `dynoguard serve`, SQLite                (load -> it)
#   base      the same, built from --baseline REV (if given)
#   leader    two replicas on PostgreSQL                   (load -> the leader)
#   follower  two replicas on PostgreSQL                   (load -> the follower;
#             the leader applies what it forwards)
#
# Load: wrk (benches/replicas.lua), one thread, keep-alive, each POST a body with
# Logplex-Msg-Count and a fresh Logplex-Frame-Id. Every server runs with
# DYNOGUARD_DRY_RUN=1 and HEROKU_API_URL=http://127.0.0.1:9 (no restart call
# leaves the machine). Each run uses a fresh app name, so a fresh leader row.
# (--baseline REV needs a REV with the `loadtest` feature, i.e. after issue 12.)
# With --baseline, also runs BENCHMARKS.md's own method (dynoguard-loadtest,
# 32 connections, SQLite) for this build and the baseline, interleaved.
#
# Needs: cargo, python3, wrk, curl, psql/createdb, a PostgreSQL server
# (BENCH_PG, default postgres://dynoguard@127.0.0.1:55432; database
# BENCH_DB, default dynoguard_bench_replicas, created if missing).
# CARGO_TARGET_DIR is honoured. Raw results: $WORK/results.tsv (printed).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
PG=${BENCH_PG:-postgres://dynoguard@127.0.0.1:55432}
DB=${BENCH_DB:-dynoguard_bench_replicas}
ROUNDS=3
SECONDS_PER_RUN=10
CONNS="8 2"
BASELINE=""
LOADTEST_SECONDS=15
BUILD=1
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --seconds) SECONDS_PER_RUN=$2; shift 2 ;;
    --conns) CONNS=$2; shift 2 ;;
    --baseline) BASELINE=$2; shift 2 ;;
    --loadtest-seconds) LOADTEST_SECONDS=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h|--help) sed -n '2,31p' "$0"; exit 0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
for tool in cargo python3 wrk curl psql createdb; do
  command -v "$tool" >/dev/null || { echo "needs $tool (wrk: apt-get install -y wrk)" >&2; exit 2; }
done

WORK=$(mktemp -d /tmp/dynoguard-replicas-bench.XXXXXX)
PIDS=()
cleanup() {
  # Only servers this script started and that still run (by pid, checked).
  local p
  for p in "${PIDS[@]:-}"; do
    [ -n "$p" ] && [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$(readlink -f "$HEAD_BIN/dynoguard" 2>/dev/null)" ] && kill -TERM "$p" 2>/dev/null
    [ -n "$p" ] && [ "$(readlink "/proc/$p/exe" 2>/dev/null)" = "$(readlink -f "$BASE_BIN/dynoguard" 2>/dev/null)" ] && kill -TERM "$p" 2>/dev/null
  done
  wait 2>/dev/null || true
}
trap cleanup EXIT
PASSWORD='bench-pw'
AUTH="Basic $(printf 'logplex:%s' "$PASSWORD" | base64)"
HZ=$(getconf CLK_TCK)

log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# --- build -------------------------------------------------------------------
build() { # <source dir> <dest dir>
  # Both trees share the target dir and cargo gives the dynoguard crate the
  # same artifact names whatever its path: touching forces this tree's code
  # to be compiled (the dependencies are reused), else a fresh-looking
  # build would copy the other tree's binaries.
  touch "$1/src/lib.rs" "$1/src/main.rs" "$1/src/bin/loadtest.rs"
  (cd "$1" && CARGO_TARGET_DIR=$TARGET cargo build --release --locked --features loadtest \
      --bin dynoguard --bin dynoguard-loadtest)
  mkdir -p "$2"
  cp "$TARGET/release/dynoguard" "$TARGET/release/dynoguard-loadtest" "$2/"
}
if [ -n "$BASELINE" ]; then
  # An export of REV (not a worktree), built first so that the target dir's
  # release/ ends with this tree's binaries.
  mkdir -p "$WORK/base-src"
  git -C "$ROOT" archive "$BASELINE" | tar -x -C "$WORK/base-src"
  if [ "$BUILD" = 1 ] || [ ! -x "$TARGET/bench-base/dynoguard" ]; then
    log "building baseline $BASELINE"
    build "$WORK/base-src" "$TARGET/bench-base"
  fi
fi
if [ "$BUILD" = 1 ] || [ ! -x "$TARGET/bench-head/dynoguard" ]; then
  log "building $(git -C "$ROOT" rev-parse --short HEAD)"
  build "$ROOT" "$TARGET/bench-head"
fi
HEAD_BIN=$TARGET/bench-head
BASE_BIN=$TARGET/bench-base

# --- bodies and database -----------------------------------------------------
BODIES=$WORK/load.nul
python3 "$ROOT/benches/gen_drain.py" --out "$BODIES" --bodies 500 --frames 100 --dynos 200 --over-frac 0.01 >/dev/null 2>&1
PGHOSTPORT=${PG#postgres://}; PGUSER_=${PGHOSTPORT%%@*}; PGHOSTPORT=${PGHOSTPORT#*@}
PGHOST_=${PGHOSTPORT%%:*}; PGPORT_=${PGHOSTPORT##*:}
if ! psql "$PG/$DB" -Atc 'select 1' >/dev/null 2>&1; then
  createdb -h "$PGHOST_" -p "$PGPORT_" -U "$PGUSER_" "$DB"
fi
DATABASE_PG="$PG/$DB"

# --- servers -------------------------------------------------------------------
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_server() { # <bin dir> <app> <database url> <port> <log>  -> pid on stdout
  env -i PATH="$PATH" HOME="${HOME:-/root}" \
    APP_ID_OR_NAME="$2" AUTH_TOKEN=bench-token DRAIN_PASSWORD="$PASSWORD" DYNO_TYPES='*' \
    DATABASE_URL="$3" PORT="$4" DYNOGUARD_DRY_RUN=1 HEROKU_API_URL=http://127.0.0.1:9 RUST_LOG=warn \
    "$1/dynoguard" serve >"$5" 2>&1 &
  echo $!
}
healthz() { curl -s --max-time 2 "http://127.0.0.1:$1/healthz" || true; }
wait_role() { # <port> <pattern>
  for _ in $(seq 1 200); do
    if healthz "$1" | grep -q "$2"; then return 0; fi
    sleep 0.05
  done
  echo "server on port $1 never reported '$2':" >&2; healthz "$1" >&2; return 1
}
stop_server() { kill -TERM "$1" 2>/dev/null || true; while kill -0 "$1" 2>/dev/null; do sleep 0.05; done; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
metrics() { curl -s --max-time 5 -u "x:$PASSWORD" "http://127.0.0.1:$1/metrics"; }
metric() { # <metrics text> <name or name{labels}>  -> sum of matching samples
  awk -v m="$2" '$1 == m || index($1, m "{") == 1 { s += $2; n++ } END { if (n) printf "%.6g\n", s; else print "NA" }' <<<"$1"
}
# CPU ticks of the PostgreSQL backends serving the bench database (the
# servers' pools; new for each run), summed.
pg_ticks() {
  local t=0 p
  for p in $(psql "$DATABASE_PG" -Atc "select pid from pg_stat_activity where datname = '$DB' and pid <> pg_backend_pid()"); do
    [ -r "/proc/$p/stat" ] && t=$((t + $(cpu_ticks "$p")))
  done
  echo "$t"
}

# --- one run -------------------------------------------------------------------
RESULTS=$WORK/results.tsv
printf 'round\tcase\tconns\tposts_s\tlines_s\tp50_ms\tp99_ms\tmax_ms\terrors\tcpu_s_per_M\tother_cpu_s_per_M\tpg_cpu_s_per_M\trss_mb\tother_rss_mb\tlag_s\tdropped\tqueued\tforwarded\tapplied\tleader_events\tdecide_p50_ms\tdecide_max_ms\n' >"$RESULTS"
RUN=0
run_case() { # <round> <case> <conns>
  local round=$1 case=$2 conns=$3 bin=$HEAD_BIN
  RUN=$((RUN + 1))
  local app="bench-$$-$RUN-$case-$conns" dir=$WORK/run-$RUN
  mkdir -p "$dir"
  local target other="" tport oport=""
  case "$case" in
    single|base)
      [ "$case" = base ] && bin=$BASE_BIN
      tport=$(free_port)
      : >"$dir/single.db"
      target=$(start_server "$bin" "$app" "sqlite://$dir/single.db" "$tport" "$dir/target.log"); PIDS+=("$target")
      wait_role "$tport" '^ok'
      ;;
    leader|follower)
      local lport fport lpid fpid
      lport=$(free_port); fport=$(free_port)
      lpid=$(start_server "$bin" "$app" "$DATABASE_PG" "$lport" "$dir/leader.log"); PIDS+=("$lpid")
      wait_role "$lport" 'role: leader'
      fpid=$(start_server "$bin" "$app" "$DATABASE_PG" "$fport" "$dir/follower.log"); PIDS+=("$fpid")
      wait_role "$fport" 'role: follower'
      if [ "$case" = leader ]; then target=$lpid tport=$lport other=$fpid oport=$fport
      else target=$fpid tport=$fport other=$lpid oport=$lport; fi
      ;;
  esac
  local c0 o0=0 p0=0
  c0=$(cpu_ticks "$target"); [ -n "$other" ] && o0=$(cpu_ticks "$other") && p0=$(pg_ticks)
  local threads=1
  BENCH_BODIES=$BODIES BENCH_AUTH=$AUTH wrk -t$threads -c"$conns" -d"${SECONDS_PER_RUN}s" \
    -s "$ROOT/benches/replicas.lua" "http://127.0.0.1:$tport/logs" >"$dir/wrk.txt" 2>&1
  local c1 o1=0 p1=0
  c1=$(cpu_ticks "$target"); [ -n "$other" ] && o1=$(cpu_ticks "$other") && p1=$(pg_ticks)
  local rss orss="" lag=NA dropped=NA queued=NA fwd=NA applied=NA events=NA
  rss=$(hwm_kb "$target"); [ -n "$other" ] && orss=$(hwm_kb "$other")
  local line; line=$(grep '^RESULT' "$dir/wrk.txt") || { cat "$dir/wrk.txt" >&2; return 1; }
  eval "local ${line#RESULT }"   # requests duration_us p50_us p99_us max_us socket_errors http_errors frames_per_body
  if [ "$case" = follower ]; then
    # Let the follower forward and the leader take and release (reorder hold
    # 1 s), then read both.
    sleep 3
    local lm fm; lm=$(metrics "$oport"); fm=$(metrics "$tport")
    lag=$(metric "$lm" dynoguard_forward_lag_seconds)
    dropped="$(metric "$lm" dynoguard_forwarded_dropped_total)/$(metric "$fm" dynoguard_forwarded_dropped_total)"
    queued="$(metric "$lm" dynoguard_observations_queued)/$(metric "$fm" dynoguard_observations_queued)/$(psql "$DATABASE_PG" -Atc "select count(*) from forwarded where scope = '$app'")"
    fwd=$(metric "$fm" dynoguard_forwarded_batches_total)
    applied=$(metric "$lm" dynoguard_forwarded_applied_total)
    events="$(metric "$lm" 'dynoguard_events_total{kind="over_threshold"}')/$(metric "$lm" 'dynoguard_events_total{kind="skipped"}')"
    printf '%s\n' "$lm" >"$dir/leader.metrics"; printf '%s\n' "$fm" >"$dir/follower.metrics"
  else
    local tm; tm=$(metrics "$tport"); printf '%s\n' "$tm" >"$dir/target.metrics"
    events="$(metric "$tm" 'dynoguard_events_total{kind="over_threshold"}')/$(metric "$tm" 'dynoguard_events_total{kind="skipped"}')"
  fi
  # Decisive sample -> decision at the deciding process (the leader for a
  # follower run), after the load: 5 probes.
  local decide_port=$tport probe
  [ "$case" = follower ] && decide_port=$oport
  probe=$(python3 "$ROOT/benches/probe.py" "$tport" "$decide_port" "$PASSWORD" 5 $((100000 + RUN * 10)) || echo "NA NA")
  [ -n "$other" ] && stop_server "$other"
  stop_server "$target"
  awk -v r="$round" -v c="$case" -v n="$conns" -v req="$requests" -v us="$duration_us" \
      -v p50="$p50_us" -v p99="$p99_us" -v mx="$max_us" -v err="$((socket_errors + http_errors))" \
      -v fpb="$frames_per_body" -v ct="$((c1 - c0))" -v ot="$((o1 - o0))" -v pt="$((p1 - p0))" -v hz="$HZ" \
      -v rss="$rss" -v orss="${orss:-0}" -v other="$other" \
      -v lag="$lag" -v dr="$dropped" -v q="$queued" -v fw="$fwd" -v ap="$applied" -v ev="$events" -v pr="$probe" 'BEGIN {
        split(pr, pp, " ")
        s = us / 1e6; lines = req * fpb; m = lines / 1e6
        printf "%s\t%s\t%s\t%.0f\t%.0f\t%.2f\t%.2f\t%.1f\t%d\t%.2f\t%s\t%s\t%.1f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
          r, c, n, req / s, lines / s, p50 / 1e3, p99 / 1e3, mx / 1e3, err, ct / hz / m,
          (other == "" ? "-" : sprintf("%.2f", ot / hz / m)), (other == "" ? "-" : sprintf("%.2f", pt / hz / m)),
          rss / 1024, (other == "" ? "-" : sprintf("%.1f", orss / 1024)), lag, dr, q, fw, ap, ev, pp[1], pp[2] }' >>"$RESULTS"
  log "$(tail -n 1 "$RESULTS" | cut -f1-7,10)"
}

CASES="single leader follower"
[ -n "$BASELINE" ] && CASES="single base leader follower"
for round in $(seq 1 "$ROUNDS"); do
  for conns in $CONNS; do
    for c in $CASES; do run_case "$round" "$c" "$conns"; done
  done
done

# BENCHMARKS.md's end-to-end method (dynoguard-loadtest, 32 connections),
# this build against the baseline, interleaved.
LT=$WORK/loadtest.tsv
if [ -n "$BASELINE" ]; then
  printf 'round\tbuild\treq_s\tlines_s\tp50_ms\tp99_ms\tpeak_rss_mb\n' >"$LT"
  for round in $(seq 1 "$ROUNDS"); do
    for b in head base; do
      bin=$HEAD_BIN; [ $b = base ] && bin=$BASE_BIN
      "$bin/dynoguard-loadtest" --dynoguard "$bin/dynoguard" --bodies "$BODIES" \
        --seconds "$LOADTEST_SECONDS" --connections 32 >"$WORK/loadtest-$round-$b.txt" 2>&1
      python3 - "$WORK/loadtest-$round-$b.txt" "$round" "$b" >>"$LT" <<'EOF'
import re, sys
t = open(sys.argv[1]).read()
rq = re.search(r"→\s+(\d+) req/s, (\d+) lines/s", t)
lat = re.search(r"latency: p50 ([\d.]+) ms, p99 ([\d.]+) ms", t)
rss = re.search(r"([\d.]+) MB peak", t)
print("\t".join([sys.argv[2], sys.argv[3], rq[1], rq[2], lat[1], lat[2], rss[1]]))
EOF
      log "loadtest $(tail -n 1 "$LT")"
    done
  done
fi

# --- report --------------------------------------------------------------------
echo
echo "raw results: $RESULTS"
column -t -s $'\t' "$RESULTS"
[ -f "$LT" ] && { echo; column -t -s $'\t' "$LT"; }
echo
echo "medians over $ROUNDS round(s) (lines/s: min - max):"
python3 - "$RESULTS" "$LT" <<'EOF'
import csv, statistics as st, sys, os
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
def med(v):
    v = [float(x) for x in v if x not in ("-", "NA", "")]
    return st.median(v) if v else None
def decide(x):  # probe.py gives up after 3 s
    return "-" if x is None else ("none in 3 s" if x >= 3000 else f"{x:.1f}")
def f(x, fmt):
    return "-" if x is None else fmt.format(x)
print("| case | conns | lines/s | POSTs/s | lines/s range | p99 ms | CPU-s / M lines (this; other replica; PG backends) | peak RSS MB (this; other) | decisive sample → decision, p50 ms |")
print("|---|---|---|---|---|---|---|---|---|")
order = ["single", "base", "leader", "follower"]
keys = sorted({(r["case"], r["conns"]) for r in rows}, key=lambda k: (-int(k[1]), order.index(k[0])))
for case, conns in keys:
    g = [r for r in rows if r["case"] == case and r["conns"] == conns]
    ls = [float(r["lines_s"]) for r in g]
    cpu = f(med(r["cpu_s_per_M"] for r in g), "{:.2f}")
    if case in ("leader", "follower"):
        cpu += "; " + f(med(r["other_cpu_s_per_M"] for r in g), "{:.2f}") + "; " + f(med(r["pg_cpu_s_per_M"] for r in g), "{:.2f}")
    rss = f(med(r["rss_mb"] for r in g), "{:.1f}")
    if case in ("leader", "follower"):
        rss += "; " + f(med(r["other_rss_mb"] for r in g), "{:.1f}")
    print(f"| {case} | {conns} | {med(ls)/1e6:.2f} M | {f(med(r['posts_s'] for r in g), '{:,.0f}')} | "
          f"{min(ls)/1e6:.2f} – {max(ls)/1e6:.2f} M | {f(med(r['p99_ms'] for r in g), '{:.2f}')} | {cpu} | {rss} | "
          f"{decide(med(r['decide_p50_ms'] for r in g))} |")
fol = [r for r in rows if r["case"] == "follower"]
if fol:
    print()
    print("follower runs, the leader after the run: forward_lag_seconds, forwarded_dropped_total (both),"
          " observations_queued (leader/follower/rows left in `forwarded`), batches forwarded → applied, leader events over_threshold/skipped:")
    for r in fol:
        print(f"  round {r['round']} c={r['conns']}: lag {r['lag_s']} s, dropped {r['dropped']}, queued {r['queued']}, "
              f"{r['forwarded']} → {r['applied']}, events {r['leader_events']}")
    ref = [r for r in rows if r["case"] == "single"]
    print("  single-process events over_threshold/skipped, same bodies: " + ", ".join(sorted({r["leader_events"] for r in ref})))
lt = sys.argv[2]
if os.path.exists(lt):
    t = list(csv.DictReader(open(lt), delimiter="\t"))
    print()
    print("| dynoguard-loadtest, 32 connections | req/s (median) | lines/s | range req/s | p99 ms | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for b in ("head", "base"):
        g = [r for r in t if r["build"] == b]
        if g:
            q = [float(r["req_s"]) for r in g]
            print(f"| {b} | {st.median(q):,.0f} | {med(r['lines_s'] for r in g)/1e6:.2f} M | {min(q):,.0f} – {max(q):,.0f} | "
                  f"{med(r['p99_ms'] for r in g):.2f} | {med(r['peak_rss_mb'] for r in g):.1f} |")
EOF
