#!/usr/bin/env bash
# End to end over loopback HTTP (issue 21): the no-parse floor
# (examples/floor.rs) and `dynoguard serve` (SQLite, dry run, auth,
# Frame-Id de-duplication and history writes on) alternately under the same
# `wrk` load, on the same bodies. Prints lines/s, CPU-s per M lines, p99 and
# peak RSS of each, and dynoguard/floor ratios.
#
#   benches/end_to_end.sh                 # all scenarios, 1 round, 20 s each
#   SECONDS_EACH=30 ROUNDS=2 benches/end_to_end.sh
#   SCENARIOS="worst" benches/end_to_end.sh
#   BASELINE_BIN=/tmp/dynoguard-old benches/end_to_end.sh   # also runs an older build ("baseline")
#
# Scenarios (wrk threads × connections):
#   mix8   the issue-21 mix: gen_drain.py --bodies 400 --frames 100 --seed 11, -t2 -c8
#   mix2   the same bodies, -t2 -c2
#   worst  gen_drain.py --worst-case --bodies 2000 --frames 100 --seed 3 (10,000 dynos,
#          50 % memory samples), timestamps advanced an hour per pass (drain.lua,
#          DRAIN_ADVANCE=1) so every repeated sample is fresh, -t1 -c8 (one sender
#          keeps each dyno's samples in order, as Logplex does)
#
# Needs: cargo, python3, wrk, curl. Wall-clock figures: run it on a quiet machine.
# CARGO_TARGET_DIR is honoured. Only 127.0.0.1 is used.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
secs="${SECONDS_EACH:-20}"
rounds="${ROUNDS:-1}"
scenarios="${SCENARIOS:-mix8 mix2 worst}"
port="${BENCH_PORT:-5098}"
work="$(mktemp -d /tmp/dynoguard-e2e.XXXXXX)"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

for tool in wrk python3 curl; do
    command -v "$tool" >/dev/null || { echo "end_to_end.sh: $tool is missing (apt-get install -y $tool)" >&2; exit 2; }
done

echo "# building (release): dynoguard and examples/floor" >&2
(cd "$root" && cargo build --release --quiet --bin dynoguard --example floor)
dynoguard="$target/release/dynoguard"
floor="$target/release/examples/floor"

echo "# generating bodies in $work" >&2
python3 "$here/gen_drain.py" --out "$work/mix.nul" --bodies 400 --frames 100 --seed 11 2>/dev/null
python3 "$here/gen_drain.py" --out "$work/worst.nul" --bodies 2000 --frames 100 --worst-case --seed 3 2>/dev/null

clk_tck="$(getconf CLK_TCK)"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
peak_rss_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

wait_port() {
    for _ in $(seq 1 200); do
        # A bare connect: no request, so nothing is counted or logged.
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "end_to_end.sh: server on $port did not come up" >&2
    return 1
}

start_server() { # $1 = floor | dynoguard | baseline
    if [[ "$1" == floor ]]; then
        PORT="$port" "$floor" >"$work/server.log" 2>&1 &
    else
        local bin="$dynoguard"
        if [[ "$1" == baseline ]]; then bin="$BASELINE_BIN"; fi
        rm -f "$work"/db.sqlite*
        APP_ID_OR_NAME=bench-app DRAIN_PASSWORD=secret DASHBOARD_PASSWORD=secret \
            DATABASE_URL="sqlite://$work/db.sqlite" PORT="$port" DYNOGUARD_DRY_RUN=1 \
            HEROKU_API_URL=http://127.0.0.1:9 HEROKU_API_KEY=bench RUST_LOG=warn \
            "$bin" serve >"$work/server.log" 2>&1 &
    fi
    server_pid=$!
    wait_port
}

stop_server() {
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
}

# Latency as printed by wrk (e.g. 812.00us, 1.20ms, 1.01s) in ms.
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else printf "%s", v }'
}

