#!/usr/bin/env python3
"""tests/packages: the Debian packages, built, installed, run and purged.

  test_packages.py SOURCE_DIR WORK_DIR DASHBOARD(ON|OFF)

1. Configures SOURCE_DIR for packages (-DALLOC_DEB=ON, prefix /usr, no
   tests) in WORK_DIR/build, builds it and runs `cpack -G DEB`.
2. Installs the three packages with `apt-get install ./*.deb`: the user and
   group allocd and /var/lib/allocd (0700, owned by allocd) exist; the
   consumer of tests/install builds against liballoc-dev from the system's
   paths (find_package, pkg-config) and runs with liballoc0's library.
3. `systemd-analyze verify` accepts the installed unit and drop-in.  Runs
   allocd from the installed unit as systemd would, minus systemd (it
   is not PID 1 here): ExecStart's exact command line, as the unit's User=
   and Group= (from the unit and its installed drop-ins), with its
   AmbientCapabilities=, CapabilityBoundingSet=, NoNewPrivileges= and
   UMask=.  A process of user nobody runs with LD_PRELOAD taken from the
   installed preload drop-in: its maps name liballoc0's library,
   GET /api/v1/processes and the installed `allocctl ps` list it, and
   `allocctl set` pushes a configuration change into it.  GET / is the installed index.html and
   every script it references is served as installed, and headless
   Chromium (if installed) shows the process in the page's table and draws
   the host chart (DASHBOARD=ON); or / says the dashboard is not installed
   (OFF).  SIGTERM stops allocd with
   status 0 and its database is in the state directory.
4. `apt-get remove allocd` keeps /var/lib/allocd and the user (the docs
   say so); `apt-get purge -y allocd liballoc-dev liballoc0` leaves none
   of the packages' files, no state directory, no user or group, no
   enablement symlink and no dpkg record.

The packages are installed on this machine, so: root only (exit 77
otherwise); one run at a time (a lock file); it refuses to start if any of
the packages, the user allocd or /var/lib/allocd already exist; and
whatever happens it kills what it started and purges what it installed
(finally, and on SIGTERM/SIGINT/SIGHUP).  The whole test runs in its own
mount and network namespaces (unshare): allocd's command line listens on
127.0.0.1:9470 and collects /dev/shm, which here are a private loopback and
a private tmpfs, so neither another allocd on this shared machine nor the
segments of other users' tests are touched.
"""
import fcntl
import glob
import json
import os
import pwd
import grp
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

PACKAGES = ["allocd", "liballoc-dev", "liballoc0"]
STATE_DIR = "/var/lib/allocd"
LOCK = "/run/lock/liballoc-packages-test.lock" if os.path.isdir("/run/lock") else "/tmp/liballoc-packages-test.lock"
APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=120"]


def log(*a):
    print("[packages]", *a, flush=True)


def run(cmd, **kw):
    log("$", " ".join(shlex.quote(c) for c in cmd))
    return subprocess.run(cmd, check=True, **kw)


def fail(msg):
    raise AssertionError(msg)


def package_state(name):
    """dpkg's status abbreviation ('ii', 'rc', ...) or '' if unknown to dpkg."""
    r = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", name], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else ""


def wait_for(pred, what, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    fail("timed out waiting for " + what)


def http_get(path, port):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=5) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


# ---- the unit -------------------------------------------------------------------------

def unit_settings(unit_path):
    """The [Service] settings of the unit and its drop-ins (<unit>.d/*.conf
    next to it, in name order, as systemd applies them): key -> list of
    values in order, continuation lines joined."""
    files = [unit_path] + sorted(glob.glob(unit_path + ".d/*.conf"))
    settings = {}
    for f in files:
        text = open(f).read().replace("\\\n", " ")
        section = None
        for line in text.splitlines():
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line
                continue
            if section == "[Service]" and "=" in line:
                k, v = line.split("=", 1)
                settings.setdefault(k.strip(), []).append(v.strip())
    return files, settings


def last(settings, key, default=None):
    v = settings.get(key)
    return v[-1] if v else default


def caps_arg(value):
    return ",".join("+" + c.lower().replace("cap_", "") for c in value.split())


# ---- the test -------------------------------------------------------------------------

