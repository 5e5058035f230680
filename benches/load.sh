#!/usr/bin/env bash
# Load test: rill beside lighttpd and nginx (when installed), same machine, same run.
#
#   bash benches/load.sh [SECONDS] [REPS]       # defaults: 5 s per run, 3 repetitions
#   ONLY="S1 S7" bash benches/load.sh 3 1       # some scenarios only (S7: the uploads)
#
# Builds rill (release), makes test files under $WORK (default /tmp/rill-load), and for each
# scenario starts each server pinned to CPU 1, drives it with wrk pinned to CPU 0, and prints
# req/s, MB/s, p50/p99, server CPU per request and peak RSS — medians over the repetitions,
# and ratios to lighttpd. Only 127.0.0.1 is ever contacted; every run is bounded by SECONDS.
# With oha installed (cargo install oha), S1 and S2 are also driven by oha (S1oha, S2oha): a
# second client, so a result is not an artefact of wrk's own limits.
# Needs: wrk (apt-get install wrk); optional: lighttpd, nginx-light, curl, oha.
set -euo pipefail
SECS=${1:-5}
REPS=${2:-3}
WORK=${WORK:-/tmp/rill-load}
HERE=$(cd "$(dirname "$0")/.." && pwd)
command -v wrk >/dev/null || { echo "wrk is required: apt-get install wrk" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"

cargo build --release --manifest-path "$HERE/Cargo.toml" >/dev/null
RILL="$HERE/target/release/rill"
mkdir -p "$WORK/www/uploads" "$WORK/tmp"
[ -f "$WORK/www/1k.bin" ] || head -c 1024 /dev/urandom >"$WORK/www/1k.bin"
[ -f "$WORK/www/1m.bin" ] || head -c 1048576 /dev/urandom >"$WORK/www/1m.bin"
[ -f "$WORK/big.bin" ] || head -c 268435456 /dev/urandom >"$WORK/big.bin"

PORT=18080
start_server() { # name -> sets SERVER_PID
  case "$1" in
    rill) taskset -c 1 "$RILL" --listen 127.0.0.1:$PORT --uploads --max-body 2G --log-level warn "$WORK/www" >/dev/null 2>&1 & ;;
    lighttpd)
      sed -e "s|@ROOT@|$WORK/www|; s|@PORT@|$PORT|" >"$WORK/tmp/lighttpd.conf" <<CONF
server.document-root = "@ROOT@"
server.bind = "127.0.0.1"
server.port = @PORT@
server.network-backend = "sendfile"
server.max-fds = 20000
server.max-connections = 10000
server.listen-backlog = 4096
server.max-keep-alive-requests = 65535
mimetype.assign = ( "" => "application/octet-stream" )
CONF
      taskset -c 1 lighttpd -D -f "$WORK/tmp/lighttpd.conf" >/dev/null 2>&1 & ;;
    nginx)
      cat >"$WORK/tmp/nginx.conf" <<CONF
worker_processes 1; daemon off; user root; pid $WORK/tmp/nginx.pid; error_log $WORK/tmp/nginx.err;
events { worker_connections 20000; use epoll; }
http { access_log off; sendfile on; tcp_nopush on; keepalive_requests 100000000;
  client_body_temp_path $WORK/tmp/body; default_type application/octet-stream;
  server { listen 127.0.0.1:$PORT backlog=4096; root $WORK/www;
    location /uploads/ { dav_methods PUT; client_max_body_size 2g; } } }
CONF
      taskset -c 1 nginx -c "$WORK/tmp/nginx.conf" >/dev/null 2>&1 & ;;
  esac
  SERVER_PID=$!
  for _ in $(seq 50); do
    (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$1 did not start" >&2; return 1
}
stop_server() { pkill -P "$SERVER_PID" 2>/dev/null || true; kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; }
cpu_ticks() { # utime+stime of the server and its children, in clock ticks
  local total=0
  for pid in "$SERVER_PID" $(pgrep -P "$SERVER_PID" || true); do
    [ -r /proc/$pid/stat ] && total=$((total + $(awk '{print $14 + $15}' /proc/$pid/stat)))
  done
  echo $total
}
# Uploads are measured on warm page cache: write and delete a scratch file a
# little bigger than the upload first, so no run pays for reclaiming memory
# that an earlier run left full (the harness in ../shared/bench does the same).
prewarm() {
  dd if=/dev/zero of="$WORK/www/uploads/.scratch" bs=1M count=320 status=none
  rm -f "$WORK/www/uploads/.scratch"
}
peak_rss_kib() {
  local total=0
  for pid in "$SERVER_PID" $(pgrep -P "$SERVER_PID" || true); do
    [ -r /proc/$pid/status ] && total=$((total + $(awk '/VmHWM/{print $2}' /proc/$pid/status)))
  done
  echo $total
}
to_us() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else if (v ~ /s$/) print n * 1000000; else print n }'; }

