#!/usr/bin/env bash
# Folder downloads and big listings, measured beside their natural peer in the same run:
#
#   bash benches/folders.sh [REPS]        # default 3 repetitions; medians are printed
#
# 1. A 1 GiB folder of 10 000 files (100 folders of 100 files of 105 KiB), downloaded as
#    ?tar and ?zip with curl (pinned to CPU 0, rill to CPU 1), beside `tar -c` of the same
#    folder piped through `cat` to /dev/null (GNU tar skips reading files when its output
#    is /dev/null itself). Prints MB/s, rill's CPU seconds and its peak RSS.
# 2. A folder of 100 000 entries listed by 50 concurrent clients: rill's peak RSS, and the
#    time until the last of them has the whole page.
# Only 127.0.0.1 is contacted; every transfer is bounded by a curl --max-time.
set -euo pipefail
REPS=${1:-3}
WORK=${WORK:-/tmp/rill-folders}
HERE=$(cd "$(dirname "$0")/.." && pwd)
PORT=18090
cargo build --release --manifest-path "$HERE/Cargo.toml" >/dev/null
RILL="$HERE/target/release/rill"

mkdir -p "$WORK/www"
if [ ! -f "$WORK/www/gib/d99/f99.bin" ]; then
  echo "making $WORK/www/gib (1 GiB, 10 000 files)..." >&2
  python3 - "$WORK/www/gib" <<'PY'
import os, sys
root = sys.argv[1]
chunk = os.urandom(1 << 20)
for d in range(100):
    os.makedirs(f"{root}/d{d}", exist_ok=True)
    for f in range(100):
        n = d * 100 + f
        start = (n * 7919) % ((1 << 20) - 107374)
        with open(f"{root}/d{d}/f{f}.bin", "wb") as out:
            out.write(chunk[start:start + 107374])
PY
fi
if [ ! -f "$WORK/www/many/e099999" ]; then
  echo "making $WORK/www/many (100 000 entries)..." >&2
  mkdir -p "$WORK/www/many"
  python3 -c "
for i in range(100000): open('$WORK/www/many/e%06d' % i, 'w').close()"
fi
# Warm the page cache, so every run reads from memory.
tar -cf - -C "$WORK/www" gib | cat >/dev/null

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
cpu_secs() { awk '{print ($14 + $15) / 100}' "/proc/$1/stat"; }
peak_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }

start_rill() {
  taskset -c 1 "$RILL" --listen 127.0.0.1:$PORT --log-level warn "$WORK/www" >/dev/null 2>&1 &
  RILL_PID=$!
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && return; sleep 0.1; done
  echo "rill did not start" >&2; exit 1
}

echo "== 1 GiB, 10 000 files: MB/s (median of $REPS)"
for kind in tar zip; do
  rates=(); cpus=(); peaks=()
  for _ in $(seq "$REPS"); do
    start_rill
    before=$(cpu_secs $RILL_PID)
    out=$(taskset -c 0 curl -s --max-time 120 -o /dev/null -w '%{size_download} %{time_total}' \
      "http://127.0.0.1:$PORT/gib/?$kind")
    rates+=("$(echo "$out" | awk '{printf "%.0f", $1 / $2 / 1e6}')")
    cpus+=("$(echo "$(cpu_secs $RILL_PID) - $before" | bc -l)")
    peaks+=("$(peak_kib $RILL_PID)")
    kill $RILL_PID; wait $RILL_PID 2>/dev/null || true
  done
  printf "rill ?%s   %5s MB/s   rill CPU %5.2f s   peak RSS %6s KiB\n" "$kind" \
    "$(printf '%s\n' "${rates[@]}" | median)" "$(printf '%s\n' "${cpus[@]}" | median)" \
    "$(printf '%s\n' "${peaks[@]}" | median)"
done
rates=()
for _ in $(seq "$REPS"); do
  start=$(date +%s.%N)
  bytes=$(taskset -c 1 tar -cf - -C "$WORK/www" gib | taskset -c 0 wc -c)
  end=$(date +%s.%N)
  rates+=("$(echo "$bytes / ($end - $start) / 1000000" | bc -l | cut -d. -f1)")
done
printf "tar -c | wc   %5s MB/s\n" "$(printf '%s\n' "${rates[@]}" | median)"

echo "== 100 000 entries, 50 concurrent listings"
for order in name size; do
  start_rill
  start=$(date +%s.%N)
  for _ in $(seq 50); do
    taskset -c 0 curl -s --max-time 120 -o /dev/null "http://127.0.0.1:$PORT/many/?sort=$order" &
  done
  wait $(jobs -p | grep -v "^$RILL_PID$") 2>/dev/null || true
  end=$(date +%s.%N)
  printf "sort=%-5s   all 50 done in %.2f s   rill peak RSS %s KiB\n" "$order" \
    "$(echo "$end - $start" | bc -l)" "$(peak_kib $RILL_PID)"
  kill $RILL_PID; wait $RILL_PID 2>/dev/null || true
done