class Run:
    def __init__(self, src, work, dashboard):
        self.src, self.work, self.dashboard = src, work, dashboard
        self.procs = []
        self.installed = False
        self.preflight_passed = False

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if self.installed or any(package_state(p) for p in PACKAGES):
            log("cleanup: purging the packages")
            subprocess.run(APT + ["purge"] + [p for p in PACKAGES if package_state(p)], stdout=subprocess.DEVNULL)
            self.installed = False
        # what a broken postrm left: none of it existed before (preflight)
        if self.preflight_passed:
            if os.path.exists(STATE_DIR):
                log("cleanup: removing", STATE_DIR)
                shutil.rmtree(STATE_DIR, ignore_errors=True)
            for cmd, db in (("userdel", pwd.getpwnam), ("groupdel", grp.getgrnam)):
                try:
                    db("allocd")
                    log("cleanup: %s allocd" % cmd)
                    subprocess.run([cmd, "allocd"])
                except KeyError:
                    pass

    def preflight(self):
        present = {p: package_state(p) for p in PACKAGES if package_state(p)}
        if present:
            fail("dpkg already knows %s: not touching another installation; purge them first (apt-get purge %s)"
                 % (present, " ".join(present)))
        for what, lookup in (("user", pwd.getpwnam), ("group", grp.getgrnam)):
            try:
                lookup("allocd")
            except KeyError:
                continue
            fail("the %s allocd exists already: the packages' purge would remove it" % what)
        if os.path.exists(STATE_DIR):
            fail("%s exists already: the packages' purge would remove it" % STATE_DIR)
        self.preflight_passed = True

    def build(self):
        t0 = time.monotonic()
        build = os.path.join(self.work, "build")
        run(["cmake", "-S", self.src, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DCMAKE_INSTALL_PREFIX=/usr",
             "-DALLOC_DEB=ON", "-DALLOC_BUILD_TESTS=OFF"], stdout=subprocess.DEVNULL)
        run(["cmake", "--build", build, "-j2", "--target", "alloc", "alloc_static", "allocd", "allocctl"]
            + (["dashboard"] if self.dashboard else []), stdout=subprocess.DEVNULL)
        out = os.path.join(self.work, "debs")
        shutil.rmtree(out, ignore_errors=True)
        os.makedirs(out)
        run(["cpack", "-G", "DEB", "-B", out, "--config", os.path.join(build, "CPackConfig.cmake")],
            stdout=subprocess.DEVNULL)
        debs = sorted(glob.glob(os.path.join(out, "*.deb")))
        names = sorted(re.sub(r"_.*", "", os.path.basename(d)) for d in debs)
        if names != sorted(PACKAGES):
            fail("cpack made %s, expected %s" % (names, sorted(PACKAGES)))
        for d in debs:
            log("built %s (%d bytes)" % (os.path.basename(d), os.path.getsize(d)))
        log("build and cpack: %.1f s" % (time.monotonic() - t0))
        return debs

    def install(self, debs):
        self.installed = True
        run(APT + ["install", "--no-install-recommends"] + debs, cwd=os.path.dirname(debs[0]),
            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"), stdout=subprocess.DEVNULL)
        for p in PACKAGES:
            if package_state(p) != "ii":
                fail("%s is not installed after apt-get install (state %r)" % (p, package_state(p)))
        self.files = {}
        for p in PACKAGES:
            listing = subprocess.run(["dpkg", "-L", p], check=True, capture_output=True, text=True).stdout.split("\n")
            self.files[p] = [f for f in listing if f and f != "/."]
        user, group = pwd.getpwnam("allocd"), grp.getgrnam("allocd")
        st = os.stat(STATE_DIR)
        if (st.st_uid, st.st_gid, st.st_mode & 0o777) != (user.pw_uid, group.gr_gid, 0o700):
            fail("%s: owner %d:%d mode %o, expected allocd:allocd 0700"
                 % (STATE_DIR, st.st_uid, st.st_gid, st.st_mode & 0o777))

    def build_consumer(self):
        """tests/install/consumer against the installed liballoc-dev, found
        on the system's default paths (find_package, pkg-config)."""
        consumer = os.path.join(self.work, "consumer")
        shutil.rmtree(consumer, ignore_errors=True)
        run(["cmake", "-S", os.path.join(self.src, "tests/install/consumer"), "-B", consumer],
            stdout=subprocess.DEVNULL)
        run(["cmake", "--build", consumer], stdout=subprocess.DEVNULL)
        ldd = subprocess.run(["ldd", os.path.join(consumer, "consumer_shared")], capture_output=True, text=True).stdout
        lib = self.installed_file("liballoc0", r"/liballoc\.so\.0$")
        m = re.search(r"liballoc\.so\.0 => (\S+) ", ldd)   # /lib or /usr/lib: the same on a merged /usr
        if not m or os.path.realpath(m.group(1)) != os.path.realpath(lib):
            fail("consumer_shared does not load the installed %s:\n%s" % (lib, ldd))
        run([os.path.join(consumer, "consumer_shared")], stdout=subprocess.DEVNULL)
        run([os.path.join(consumer, "consumer_static")], stdout=subprocess.DEVNULL)
        flags = subprocess.run(["pkg-config", "--cflags", "--libs", "liballoc"], check=True, capture_output=True,
                               text=True).stdout.split()
        run(["cc", os.path.join(self.src, "tests/install/consumer/consumer.c"), *flags, "-o",
             os.path.join(consumer, "pc_consumer")])
        run([os.path.join(consumer, "pc_consumer")], stdout=subprocess.DEVNULL)
        log("liballoc-dev: find_package (shared, static) and pkg-config consumers built and ran")

    def check_layout(self):
        """The installed liballoc.so is laid out like the build tree's
        (tests/layout): hot functions together, in the file as in memory."""
        with open(os.path.join(self.work, "build", "CMakeCache.txt")) as f:
            ordered = "1" if re.search(r"^ALLOC_HAVE_LLD:INTERNAL=1$", f.read(), re.M) else "0"
        lib = os.path.realpath(self.installed_file("liballoc0", r"/liballoc\.so\.0$"))
        run(["sh", os.path.join(self.src, "tests/layout/check_hot_text.sh"), lib,
             os.path.join(self.src, "liballoc/hot-functions.txt"), ordered], stdout=subprocess.DEVNULL)
        log("installed %s: hot functions laid out together (lld: %s)" % (lib, ordered))

    def installed_file(self, package, pattern):
        hits = [f for f in self.files[package] if re.search(pattern, f)]
        if len(hits) != 1:
            fail("%s: expected one file matching %s, found %s" % (package, pattern, hits))
        return hits[0]

    def run_service(self):
        unit = self.installed_file("allocd", r"/systemd/system/allocd\.service$")
        files, s = unit_settings(unit)
        log("unit:", ", ".join(files))
        if shutil.which("systemd-analyze"):   # the installed unit and drop-in, as systemd reads them
            r = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True)
            if (r.returncode, r.stdout + r.stderr) != (0, ""):
                fail("systemd-analyze verify %s: %d\n%s" % (unit, r.returncode, r.stdout + r.stderr))
        argv = shlex.split(last(s, "ExecStart"))
        user, group = last(s, "User", "root"), last(s, "Group", "root")
        if not argv[0].startswith("/") or argv[0] not in self.files["allocd"]:
            fail("ExecStart runs %s, which the allocd package does not install" % argv[0])
        if last(s, "StateDirectory") != "allocd":
            fail("StateDirectory=%s, expected allocd (%s)" % (last(s, "StateDirectory"), STATE_DIR))
        port = int(argv[argv.index("--listen") + 1].rsplit(":", 1)[1])
        wrapper = ["setpriv", "--reuid=" + user, "--regid=" + group, "--init-groups"]
        if last(s, "CapabilityBoundingSet"):
            wrapper.append("--bounding-set=-all," + caps_arg(last(s, "CapabilityBoundingSet")))
        if last(s, "AmbientCapabilities"):
            ambient = caps_arg(last(s, "AmbientCapabilities"))
            wrapper += ["--inh-caps=" + ambient, "--ambient-caps=" + ambient]
        if last(s, "NoNewPrivileges") == "yes":
            wrapper.append("--no-new-privs")
        umask = int(last(s, "UMask", "0022"), 8)
        log("allocd as %s:%s: %s" % (user, group, " ".join(argv)))
        agent_log = open(os.path.join(self.work, "allocd.log"), "w+")
        agent = subprocess.Popen(wrapper + ["--"] + argv, stdout=agent_log, stderr=subprocess.STDOUT,
                                 env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}, preexec_fn=lambda: os.umask(umask))
        self.procs.append(agent)

        def agent_log_text():
            agent_log.seek(0)
            return agent_log.read()

        def up():
            if agent.poll() is not None:
                fail("allocd exited with %d:\n%s" % (agent.returncode, agent_log_text()))
            try:
                return http_get("/api/v1/health", port)[0] == 200
            except OSError:
                return False
        wait_for(up, "allocd to answer")

        # a process of another user, preloaded as the installed drop-in says
        dropin = open(self.installed_file("liballoc0", r"liballoc-preload\.conf$")).read()
        m = re.search(r"^Environment=\"?LD_PRELOAD=(\S+?)\"?$", dropin, re.M)
        if not m:
            fail("no Environment=LD_PRELOAD= line in the preload drop-in")
        lib = m.group(1)
        real_lib = os.path.realpath(lib)
        if real_lib not in self.files["liballoc0"]:
            fail("the drop-in preloads %s (%s), which liballoc0 does not install" % (lib, real_lib))
        target = subprocess.Popen(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "env", "-i", "LD_PRELOAD=" + lib,
             "perl", "-e", 'while (1) { my @a = map { "x" x 100 } 1 .. 2000; select(undef, undef, undef, 0.05) }'])
        self.procs.append(target)
        maps = wait_for(lambda: real_lib in open("/proc/%d/maps" % target.pid).read(), "liballoc in the maps", 5)
        assert maps

        def listed():
            status, _, body = http_get("/api/v1/processes", port)
            return status == 200 and any(p.get("pid") == target.pid for p in json.loads(body)["processes"])
        wait_for(listed, "GET /api/v1/processes to list the preloaded process (pid %d)" % target.pid)
        log("pid %d (user nobody, %s preloaded) listed by allocd (user %s)" % (target.pid, lib, user))

        # the installed allocctl: lists it, and pushes a change into it (allocd
        # writes the segment of another user's process: the capabilities work)
        allocctl = self.installed_file("allocd", r"/bin/allocctl$")
        url, token = "http://127.0.0.1:%d" % port, os.path.join(STATE_DIR, "token")
        ps = subprocess.run([allocctl, "--url", url, "ps"], capture_output=True, text=True)
        if ps.returncode != 0 or not re.search(r"^\s*%d\s" % target.pid, ps.stdout, re.M):
            fail("allocctl ps: %d, pid %d not listed:\n%s%s" % (ps.returncode, target.pid, ps.stdout, ps.stderr))
        push = subprocess.run([allocctl, "--url", url, "--token-file", token, "set", str(target.pid),
                               "dirty_decay_ms=3000"], capture_output=True, text=True)
        if push.returncode != 0:
            fail("allocctl set %d dirty_decay_ms=3000: %d\n%s%s"
                 % (target.pid, push.returncode, push.stdout, push.stderr))
        log("allocctl: ps lists pid %d; set dirty_decay_ms=3000 applied" % target.pid)

        self.check_dashboard(port)
        if self.dashboard:
            self.check_browser(port, target.pid)

        agent.send_signal(signal.SIGTERM)
        if agent.wait(30) != 0:
            fail("allocd exited with %d on SIGTERM:\n%s" % (agent.returncode, agent_log_text()))
        target.kill()
        target.wait()
        db = os.path.join(STATE_DIR, "allocd.db")
        if os.stat(db).st_uid != pwd.getpwnam(user).pw_uid:
            fail("%s is not owned by %s" % (db, user))
        log("allocd stopped; its database is %s" % db)

    def check_dashboard(self, port):
        status, ctype, body = http_get("/", port)
        if not self.dashboard:
            if status != 404 or b"dashboard is not installed" not in body:
                fail("GET / without a dashboard: %d %r" % (status, body[:200]))
            log("GET /: the dashboard is not installed (not built): %s" % body.decode())
            return
        index = self.installed_file("allocd", r"/www/index\.html$")
        if status != 200 or not ctype.startswith("text/html") or body != open(index, "rb").read():
            fail("GET /: %d %s, not the installed %s" % (status, ctype, index))
        scripts = re.findall(r'<script[^>]*\bsrc="([^"]+)"', body.decode())
        styles = re.findall(r'<link[^>]*\bhref="([^"]+\.css)"', body.decode())
        if not scripts:
            fail("index.html references no script")
        for ref in scripts + styles:
            path = "/" + ref.lstrip("./")
            status, ctype, got = http_get(path, port)
            installed = os.path.join(os.path.dirname(index), ref.lstrip("./"))
            if status != 200 or got != open(installed, "rb").read():
                fail("GET %s: %d, not the installed %s" % (path, status, installed))
            log("GET %s: 200, %d bytes, %s" % (path, len(got), ctype))

    def check_browser(self, port, pid):
        """The installed dashboard in headless Chromium (when installed, as
        scripts/test does): its script ran, drew the host chart with uPlot
        and listed the preloaded process from the API."""
        chromium = shutil.which("chromium")
        if not chromium:
            log("no chromium: the dashboard was not loaded in a browser")
            return
        profile = os.path.join(self.work, "chromium-profile")
        shutil.rmtree(profile, ignore_errors=True)
        # root: Chromium's sandbox refuses to run as root without a user namespace
        dom = subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--user-data-dir=" + profile,
                              "--virtual-time-budget=8000", "--dump-dom", "http://127.0.0.1:%d/" % port],
                             capture_output=True, text=True, timeout=120).stdout
        shutil.rmtree(profile, ignore_errors=True)
        row = '<tr data-pid="%d" class="alive">' % pid
        if row not in dom or 'class="uplot' not in dom:
            fail("Chromium's DOM of / has %s the row of pid %d and %s uPlot chart:\n%s"
                 % ("" if row in dom else "not", pid, "a" if 'class="uplot' in dom else "no", dom[:2000]))
        log("Chromium: the dashboard lists pid %d and draws its host chart with uPlot" % pid)

    def remove_and_purge(self):
        run(APT + ["remove", "allocd"], stdout=subprocess.DEVNULL)
        if not os.path.exists(os.path.join(STATE_DIR, "allocd.db")):
            fail("apt-get remove allocd deleted the state (%s), which only purge should" % STATE_DIR)
        pwd.getpwnam("allocd")   # KeyError if remove deleted the user
        if package_state("allocd") != "rc":
            fail("allocd after remove: %r, expected rc" % package_state("allocd"))
        log("removed: %s and the user allocd are kept" % STATE_DIR)

        run(APT + ["purge"] + PACKAGES, stdout=subprocess.DEVNULL)
        self.installed = False
        left = {p: package_state(p) for p in PACKAGES if package_state(p)}
        if left:
            fail("dpkg still knows %s after purge" % left)
        for p, files in self.files.items():
            for f in files:
                # directories shared with the system (/usr/lib, ...) stay; ours must go
                if os.path.lexists(f) and not (os.path.isdir(f) and not os.path.islink(f) and os.listdir(f)):
                    fail("%s (of %s) is left after purge" % (f, p))
                if os.path.isdir(f) and re.search(r"/(allocd|liballoc0|liballoc|allocd\.service\.d)$", f):
                    fail("directory %s (of %s) is left after purge" % (f, p))
        for what, gone in (("user", pwd.getpwnam), ("group", grp.getgrnam)):
            try:
                gone("allocd")
                fail("the %s allocd is left after purge" % what)
            except KeyError:
                pass
        left = [p for p in [STATE_DIR] + glob.glob("/etc/systemd/system/*/allocd.service")
                + glob.glob("/var/lib/systemd/deb-systemd-helper-enabled/**/allocd.service*", recursive=True)
                + glob.glob("/var/lib/systemd/deb-systemd-helper-masked/allocd.service") if os.path.lexists(p)]
        if left:
            fail("left after purge: %s" % left)
        log("purged: nothing of the packages is left")


