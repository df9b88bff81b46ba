#!/bin/sh
# setuid_ignores_env.sh PROBE - no environment variable of liballoc's may
# reach a set-id program.
#
# Runs PROBE (tests/secure/secure_probe.c, liballoc linked in statically)
# with ALLOC_CONF=telemetry_dir:<dir> and ALLOC_FAULTS=mmap:p=1 (every mmap
# fails).  A plain copy must take both: the directory, and no 8 MiB block.
# A copy owned by `nobody` with the set-user-ID bit, run by root, gets
# AT_SECURE=1 from the kernel and must take neither: the default directory
# (/dev/shm), a working malloc, and one warning per variable ignored.
# Needs root (to chown); skips (77) otherwise.  The copies go to a
# directory whose mount honours set-user-ID bits (not nosuid).
set -u
probe=$1
[ "$(id -u)" = 0 ] || { echo "skip: needs root to make a set-user-ID copy"; exit 77; }

suid_dir=""
for base in "$(dirname "$probe")" /var/tmp /root /usr/local/lib; do
  [ -d "$base" ] || continue
  case ",$(findmnt -n -o OPTIONS -T "$base" 2>/dev/null)," in *,nosuid,*) continue ;; esac
  suid_dir=$(mktemp -d "$base/alloc-secure.XXXXXX") && break
done
[ -n "$suid_dir" ] || { echo "skip: no directory on a mount without nosuid"; exit 77; }
trap 'rm -rf "$suid_dir"' EXIT
chmod 755 "$suid_dir"
cp "$probe" "$suid_dir/plain"
cp "$probe" "$suid_dir/setuid"
chown nobody "$suid_dir/setuid"
chmod 4755 "$suid_dir/setuid"

wanted=/tmp/alloc-secure-not-here
fail=0
check() {   # check WHAT GOT EXPECTED
  [ "$2" = "$3" ] || { echo "FAIL: $1: got '$2', expected '$3'"; fail=1; }
}

run() {   # run PROGRAM: its stdout; stderr in PROGRAM.err
  ALLOC_CONF=telemetry_dir:$wanted ALLOC_FAULTS=mmap:p=1 "$1" 2>"$1.err"
}

out=$(run "$suid_dir/plain")
echo "plain:  $out"
check "the plain program" "$out" "at_secure=0 telemetry_dir=$wanted big_malloc=failed"

out=$(run "$suid_dir/setuid")
echo "setuid: $out"
cat "$suid_dir/setuid.err"
case "$out" in
  at_secure=1*) ;;
  *) echo "FAIL: the set-user-ID copy did not run with AT_SECURE=1"; fail=1 ;;
esac
check "the set-user-ID program" "$out" "at_secure=1 telemetry_dir=/dev/shm big_malloc=ok"
check "its warnings" "$(cut -d: -f3 "$suid_dir/setuid.err" | sort | tr '\n' ';')" \
  " ALLOC_CONF ignored; ALLOC_FAULTS ignored;"
exit $fail
