#!/usr/bin/env bash
# squatters.sh TM_TARGET LIBALLOC - another user cannot stop a process's
# telemetry by creating its temporary file names first.
#
# In a sticky world-writable directory (like /dev/shm), user `nobody`
# creates `.liballoc.<pid>.tmp` for the next 300 pids, the names a writer
# used to build its segment under.  A process of user `daemon` with
# liballoc preloaded must still publish its segment there.  Run as root
# (to act as both users); skipped (77) otherwise.
set -euo pipefail
target=$1 lib=$2
[ "$(id -u)" -eq 0 ] || { echo "skipped: needs root to act as two users"; exit 77; }
command -v setpriv >/dev/null || { echo "skipped: no setpriv"; exit 77; }

dir=$(mktemp -d /tmp/squatters.XXXXXX)
trap 'rm -rf "$dir"' EXIT
chmod 1777 "$dir"
as() { local user=$1; shift; setpriv --reuid="$user" --regid="$(id -g "$user")" --clear-groups -- "$@"; }

# The next pids the kernel hands out (with other processes starting meanwhile).
next=$(( $(cat /proc/sys/kernel/ns_last_pid) + 1 ))
as nobody bash -c 'for ((p = $1; p < $1 + 300; p++)); do : > "$2/.liballoc.$p.tmp"; done' _ "$next" "$dir"
squatted=$(find "$dir" -name '.liballoc.*.tmp' -user nobody | wc -l)
[ "$squatted" -eq 300 ] || { echo "FAIL: planted $squatted names, not 300"; exit 1; }

chmod o+rx "$(dirname "$target")" "$(dirname "$lib")" 2>/dev/null || true
out=$dir/out
setpriv --reuid=daemon --regid="$(id -g daemon)" --clear-groups -- env LD_PRELOAD="$lib" ALLOC_CONF="telemetry_dir:$dir,stats_interval_ms:50" \
  "$target" hold 100 1000 3000 >"$out" 2>&1 &
victim=$!
seg=$dir/liballoc.$victim
for _ in $(seq 1 60); do   # up to 6 s: 1 s of quiet start, then one interval
  [ -s "$seg" ] && break
  sleep 0.1
done
found=0
[ -s "$seg" ] && [ "$(stat -c %U "$seg")" = daemon ] && found=1
wait "$victim" || true
if [ "$found" -ne 1 ]; then
  echo "FAIL: pid $victim (user daemon) published no segment in $dir with $squatted squatted names"
  cat "$out"
  exit 1
fi
echo "ok: pid $victim published $seg past $squatted names squatted by nobody"