def enter_namespaces():
    """Re-run this script in new mount and network namespaces, with a private
    /dev/shm and loopback up (see the docstring)."""
    if os.environ.get("ALLOC_PACKAGES_NS") != "1":
        os.environ["ALLOC_PACKAGES_NS"] = "1"
        os.execvp("unshare", ["unshare", "--mount", "--net", "--propagation", "private", "--",
                              sys.executable] + sys.argv)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=1777,size=64m", "tmpfs", "/dev/shm"], check=True)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    src, work, dashboard = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), sys.argv[3] == "ON"
    if os.geteuid() != 0:
        print("SKIP: installs Debian packages on this machine, which needs root")
        sys.exit(77)
    missing = [t for t in ("apt-get", "dpkg-shlibdeps", "file", "cpack", "setpriv", "unshare", "ip", "perl", "adduser",
                           "cc", "pkg-config") if not shutil.which(t)]
    if missing:
        sys.exit("missing tools: %s (scripts/deps.sh PACKAGE_TEST_DEBS)" % ", ".join(missing))
    enter_namespaces()
    os.makedirs(work, exist_ok=True)
    lock = open(LOCK, "w")
    log("waiting for %s" % LOCK)
    fcntl.flock(lock, fcntl.LOCK_EX)
    t0 = time.monotonic()
    r = Run(src, work, dashboard)

    def on_signal(sig, frame):
        raise SystemExit("stopped by signal %d" % sig)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    r.preflight()
    try:
        debs = r.build()
        r.install(debs)
        r.check_layout()
        r.build_consumer()
        r.run_service()
        r.remove_and_purge()
    finally:
        r.cleanup()
    log("passed in %.1f s" % (time.monotonic() - t0))


if __name__ == "__main__":
    main()
