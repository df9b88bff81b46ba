#!/usr/bin/env bash
# run_program.sh - the "real programs" tests: run an unmodified program once
# with the system allocator and once with an allocator preloaded, and require
# the same behaviour.
#
# Owns: tests/programs/ (this script, the workloads in workloads/ and the
# ctest wiring in CMakeLists.txt).  Unit and stress tests show that the
# allocator keeps its contract; these show that large real programs (python3,
# perl, sqlite3, gcc, g++, git, bash+coreutils) still produce the same output
# with it, which catches what synthetic tests miss: odd alignment requests,
# realloc patterns, fork+exec trees, threads in sort, operator new in cc1plus,
# and tools that must stay single-threaded (unshare -U, setpriv).
#
# Usage: run_program.sh PROGRAM ALLOCATOR_SO
#   PROGRAM       one of: python3 perl sqlite3 gcc gxx git shell sandbox
#   ALLOCATOR_SO  the library to preload (liballoc.so in ctest)
#
# For each PROGRAM the same workload runs twice in the same directory path
# (so paths printed by the tools match): plainly, then with
#   LD_PRELOAD=ALLOCATOR_SO ALLOC_CONF=stats_print:true
# and the test fails unless
#   - the plain run succeeded (otherwise the machine, not the allocator, is
#     broken),
#   - both runs exited with the same code and wrote the same stdout,
#   - both wrote the same stderr once liballoc's statistics blocks are cut
#     out of the preloaded one,
#   - the preloaded stderr holds at least one liballoc statistics block with
#     a "mapped:" line > 0, i.e. the preload really took effect.  Every
#     process of the tree prints its own block, so several are fine.
#     ALLOC_PROGRAMS_SKIP_STATS_CHECK=1 turns this last check off, to try the
#     script with another allocator (e.g. jemalloc) before liballoc exists;
#     ctest always unsets it.
# ALLOC_PROGRAMS_RUN_TIMEOUT (seconds, default 130) bounds each of the two
# runs, so a hang is reported as such rather than as a ctest timeout.
set -euo pipefail

SCRIPT_PATH=$(readlink -f "${BASH_SOURCE[0]}")
WORKLOADS=$(dirname "$SCRIPT_PATH")/workloads
PROGRAMS=(python3 perl sqlite3 gcc gxx git shell sandbox)
STATS_BEGIN='___ Begin liballoc statistics ___'
STATS_END='___ End liballoc statistics ___'

# Commands each workload needs, as command:debian-package.
declare -A NEEDS=(
  [python3]="python3:python3"
  [perl]="perl:perl"
  [sqlite3]="sqlite3:sqlite3"
  [gcc]="gcc:gcc objdump:binutils sha256sum:coreutils"
  [gxx]="g++:g++ objdump:binutils sha256sum:coreutils"
  [git]="git:git sha256sum:coreutils"
  [shell]="bash:bash awk:mawk sort:coreutils join:coreutils sha256sum:coreutils"
  [sandbox]="unshare:util-linux setpriv:util-linux id:coreutils bash:bash"
)

usage() {
  cat >&2 <<EOF
usage: $(basename "$0") PROGRAM ALLOCATOR_SO
  PROGRAM: ${PROGRAMS[*]}
  Runs PROGRAM's workload plainly and with ALLOCATOR_SO preloaded and
  compares exit code, stdout and stderr.  Set ALLOC_PROGRAMS_SKIP_STATS_CHECK=1
  when ALLOCATOR_SO is not liballoc (no statistics block to look for).
EOF
  exit 2
}

