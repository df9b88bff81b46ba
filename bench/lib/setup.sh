# bench/lib/setup.sh - sourced by bench/run: get the machine ready (Debian
# packages, the build) and describe it.
#
# Owns: what the suite needs that is not in the repository, and the record
# of what it ran on.  --no-install and --no-build (the ctest smoke test
# uses both) skip the first two; the suite then skips whatever is missing.

# Debian packages: the peers, the real programs, the tools.  gnuplot-nox is
# gnuplot without X (the `gnuplot` package pulls in a GUI).
BENCH_DEBS=(libjemalloc2 libtcmalloc-minimal4 libmimalloc2.0 gnuplot-nox
            redis-server redis-tools time valgrind sqlite3)

install_missing_packages() {
  # scripts/deps.sh's ensure_debs installs only what is missing.
  # shellcheck source=../../scripts/deps.sh
  . "$REPO_ROOT/scripts/deps.sh"
  ensure_debs "${BENCH_DEBS[@]}"
  command -v python3 > /dev/null || ensure_debs python3
}

# Configure the build directory if it has never been, then build liballoc
# and the bench programs (not the whole tree: the tests are not needed).
build_everything() {
  if [[ ! -f $BUILD_DIR/CMakeCache.txt ]]; then
    note "== configuring $BUILD_DIR"
    cmake -S "$REPO_ROOT" -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release > /dev/null
  fi
  note "== building liballoc and the bench programs"
  cmake --build "$BUILD_DIR" -j"$(nproc)" --target alloc bench_programs > "$SCRATCH/build.log" 2>&1 || {
    tail -n 30 "$SCRATCH/build.log" >&2
    die "build failed (log above)"
  }
}

package_version() {
  dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "not installed"
}

# Write "key<TAB>value" lines describing the machine and the software.
describe_machine() {
  local commit
  commit=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
  git -C "$REPO_ROOT" diff --quiet -- liballoc 2>/dev/null || commit="$commit+uncommitted liballoc changes"
  {
    printf 'date\t%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    printf 'cpus\t%s\n' "$(nproc)"
    printf 'cpu_model\t%s\n' "$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    printf 'memory_gib\t%s\n' "$(awk '/^MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)"
    printf 'kernel\t%s\n' "$(uname -r)"
    printf 'os\t%s\n' "$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME")"
    printf 'thp\t%s\n' "$(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo unknown)"
    printf 'glibc\t%s\n' "$(getconf GNU_LIBC_VERSION 2>/dev/null || echo unknown)"
    printf 'jemalloc\t%s\n' "$(package_version libjemalloc2)"
    printf 'tcmalloc\t%s\n' "$(package_version libtcmalloc-minimal4)"
    printf 'mimalloc\t%s\n' "$(package_version libmimalloc2.0)"
    printf 'liballoc\t%s\n' "$commit"
    printf 'redis\t%s\n' "$(package_version redis-server)"
    printf 'sqlite3\t%s\n' "$(package_version sqlite3)"
    printf 'python3\t%s\n' "$(if [[ -n ${PYTHON_BIN:-} ]]; then "$PYTHON_BIN" -c 'import sys; print(sys.version.split()[0])'; else echo none; fi)"
    printf 'valgrind\t%s\n' "$(valgrind --version 2>/dev/null || echo none)"
    printf 'mode\t%s\n' "$( ((QUICK)) && echo quick || echo full)"
    printf 'rounds\t%s\n' "$ROUNDS"
  } > "$1"
}