declare -A result
run_one() { # $1 scenario, $2 server
    local sc="$1" srv="$2" bodies threads conns advance=0
    case "$sc" in
        mix8) bodies="$work/mix.nul"; threads=2; conns=8 ;;
        mix2) bodies="$work/mix.nul"; threads=2; conns=2 ;;
        worst) bodies="$work/worst.nul"; threads=1; conns=8; advance=1 ;;
        *) echo "unknown scenario $sc" >&2; exit 2 ;;
    esac
    start_server "$srv"
    local before after out rps p99 non2xx cpu_s lines_s cpu_per_m rss_mb stale=""
    before="$(cpu_ticks "$server_pid")"
    out="$(DRAIN_BODIES="$bodies" DRAIN_AUTH="dynoguard:secret" DRAIN_FRAMES=100 DRAIN_ADVANCE="$advance" \
        wrk -t"$threads" -c"$conns" -d"${secs}s" --latency -s "$here/drain.lua" "http://127.0.0.1:$port/logs")"
    after="$(cpu_ticks "$server_pid")"
    rss_mb="$(awk -v k="$(peak_rss_kb "$server_pid")" 'BEGIN {printf "%.1f", k / 1024}')"
    if [[ "$srv" != floor ]]; then
        stale="$(curl -s -u x:secret "http://127.0.0.1:$port/metrics" | awk '/^dynoguard_lines_stale_total/ {print $2}')"
    fi
    stop_server
    rps="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")"
    p99="$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")"
    non2xx="$(awk '/Non-2xx/ {print $NF}' <<<"$out")"
    cpu_s="$(awk -v a="$before" -v b="$after" -v t="$clk_tck" 'BEGIN {printf "%.2f", (b - a) / t}')"
    lines_s="$(awk -v r="$rps" 'BEGIN {printf "%.0f", r * 100}')"
    cpu_per_m="$(awk -v c="$cpu_s" -v r="$rps" -v s="$secs" 'BEGIN {printf "%.3f", c / (r * 100 * s / 1e6)}')"
    printf '%-6s %-9s lines/s %10s  CPU-s/M lines %6s  p99 %8s ms  peak RSS %6s MB%s%s\n' \
        "$sc" "$srv" "$lines_s" "$cpu_per_m" "$p99" "$rss_mb" \
        "${non2xx:+  non-2xx $non2xx}" "${stale:+  stale samples $stale}"
    result["$sc,$srv,lines"]="$lines_s"
    result["$sc,$srv,cpu"]="$cpu_per_m"
    result["$sc,$srv,p99"]="$p99"
    result["$sc,$srv,rss"]="$rss_mb"
}

echo "# $(date -u +%FT%TZ) commit $(cd "$root" && git rev-parse --short HEAD) on $(nproc) cores, ${secs}s per run"
for r in $(seq 1 "$rounds"); do
    for sc in $scenarios; do
        for srv in floor dynoguard ${BASELINE_BIN:+baseline}; do
            run_one "$sc" "$srv"
        done
        awk -v dl="${result[$sc,dynoguard,lines]}" -v fl="${result[$sc,floor,lines]}" \
            -v dc="${result[$sc,dynoguard,cpu]}" -v fc="${result[$sc,floor,cpu]}" -v sc="$sc" -v r="$r" \
            'BEGIN {printf "%-6s round %d  ratio dynoguard/floor: throughput %.2fx  CPU per line %.2fx\n", sc, r, dl / fl, dc / fc}'
        if [[ -n "${BASELINE_BIN:-}" ]]; then
            awk -v dl="${result[$sc,baseline,lines]}" -v fl="${result[$sc,floor,lines]}" \
                -v dc="${result[$sc,baseline,cpu]}" -v fc="${result[$sc,floor,cpu]}" -v sc="$sc" -v r="$r" \
                'BEGIN {printf "%-6s round %d  ratio baseline/floor:  throughput %.2fx  CPU per line %.2fx\n", sc, r, dl / fl, dc / fc}'
        fi
    done
done