die() { echo "FAIL [$PROGRAM]: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# Workloads.  Each runs in an empty current directory and writes its result
# to stdout.  The program under test is started through under_test, which
# adds the preload in the preloaded run; helpers (objdump, sha256sum, awk in
# the git workload) run plainly so a difference points at the program.
# ---------------------------------------------------------------------------

under_test() {
  if [[ -n "${PROGRAM_TEST_PRELOAD:-}" ]]; then
    env -u PROGRAM_TEST_PRELOAD LD_PRELOAD="$PROGRAM_TEST_PRELOAD" \
      ALLOC_CONF=stats_print:true "$@"
  else
    env -u PROGRAM_TEST_PRELOAD "$@"
  fi
}

workload_python3() {
  # The python3 on PATH may be a pyenv shim (a shell script): preload into
  # the real interpreter, not into the shim's bash.
  local python
  python=$(python3 -c 'import sys; print(sys.executable)')
  [[ -x "$python" ]] || { echo "cannot resolve the python3 interpreter (got '$python')" >&2; return 1; }
  under_test "$python" "$WORKLOADS/python_workload.py"
}

workload_perl() {
  under_test perl "$WORKLOADS/perl_workload.pl"
}

workload_sqlite3() {
  under_test sqlite3 work.db < "$WORKLOADS/sqlite_workload.sql"
}

sha256_of() { sha256sum < "$1" | cut -c1-64; }

# Compile SOURCE with COMPILER (+ FLAGS), show what came out, run the result.
# The preprocessed text, the disassembly and the bytes of the object and of
# the linked program must all match those of the plain compiler.
compile_and_run() {
  local compiler=$1 source=$2; shift 2
  local flags=("$@") output
  under_test "$compiler" "${flags[@]}" -E "$source" -o prog.i
  echo "preprocessed: $(wc -l < prog.i) lines, sha256 $(sha256_of prog.i)"
  under_test "$compiler" "${flags[@]}" -O2 -g -c "$source" -o prog.o
  echo "object: sha256 $(sha256_of prog.o)"
  under_test "$compiler" prog.o -o prog
  echo "program: sha256 $(sha256_of prog)"
  output=$(./prog)       # an assignment, so that set -e sees a crash
  echo "program output: $output"
  objdump -d --no-show-raw-insn prog.o     # last: the diff excerpt shows where code differs
}

workload_gcc() {
  cp "$WORKLOADS/gcc_program.c" prog.c
  compile_and_run gcc prog.c -std=gnu11 -Wall
}

workload_gxx() {
  cp "$WORKLOADS/gxx_program.cpp" prog.cpp
  compile_and_run g++ prog.cpp -std=c++17 -Wall
}

# Write the files of commit number $1 into src/: most files stay, some lines
# change, a few files appear and disappear, so diffs and deltas have work.
git_generate_tree() {
  local commit=$1
  mkdir -p src
  awk -v c="$commit" 'BEGIN {
    for (f = 0; f < 150; f++) {
      if ((f + c) % 41 == 0) continue              # drop a few files per commit
      name = sprintf("src/file%03d.txt", f)
      for (l = 0; l < 80; l++) {
        v = (f * 131 + l * 7) % 1000
        if ((l + f) % 23 == c % 23) v = v "-rev" c # a changed line per file
        printf "line %d of file %d value %s\n", l, f, v > name
      }
      close(name)
    }
  }'
}

workload_git() {
  # Fixed identity and dates; no system or user config; single-threaded
  # packing so pack contents and sizes are reproducible.
  export HOME=$PWD/home GIT_CONFIG_NOSYSTEM=1 GIT_TERMINAL_PROMPT=0
  export GIT_AUTHOR_NAME="Test Author" GIT_AUTHOR_EMAIL=author@example.invalid
  export GIT_COMMITTER_NAME="Test Committer" GIT_COMMITTER_EMAIL=committer@example.invalid
  mkdir -p "$HOME"
  under_test git init -q -b main repo
  cd repo
  under_test git config pack.threads 1
  under_test git config gc.auto 0
  local commit
  for commit in 1 2 3 4 5 6; do
    rm -rf src
    git_generate_tree "$commit"
    export GIT_AUTHOR_DATE="@$((1700000000 + commit * 3600)) +0000"
    export GIT_COMMITTER_DATE=$GIT_AUTHOR_DATE
    under_test git add -A
    under_test git commit -q -m "commit $commit: regenerate src"
  done
  echo "== log"
  under_test git log --stat --format='%H %an %ad %s' --date=iso-strict
  echo "== diff"
  under_test git diff --stat HEAD~4 HEAD
  under_test git diff HEAD~1 HEAD -- src/file007.txt src/file100.txt
  echo "== grep/blame"
  under_test git grep -c 'rev6' HEAD -- src | sort
  under_test git blame -s src/file010.txt | awk 'NR % 10 == 1'
  echo "== gc/fsck"
  under_test git gc -q
  under_test git fsck --full --strict --no-progress
  under_test git count-objects -v
  under_test git rev-parse HEAD 'HEAD^{tree}'
}

workload_shell() {
  under_test bash "$WORKLOADS/shell_workload.sh"
}

