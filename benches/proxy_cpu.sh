#!/usr/bin/env bash
# Where the CPU of a proxied request goes: rill, nginx and HAProxy in front of one lighttpd
# backend, and wrk straight to that backend beside them.
#
#   bash benches/proxy_cpu.sh [SECONDS] [ROUNDS]     # defaults: 5 s per run, 4 rounds
#
# The proxies run at once, pinned to CPU 1; lighttpd and wrk share CPU 0, as in the S8
# scenario of ../shared/bench. The runs alternate (rill, nginx, haproxy, direct, rill, ...)
# so the drift of a shared machine hits all alike. Each line gives wrk's req/s and, per
# request, the CPU time of the proxy (every process of it), of the backend, of wrk, and of
# CPU 0 in all (backend + wrk), read from /proc/PID/stat and the shell's `time`.
# When CPU 0 is the limit, req/s is 1 / (CPU 0's µs per request) whatever the proxy, and
# the `direct` row (wrk to lighttpd, no proxy) is the most any proxy could reach. The
# `null` row (benches/null_proxy.c, built with gcc when there is one) is the least a proxy
# can be: each client connection paired with a backend one, bytes copied, no HTTP; what
# it makes is the ceiling for a proxy that parses nothing. `nginx+hdr` is the same nginx
# made to send the backend every field rill sends (X-Forwarded-Proto, X-Forwarded-Host,
# Forwarded and Via besides Host and X-Forwarded-For): the backend, on CPU 0, parses
# each of them. The
# proxies' own CPU per request is then the figure that compares them. The backend's shows
# whether a proxy makes it work harder (longer forwarded heads, say).
# Only 127.0.0.1 is contacted; every run is bounded by SECONDS.
# Needs: wrk, lighttpd, nginx (apt-get install wrk lighttpd nginx-light); HAProxy if installed.
set -euo pipefail
SECS=${1:-5}
ROUNDS=${2:-4}
WORK=${WORK:-/tmp/rill-proxy-cpu}
HERE=$(cd "$(dirname "$0")/.." && pwd)
for tool in wrk lighttpd nginx; do
  command -v $tool >/dev/null || { echo "$tool is required: apt-get install wrk lighttpd nginx-light" >&2; exit 1; }
done
cargo build --release --manifest-path "$HERE/Cargo.toml" >/dev/null
RILL="$HERE/target/release/rill"
mkdir -p "$WORK/backend/api" "$WORK/empty" "$WORK/nginx/logs"
[ -f "$WORK/backend/api/1k.bin" ] || head -c 1024 /dev/urandom >"$WORK/backend/api/1k.bin"
BACKEND=18281 RILL_PORT=18280 NGINX_PORT=18282 HAPROXY_PORT=18283 NULL_PORT=18284 NGINX_SAME_PORT=18285

cat >"$WORK/lighttpd.conf" <<CONF
server.document-root = "$WORK/backend"
server.bind = "127.0.0.1"
server.port = $BACKEND
server.network-backend = "sendfile"
server.max-keep-alive-requests = 65535
server.max-keep-alive-idle = 65
CONF
cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; use epoll; }
http {
    access_log off;
    tcp_nodelay on;
    keepalive_requests 100000000;
    client_body_temp_path $WORK/nginx;
    proxy_temp_path $WORK/nginx;
    upstream backend { server 127.0.0.1:$BACKEND; keepalive 64; keepalive_requests 100000000; }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location /api/ {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_buffering off;
        }
    }
    # nginx made to send the backend every field rill sends (issue 13 asks for all of them).
    server {
        listen 127.0.0.1:$NGINX_SAME_PORT;
        location /api/ {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
            proxy_set_header Forwarded "for=\$remote_addr;host=\\"\$host\\";proto=\$scheme";
            proxy_set_header Via "1.1 nginx";
            proxy_buffering off;
        }
    }
}
CONF

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
taskset -c 0 lighttpd -D -f "$WORK/lighttpd.conf" & pids+=($!)
taskset -c 1 "$RILL" --listen 127.0.0.1:$RILL_PORT --route /api=127.0.0.1:$BACKEND --log-level warn "$WORK/empty" >/dev/null 2>&1 & pids+=($!)
RILL_PID=$!
taskset -c 1 nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" & pids+=($!)
NGINX_PID=$!
PROXIES="rill nginx nginx+hdr"
if command -v haproxy >/dev/null; then
  cat >"$WORK/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn 9000