# One wrk run: prints "req/s MB/s p50_us p99_us cpu_us_per_req rss_kib"
run_wrk() {
  local before after out hz
  hz=$(getconf CLK_TCK)
  before=$(cpu_ticks)
  out=$(taskset -c 0 wrk -t1 "$@" --latency -d"${SECS}s" 2>&1)
  after=$(cpu_ticks)
  local rps mbs p50 p99
  rps=$(awk '/Requests\/sec/{print $2}' <<<"$out")
  mbs=$(awk '/Transfer\/sec/{v=$2; n=v+0; if (v ~ /GB/) n*=1000; else if (v ~ /KB/) n/=1000; else if (v ~ /B$/ && v !~ /MB/) n/=1e6; print n}' <<<"$out")
  p50=$(to_us "$(awk '$1=="50%"{print $2}' <<<"$out")")
  p99=$(to_us "$(awk '$1=="99%"{print $2}' <<<"$out")")
  awk -v r="$rps" -v m="$mbs" -v a="$p50" -v b="$p99" -v t=$((after - before)) -v hz="$hz" -v s="$SECS" -v rss="$(peak_rss_kib)" \
    'BEGIN { printf "%.0f %.1f %.0f %.0f %.2f %d\n", r, m, a, b, (r > 0 ? t / hz * 1e6 / (r * s) : 0), rss }'
}

# One oha run (one worker thread, on the client core), same columns as run_wrk.
# Its MB/s counts body bytes only.
run_oha() {
  local before after out hz
  hz=$(getconf CLK_TCK)
  before=$(cpu_ticks)
  out=$(taskset -c 0 oha --no-tui --worker-threads 1 --output-format json -z "${SECS}s" "$@")
  after=$(cpu_ticks)
  python3 -c '
import json, sys
d = json.loads(sys.argv[1]); s = d["summary"]; p = d["latencyPercentiles"]
ticks, hz, secs, rss = (float(x) for x in sys.argv[2:])
rps = s["requestsPerSec"] or 0
cpu = ticks / hz * 1e6 / (rps * secs) if rps else 0
p50, p99 = (p["p50"] or 0) * 1e6, (p["p99"] or 0) * 1e6
print("%.0f %.1f %.0f %.0f %.2f %.0f" % (rps, s["sizePerSec"] / 1e6, p50, p99, cpu, rss))
' "$out" $((after - before)) "$hz" "$SECS" "$(peak_rss_kib)"
}

URL=http://127.0.0.1:$PORT
scenario() { # the wrk arguments of each scenario
  case "$1" in
    S1) run_wrk -c64 "$URL/1k.bin" ;;
    S2) run_wrk -c64 -H "Connection: close" "$URL/1k.bin" ;;
    S3) run_wrk -c16 --timeout 10s "$URL/1m.bin" ;;
    S5) run_wrk -c64 -s "$HERE/benches/pipeline.lua" "$URL/1k.bin" -- 16 ;;
    S6) run_wrk -c10000 --timeout 10s "$URL/1k.bin" ;;
    S1oha) run_oha -c 64 "$URL/1k.bin" ;;
    S2oha) run_oha -c 64 --disable-keepalive "$URL/1k.bin" ;;
    *) echo "unknown scenario $1 (S1 S2 S3 S5 S6 S1oha S2oha; S7 for uploads)" >&2 ;;
  esac
}
SCENARIOS=(S1 S2 S3 S5 S6)
command -v oha >/dev/null && SCENARIOS+=(S1oha S2oha)
UPLOADS=yes
if [ -n "${ONLY:-}" ]; then
  [[ " $ONLY " == *" S7 "* ]] || UPLOADS=no
  read -ra SCENARIOS <<<"${ONLY//S7/}"
