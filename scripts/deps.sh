# scripts/deps.sh - sourced by the other scripts: install the Debian
# packages a step needs, and only those that are missing.

# ensure_debs PKG...: apt-get install the packages not installed yet.
ensure_debs() {
  local missing=() p installed
  # Installed packages and the names they provide (npm, by a nodejs that
  # bundles it), one per line.  Read once into a variable: a `grep -q` at
  # the end of a pipeline makes the commands before it die of SIGPIPE,
  # which `set -o pipefail` in the callers turns into "not installed".
  installed=$(dpkg-query -W -f='${db:Status-Abbrev}|${Package}|${Provides}\n' 2>/dev/null |
    awk -F'|' '$1 ~ /^ii/ { print $2; n = split($3, a, /, */); for (i = 1; i <= n; i++) { sub(/ .*/, "", a[i]); print a[i] } }')
  for p in "$@"; do
    grep -qxF -- "$p" <<<"$installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "== installing Debian packages: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Packages to build liballoc and its tests (lld: liballoc.so is linked with
# its hot functions together, liballoc/CMakeLists.txt).
BUILD_DEBS=(build-essential cmake pkg-config libcmocka-dev lld)
# The agent's libraries (allocd); heap profiles: libdw and libelf (elfutils)
# to symbolize, zlib to gzip pprof.
AGENT_DEBS=(libmicrohttpd-dev libjansson-dev libsqlite3-dev libdw-dev libelf-dev zlib1g-dev)
# What the agent's and the fleet's tests use besides: promtool and the
# Prometheus server (both in prometheus), curl, systemd-analyze (in systemd),
# `go tool pprof` (golang-go) to read the heap profiles allocd serves, strip
# (binutils) for a stripped binary's profile.
AGENT_TEST_DEBS=(prometheus curl systemd golang-go binutils)
# Real programs the tests run with liballoc preloaded.
PROGRAM_DEBS=(python3 perl sqlite3 gcc g++ git gawk binutils time util-linux)
# The fuzz targets: clang and its libFuzzer runtime.
FUZZ_DEBS=(clang libclang-rt-14-dev)
# The allocators we compare against.
PEER_DEBS=(libjemalloc2 libtcmalloc-minimal4 libmimalloc2.0)
# The web dashboard: npm for uPlot.  Any Node.js >= 18 (Debian 12's) does.
DASHBOARD_DEBS=(nodejs npm)
# The browser the dashboard's test drives (tests only: scripts/demo does
# not install it).
DASHBOARD_TEST_DEBS=(chromium)
# The Debian packages' test (tests/packages): cpack's DEB generator runs
# dpkg-shlibdeps (dpkg-dev) on what `file` calls ELF; the allocd package's
# postinst uses adduser; the test isolates allocd with unshare and ip.
PACKAGE_TEST_DEBS=(dpkg-dev file adduser util-linux iproute2)

# ensure_npm_deps: install the dashboard's npm packages (uPlot; playwright-core
# for its test) from dashboards/package-lock.json when dashboards/node_modules
# is missing or older than the lock file.  Run from the repository's top.
ensure_npm_deps() {
  local lock=dashboards/package-lock.json mods=dashboards/node_modules
  if [ ! -d "$mods" ] || [ "$lock" -nt "$mods" ]; then
    echo "== installing the dashboard's npm packages"
    npm ci --prefix dashboards --no-audit --no-fund
    touch "$mods"
  fi
}