defaults
    mode http
    timeout connect 3s
    timeout client 65s
    timeout server 65s
    option http-keep-alive
    http-reuse safe
frontend fe
    bind 127.0.0.1:$HAPROXY_PORT
    option forwardfor
    use_backend be if { path_beg /api/ }
backend be
    server b1 127.0.0.1:$BACKEND
CONF
  taskset -c 1 haproxy -f "$WORK/haproxy.cfg" & pids+=($!)
  HAPROXY_PID=$!
  PROXIES="$PROXIES haproxy"
fi
if command -v gcc >/dev/null; then
  gcc -O2 -o "$WORK/null_proxy" "$HERE/benches/null_proxy.c"
  taskset -c 1 "$WORK/null_proxy" $NULL_PORT $BACKEND & pids+=($!)
  NULL_PID=$!
  PROXIES="$PROXIES null"
fi
sleep 1
BACKEND_PID=${pids[0]}

TICK=$(getconf CLK_TCK)
cpu_ticks() { # PIDs... -> utime+stime summed
  local total=0 pid
  for pid in "$@"; do total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat"))); done
  echo $total
}
per_request() { # ticks requests -> microseconds
  awk -v t="$1" -v n="$2" -v hz="$TICK" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }'
}

printf '%-6s %-9s %9s %12s %14s %10s %12s\n' round proxy req/s "proxy µs/r" "backend µs/r" "wrk µs/r" "CPU 0 µs/r"
TIMEFORMAT='%U %S'
for round in $(seq 1 "$ROUNDS"); do
  for proxy in $PROXIES direct; do
    case $proxy in
      rill) port=$RILL_PORT; procs=($RILL_PID) ;;
      nginx) port=$NGINX_PORT; procs=($NGINX_PID $(pgrep -P $NGINX_PID | tr '\n' ' ')) ;;
      nginx+hdr) port=$NGINX_SAME_PORT; procs=($NGINX_PID $(pgrep -P $NGINX_PID | tr '\n' ' ')) ;;
      haproxy) port=$HAPROXY_PORT; procs=($HAPROXY_PID) ;;
      null) port=$NULL_PORT; procs=($NULL_PID) ;;
      direct) port=$BACKEND; procs=() ;;
    esac
    p0=$(cpu_ticks "${procs[@]}"); b0=$(cpu_ticks $BACKEND_PID)
    { time taskset -c 0 wrk -t1 -c64 -d${SECS}s "http://127.0.0.1:$port/api/1k.bin" >"$WORK/wrk.out"; } 2>"$WORK/wrk.time"
    p1=$(cpu_ticks "${procs[@]}"); b1=$(cpu_ticks $BACKEND_PID)
    out=$(cat "$WORK/wrk.out")
    requests=$(awk '/requests in/ { print $1 }' <<<"$out")
    rps=$(awk '/Requests\/sec/ { print $2 }' <<<"$out")
    wrk_us=$(awk -v n="$requests" '{ printf "%.2f", ($1 + $2) * 1e6 / n }' "$WORK/wrk.time")
    backend_us=$(per_request $((b1 - b0)) "$requests")
    proxy_us=$(per_request $((p1 - p0)) "$requests")
    [ $proxy = direct ] && proxy_us=-
    printf '%-6s %-9s %9s %12s %14s %10s %12s\n' "$round" $proxy "$rps" "$proxy_us" \
      "$backend_us" "$wrk_us" "$(awk -v a="$backend_us" -v b="$wrk_us" 'BEGIN { printf "%.2f", a + b }')"
  done
done
