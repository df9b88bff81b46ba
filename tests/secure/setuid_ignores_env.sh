#!/bin/sh
# setuid_ignores_env.sh PROBE - ALLOC_CONF must not reach a set-id program.
#
# Runs PROBE (tests/secure/secure_probe.c, liballoc linked in statically)
# twice with ALLOC_CONF=telemetry_dir:<dir>: a plain copy must take the
# directory, a copy owned by `nobody` with the set-user-ID bit, run by root,
# gets AT_SECURE=1 from the kernel and must keep the default (/dev/shm) and
# say once on stderr that ALLOC_CONF was ignored.  Needs root (to chown);
# skips (77) otherwise.  The copies go to a directory whose mount honours
# set-user-ID bits (not nosuid).
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
out=$(ALLOC_CONF=telemetry_dir:$wanted "$suid_dir/plain" 2>"$suid_dir/plain.err")
echo "plain:  $out"
[ "$out" = "at_secure=0 telemetry_dir=$wanted" ] || { echo "FAIL: the plain program did not take ALLOC_CONF"; fail=1; }

out=$(ALLOC_CONF=telemetry_dir:$wanted "$suid_dir/setuid" 2>"$suid_dir/setuid.err")
echo "setuid: $out"
cat "$suid_dir/setuid.err"
case "$out" in
  at_secure=1*) ;;
  *) echo "FAIL: the set-user-ID copy did not run with AT_SECURE=1"; fail=1 ;;
esac
[ "$out" = "at_secure=1 telemetry_dir=/dev/shm" ] || { echo "FAIL: the set-user-ID program took ALLOC_CONF"; fail=1; }
grep -q "ALLOC_CONF ignored" "$suid_dir/setuid.err" || { echo "FAIL: no warning that ALLOC_CONF was ignored"; fail=1; }
[ "$(wc -l < "$suid_dir/setuid.err")" = 1 ] || { echo "FAIL: expected exactly one line on stderr"; fail=1; }
exit $fail
