# bench/lib/common.sh - sourced by bench/run: messages, the allocator list,
# how a command gets its allocator, and the proof that it got it.
#
# Owns: which allocators take part and how each is injected.  Every workload
# runs unchanged under each allocator by LD_PRELOAD; glibc is the run with no
# preload, except for programs that link another allocator themselves
# (redis-server links jemalloc), whose glibc runs preload the glibc shim.  A
# preload that silently did not take effect would make a comparison of
# nothing, so check_preload_took_effect proves it for every workload and
# allocator before the timed runs (bench/lib/workloads.sh calls it).

note() { printf '%s\n' "$*" >&2; }
die() { printf 'bench/run: %s\n' "$*" >&2; exit 2; }

SYSTEM_LIBDIR=/usr/lib/x86_64-linux-gnu
# name | library to preload (empty: the process's own allocator, glibc)
PEER_ALLOCATORS=(
  "glibc|"
  "jemalloc|$SYSTEM_LIBDIR/libjemalloc.so.2"
  "tcmalloc|$SYSTEM_LIBDIR/libtcmalloc_minimal.so.4"
  "mimalloc|$SYSTEM_LIBDIR/libmimalloc.so.2"
)
REFERENCE=liballoc                  # the allocator whose ratios are reported
LIBALLOC_STATS_BANNER='___ Begin liballoc statistics ___'

# Fill ALLOC_NAMES/ALLOC_LIBS with the allocators present; liballoc last.
select_allocators() {
  ALLOC_NAMES=() ALLOC_LIBS=()
  local entry name lib
  for entry in "${PEER_ALLOCATORS[@]}" "$REFERENCE|$LIBALLOC_SO"; do
    name=${entry%%|*} lib=${entry#*|}
    if [[ -n $lib && ! -f $lib ]]; then
      note "skip $name: $lib not found"
      continue
    fi
    ALLOC_NAMES+=("$name")
    ALLOC_LIBS+=("${lib:+$(readlink -f "$lib")}")
  done
  [[ " ${ALLOC_NAMES[*]} " == *" $REFERENCE "* ]] ||
    die "liballoc not found at $LIBALLOC_SO (build it, or pass --liballoc)"
}

# The library to preload for allocator LIB_OR_EMPTY in a program that
# NEEDS_SHIM (1: it links another allocator, so glibc needs the shim).
preload_library() {
  local lib=$1 needs_shim=$2
  if [[ -z $lib && $needs_shim == 1 ]]; then
    printf '%s' "$GLIBC_SHIM"
  else
    printf '%s' "$lib"
  fi
}

# Print the `env ...` words that give a command the preload LIB (or none).
# The environment is rebuilt from scratch for LD_PRELOAD only: the caller's
# ALLOC_CONF/MALLOC_CONF are dropped so no stray setting skews a run.
preload_env_words() {
  local lib=$1
  printf '%s\n' env -u LD_PRELOAD -u ALLOC_CONF -u MALLOC_CONF
  [[ -z $lib ]] || printf '%s\n' "LD_PRELOAD=$lib"
}

# check_preload_took_effect NAME LIB BINDINGS_PREFIX STDERR_FILE: after a run
# under LD_DEBUG=bindings LD_DEBUG_OUTPUT=BINDINGS_PREFIX (and, for liballoc,
# ALLOC_CONF=stats_print:true), succeed iff the dynamic linker bound some
# object's `malloc` to the expected library - LIB, or glibc's libc.so.6 when
# LIB is empty - and, for liballoc, its statistics block is on stderr.
check_preload_took_effect() {
  local name=$1 lib=$2 prefix=$3 stderr_file=$4 target
  target=${lib:-libc.so.6}
  if ! grep -qsF -- "$(basename "$target") [0]: normal symbol \`malloc'" "$prefix".*; then
    note "preload check: no malloc was bound to $target"
    return 1
  fi
  if [[ $name == "$REFERENCE" ]] && ! grep -qF -- "$LIBALLOC_STATS_BANNER" "$stderr_file"; then
    note "preload check: liballoc printed no statistics block with ALLOC_CONF=stats_print:true"
    return 1
  fi
}

# Median of the numbers on stdin, one a line ("" when there are none).
median_of_lines() {
  sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}