fi
SERVERS=(rill)
command -v lighttpd >/dev/null && SERVERS+=(lighttpd)
command -v nginx >/dev/null && SERVERS+=(nginx)
RESULTS=$(mktemp)
for rep in $(seq "$REPS"); do
  for scenario in "${SCENARIOS[@]}"; do
    for server in "${SERVERS[@]}"; do
      start_server "$server"
      echo "$scenario $server $(scenario "$scenario")" >>"$RESULTS"
      stop_server
    done
  done
  if [ "$UPLOADS" = yes ] && command -v curl >/dev/null; then # uploads: 256 MiB, PUT and multipart, next to dd
    for server in "${SERVERS[@]}"; do
      [ "$server" = lighttpd ] && continue
      start_server "$server"
      rm -f "$WORK/www/uploads/"*
      prewarm
      put=$(taskset -c 0 curl -s -o /dev/null -w '%{speed_upload}' -T "$WORK/big.bin" "http://127.0.0.1:$PORT/uploads/put-$rep.bin")
      echo "S7put $server $(awk -v b="$put" 'BEGIN{printf "0 %.1f 0 0 0", b/1e6}') $(peak_rss_kib)" >>"$RESULTS"
      if [ "$server" = rill ]; then
        rm -f "$WORK/www/uploads/"*
        prewarm
        form=$(taskset -c 0 curl -s -o /dev/null -w '%{speed_upload}' -F "file=@$WORK/big.bin" "http://127.0.0.1:$PORT/uploads/")
        echo "S7form $server $(awk -v b="$form" 'BEGIN{printf "0 %.1f 0 0 0", b/1e6}') $(peak_rss_kib)" >>"$RESULTS"
      fi
      stop_server
    done
    rm -f "$WORK/www/uploads/"*
    prewarm
    ddmbs=$(dd if="$WORK/big.bin" of="$WORK/www/uploads/dd.bin" bs=1M 2>&1 | awk '/copied/{v=$(NF-1); u=$NF; if (u ~ /GB/) v*=1000; print v}')
    echo "S7put dd 0 $ddmbs 0 0 0 0" >>"$RESULTS"
    rm -f "$WORK/www/uploads/"*
  fi
done

# Medians per scenario and server, ratios to lighttpd (or to dd for uploads).
python3 - "$RESULTS" <<'PY'
import sys, statistics
from collections import defaultdict
rows = defaultdict(list)
for line in open(sys.argv[1]):
    s, server, *v = line.split()
    if len(v) != 6:  # a run that failed has said so on stderr; leave it out
        continue
    rows[(s, server)].append([float(x) for x in v])
med = {k: [statistics.median(col) for col in zip(*v)] for k, v in rows.items()}
print(f"{'scenario':8} {'server':9} {'req/s':>9} {'MB/s':>8} {'p50 us':>8} {'p99 us':>8} {'CPU us/req':>10} {'peak RSS MiB':>12} {'ratio':>7}")
for s in ["S1", "S2", "S3", "S5", "S6", "S1oha", "S2oha", "S7put", "S7form"]:
    base = med.get((s, "lighttpd")) or med.get((s, "dd"))
    for (scen, server), m in sorted(med.items()):
        if scen != s:
            continue
        key = 1 if s in ("S3", "S7put", "S7form") else 0
        ratio = f"{m[key] / base[key]:.2f}x" if base and base[key] else "-"
        # wrk's latency and the CPU window mean little with pipelining (one
        # sample per batch): S5 is judged by req/s.
        lat = ("-", "-", "-") if s == "S5" else (f"{m[2]:.0f}", f"{m[3]:.0f}", f"{m[4]:.2f}")
        print(f"{s:8} {server:9} {m[0]:9.0f} {m[1]:8.1f} {lat[0]:>8} {lat[1]:>8} {lat[2]:>10} {m[5] / 1024:12.1f} {ratio:>7}")
PY
rm -f "$RESULTS"