# Tools that act while they are the process's only thread: the kernel
# refuses unshare(CLONE_NEWUSER) (EINVAL) in a process with a second
# thread, and after setpriv keeps its capabilities in its own thread glibc
# aborts when a set-id call fails in another.  liballoc must not have
# started a thread of its own by then.  Each is tried plainly first, in both
# runs, and left out where the machine does not allow it.  The commands run
# in bash, whose statistics block shows the preload reached them (coreutils
# close stderr before liballoc could print).
workload_sandbox() {
  if unshare -U true 2>/dev/null; then
    under_test unshare -U -r bash -c 'id -u; exit 0'
    under_test unshare -U -r bash -c 'id -u; unshare -U bash -c "id -u; exit 0"'   # and nested
  else
    echo "user namespaces not allowed here: unshare skipped"
  fi
  if setpriv --reuid=nobody --regid=nogroup --clear-groups true 2>/dev/null; then
    under_test setpriv --reuid=nobody --regid=nogroup --clear-groups bash -c 'id -u; exit 0'
  else
    echo "not root: setpriv skipped"
  fi
}

# ---------------------------------------------------------------------------
# Driver.
# ---------------------------------------------------------------------------

check_requirements() {
  local pair missing=()
  for pair in ${NEEDS[$PROGRAM]}; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair%%:*} (Debian package ${pair#*:})")
  done
  ((${#missing[@]} == 0)) || die "required program(s) not installed: ${missing[*]}"
}

# Environment identical in both runs: anything that could make a program's
# output depend on the machine or on chance is pinned.
pin_environment() {
  unset LD_PRELOAD ALLOC_CONF MALLOC_CONF PROGRAM_TEST_PRELOAD
  export LC_ALL=C TZ=UTC
  export PYTHONMALLOC=malloc PYTHONHASHSEED=0 PYTHONDONTWRITEBYTECODE=1
  export PERL_HASH_SEED=0 PERL_PERTURB_KEYS=0
}

# run_workload MODE: run the workload in a fresh $WORK, leaving
# $TMP_ROOT/MODE.{out,err,rc}.  The workload runs in a child copy of this
# script (--workload) so that `timeout` can bound it and set -e works in it.
run_workload() {
  local mode=$1 rc=0
  rm -rf "$WORK" && mkdir -p "$WORK"
  if [[ $mode == preloaded ]]; then export PROGRAM_TEST_PRELOAD=$ALLOCATOR_SO; else unset PROGRAM_TEST_PRELOAD; fi
  (cd "$WORK" && exec timeout --kill-after=10 "${ALLOC_PROGRAMS_RUN_TIMEOUT:-130}" \
     bash "$SCRIPT_PATH" --workload "$PROGRAM") \
     >"$TMP_ROOT/$mode.out" 2>"$TMP_ROOT/$mode.err" || rc=$?
  unset PROGRAM_TEST_PRELOAD
  echo "$rc" > "$TMP_ROOT/$mode.rc"
}

describe_rc() {
  local rc=$1
  if ((rc == 124)); then echo "$rc (timed out after ${ALLOC_PROGRAMS_RUN_TIMEOUT:-130}s)"
  elif ((rc > 128)); then echo "$rc (killed by signal $((rc - 128)))"
  else echo "$rc"; fi
}

# Drop every liballoc statistics block.  Blocks of concurrent processes may
# interleave line by line, so count open blocks instead of pairing markers.
strip_stats() {
  awk -v b="$STATS_BEGIN" -v e="$STATS_END" '
    index($0, b) == 1 { open++; next }
    index($0, e) == 1 { if (open > 0) open--; next }
    open == 0 { print }' "$1"
}

# Print "<blocks> <largest mapped value>" found in the statistics blocks.
stats_summary() {
  awk -v b="$STATS_BEGIN" -v e="$STATS_END" '
    index($0, b) == 1 { open++; blocks++; next }
    index($0, e) == 1 { if (open > 0) open--; next }
    open > 0 && match($0, /^[ \t]*mapped:[ \t]*[0-9]+/) {
      value = substr($0, RSTART, RLENGTH); sub(/^[ \t]*mapped:[ \t]*/, "", value)
      if (value + 0 > max + 0) max = value
    }
    END { printf "%d %s\n", blocks, (max == "" ? 0 : max) }' "$1"
}

show_diff() {
  local what=$1 plain=$2 preloaded=$3
  echo "--- $what differs (first 40 lines of the diff):" >&2
  diff -u --label "$what (plain)" --label "$what (preloaded)" "$plain" "$preloaded" | head -n 40 >&2 || true
}

show_tail() {
  local what=$1 file=$2
  echo "--- last 20 lines of $what:" >&2
  tail -n 20 "$file" >&2 || true
}

compare_runs() {
  local failures=0 plain_rc preloaded_rc
  plain_rc=$(cat "$TMP_ROOT/plain.rc")
  preloaded_rc=$(cat "$TMP_ROOT/preloaded.rc")

  if ((plain_rc != 0)); then
    echo "FAIL [$PROGRAM]: the workload fails even without preload, exit $(describe_rc "$plain_rc");" \
         "fix the machine or the workload, the allocator is not involved" >&2
    show_tail "plain stdout" "$TMP_ROOT/plain.out"
    show_tail "plain stderr" "$TMP_ROOT/plain.err"
    return 1
  fi
  if ((preloaded_rc != plain_rc)); then
    echo "FAIL [$PROGRAM]: exit code differs: plain $plain_rc, preloaded $(describe_rc "$preloaded_rc")" >&2
    show_tail "preloaded stderr" "$TMP_ROOT/preloaded.err"
    failures=$((failures + 1))
  fi
  if ! cmp -s "$TMP_ROOT/plain.out" "$TMP_ROOT/preloaded.out"; then
    echo "FAIL [$PROGRAM]: stdout differs" >&2
    show_diff "$PROGRAM stdout" "$TMP_ROOT/plain.out" "$TMP_ROOT/preloaded.out"
    failures=$((failures + 1))
  fi
  strip_stats "$TMP_ROOT/preloaded.err" > "$TMP_ROOT/preloaded.err.nostats"
  if ! cmp -s "$TMP_ROOT/plain.err" "$TMP_ROOT/preloaded.err.nostats"; then
    echo "FAIL [$PROGRAM]: stderr differs (liballoc statistics blocks removed)" >&2
    show_diff "$PROGRAM stderr" "$TMP_ROOT/plain.err" "$TMP_ROOT/preloaded.err.nostats"
    failures=$((failures + 1))
  fi
  check_stats || failures=$((failures + 1))
  return $((failures > 0))
}

# The preload must really have happened: liballoc's statistics block, with
# memory mapped, in the preloaded run's stderr.
check_stats() {
  if [[ "${ALLOC_PROGRAMS_SKIP_STATS_CHECK:-}" == 1 ]]; then
    echo "note [$PROGRAM]: statistics check skipped (ALLOC_PROGRAMS_SKIP_STATS_CHECK=1)"
    return 0
  fi
  local blocks mapped
  read -r blocks mapped < <(stats_summary "$TMP_ROOT/preloaded.err")
  if ((blocks == 0)); then
    echo "FAIL [$PROGRAM]: no '$STATS_BEGIN' line in the preloaded run's stderr:" \
         "the preload of $ALLOCATOR_SO did not take effect (or stats_print is broken)" >&2
    show_tail "preloaded stderr" "$TMP_ROOT/preloaded.err"
    return 1
  fi
  if [[ ! $mapped =~ [1-9] ]]; then
    echo "FAIL [$PROGRAM]: $blocks statistics block(s) but no 'mapped: N' line with N > 0" >&2
    show_tail "preloaded stderr" "$TMP_ROOT/preloaded.err"
    return 1
  fi
  echo "stats [$PROGRAM]: $blocks statistics block(s), largest mapped: $mapped bytes"
}

main() {
  if [[ ${1:-} == --workload ]]; then     # child mode, see run_workload
    PROGRAM=${2:?}
    "workload_$PROGRAM"
    return
  fi
  (($# == 2)) || usage
  PROGRAM=$1
  [[ " ${PROGRAMS[*]} " == *" $PROGRAM "* ]] || { echo "unknown program '$PROGRAM'" >&2; usage; }
  [[ -f $2 ]] || die "allocator library '$2' not found (build it first: cmake --build build)"
  ALLOCATOR_SO=$(readlink -f "$2")
  check_requirements
  pin_environment

  TMP_ROOT=$(mktemp -d "${TMPDIR:-/tmp}/alloc-program-$PROGRAM.XXXXXX")
  trap 'rm -rf "$TMP_ROOT"' EXIT
  trap 'exit 143' TERM     # so that the EXIT trap cleans up on ctest's kill too
  trap 'exit 130' INT
  WORK=$TMP_ROOT/work

  run_workload plain
  run_workload preloaded
  if compare_runs; then
    echo "PASS [$PROGRAM]: exit $(cat "$TMP_ROOT/plain.rc"), stdout ($(wc -l < "$TMP_ROOT/plain.out") lines)" \
         "and stderr identical with $ALLOCATOR_SO preloaded"
  else
    echo "FAIL [$PROGRAM]: with $ALLOCATOR_SO preloaded; see above" >&2
    exit 1
  fi
}

main "$@"
