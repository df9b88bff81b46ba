#!/usr/bin/env python3
"""tests/agent/test_profile.py - heap profiles served by allocd.

GET /api/v1/processes/{pid}/profile/heap asks the process for its profile
through the control area ("prof.publish"), reads the profile area
(liballoc/include/alloc_shm.h), symbolizes it and answers gzip'ed pprof or
JSON.  Here the test plays the process: it forges a segment for a live
process (test_hostile.Forged), answers its control requests itself and
writes the profile area byte by byte, either from the real addresses and
modules of prof_selftest (a real binary built -O2 without frame pointers,
with DWARF) or hostile bytes.  `go tool pprof` reads what allocd serves.

usage: test_profile.py ALLOCD TM_TARGET ALLOCCTL PROF_SELFTEST PROF_WORKLOAD [unittest args]

RealProfileTest runs prof_workload with liballoc's own profiler
(ALLOC_CONF=prof:true, liballoc preloaded from ALLOC_TEST_PRELOAD): it is
skipped, saying so, when that liballoc has no profiler.
"""
import errno
import fcntl
import gzip
import json
import os
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_agent  # noqa: E402
import test_hostile  # noqa: E402
from test_agent import Agent, Target, wait_for  # noqa: E402
from test_hostile import Forged, fnv, NOBODY  # noqa: E402

SELFTEST = WORKLOAD = None
GO = shutil.which("go") or "/usr/lib/go/bin/go"

# alloc_shm.h, the profile area
MAX_MODULES, MAX_STACKS, MAX_DEPTH = 512, 8192, 64
OFF_MODULES = 128
OFF_STACKS = OFF_MODULES + MAX_MODULES * 328
OFF_FRAMES = OFF_STACKS + MAX_STACKS * 64
PROFILE_HEAD = "=QQQQQQQIIIIQQQQ3Q"   # 128 bytes
MODULE = "=QQQQII32s256s"            # 328 bytes
STACK = "=IIQQQQQQQ"                 # 64 bytes
# the header and the control area
OFF_PROFILE_OFFSET, OFF_INTERVAL, OFF_HEARTBEAT = 384, 488, 496
REQ_SIZE, REQ_POSTED, REQ_DONE = 384, 1, 2
MIB = 1 << 20

assert struct.calcsize(PROFILE_HEAD) == 128 and struct.calcsize(MODULE) == 328 and struct.calcsize(STACK) == 64


def profile_area(number, modules, stacks, frames, sample_bytes=2 * MIB, time_ns=None, overrides=None):
    """The bytes of a profile area: modules as dicts (path, start, end,
    offset, bias, build_id hex, main), stacks as (frame list, alloc_objects,
    alloc_bytes, inuse_objects, inuse_bytes, pinned_bytes); frames appended.
    overrides: header fields to force after the checksum is computed
    (or before, with key 'pre_<name>')."""
    frame_list, stack_recs = list(frames), []
    for st in stacks:
        stack_recs.append(struct.pack(STACK, len(frame_list), len(st[0]), *st[1:6], 1, 1))
        frame_list.extend(st[0])
    used = OFF_FRAMES + 8 * len(frame_list)
    area = bytearray(used)
    for i, m in enumerate(modules):
        bid = bytes.fromhex(m.get("build_id", ""))
        struct.pack_into(MODULE, area, OFF_MODULES + i * 328, m["start"], m["end"], m.get("offset", 0), m["bias"],
                         len(bid), 1 if m.get("main") else 0, bid, m["path"].encode())
    for i, rec in enumerate(stack_recs):
        area[OFF_STACKS + i * 64:OFF_STACKS + (i + 1) * 64] = rec
    struct.pack_into("=%dQ" % len(frame_list), area, OFF_FRAMES, *frame_list)
    head = dict(seq=2 * number, number=number, time_ns=time_ns or time.time_ns(), checksum=0, used=used,
                sample_bytes=sample_bytes, enabled_ns=time.time_ns() - 10 ** 9, nmodules=len(modules),
                nstacks=len(stacks), nframes=len(frame_list), flags=1 if sample_bytes else 0,
                samples=100, dropped=0, live=10, profiler_bytes=65536)
    for k, v in (overrides or {}).items():
        if k.startswith("pre_"):
            head[k[4:]] = v
    order = ["seq", "number", "time_ns", "checksum", "used", "sample_bytes", "enabled_ns", "nmodules", "nstacks",
             "nframes", "flags", "samples", "dropped", "live", "profiler_bytes"]
    struct.pack_into(PROFILE_HEAD, area, 0, *[head[k] for k in order], 0, 0, 0)
    head["checksum"] = fnv(bytes(area[32:min(head["used"], used)]))
    for k, v in (overrides or {}).items():
        if not k.startswith("pre_"):
            head[k] = v
    struct.pack_into(PROFILE_HEAD, area, 0, *[head[k] for k in order], 0, 0, 0)
    return bytes(area)


class Responder(threading.Thread):
    """Plays the process behind a forged segment: keeps its heartbeat
    fresh and answers its control requests.  `answer(request_name)` returns
    (status, message, effective, area bytes or None, ack: bool)."""

    def __init__(self, forged, answer):
        super().__init__(daemon=True)
        self.forged, self.answer, self.stop = forged, answer, threading.Event()
        self.requests = 0
        with open(forged.path, "rb") as f:
            head = f.read(512)
        self.control, self.slots = struct.unpack_from("=II", head, 36)
        self.profile_offset = struct.unpack_from("=I", head, OFF_PROFILE_OFFSET)[0]

    def run(self):
        while not self.stop.is_set():
            try:
                self.tick()
            except FileNotFoundError:
                return
            time.sleep(0.02)

    def tick(self):
        with open(self.forged.path, "r+b") as f:
            f.seek(OFF_INTERVAL)
            f.write(struct.pack("=QQ", 50, time.time_ns()))
            f.seek(self.control)
            slots = f.read(self.slots * REQ_SIZE)
            claimed = []
            for i in range(self.slots):
                state, rid = struct.unpack_from("=QQ", slots, i * REQ_SIZE)
                ack_id = struct.unpack_from("=Q", slots, i * REQ_SIZE + 160)[0]
                if state == REQ_POSTED and ack_id != rid:
                    try:
                        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError:
                        return
                    f.seek(self.control + i * REQ_SIZE + 160)
                    f.write(struct.pack("=Q", rid))
                    fcntl.flock(f, fcntl.LOCK_UN)
                    name = slots[i * REQ_SIZE + 32:i * REQ_SIZE + 80].split(b"\0")[0].decode()
                    claimed.append((i, name))
            for i, name in claimed:
                self.requests += 1
                status, message, effective, area, ack = self.answer(name)
                if area is not None:
                    f.seek(self.profile_offset)
                    f.write(area)
                if not ack:
                    continue
                base = self.control + i * REQ_SIZE
                f.seek(base + 168)
                f.write(struct.pack("=q", status) + message.encode().ljust(120, b"\0")[:120] +
                        effective.encode().ljust(88, b"\0")[:88])
                f.seek(base)
                f.write(struct.pack("=Q", REQ_DONE))


def run_selftest(path, uid=None):
    cmd = [path]
    if uid is not None:
        cmd = ["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups"] + cmd
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    info = json.loads(p.stdout.readline())
    return p, info


def finish(test):
    """End a test: its child processes killed, its allocd stopped (exit 0,
    no sanitizer report in its log), its directory removed."""
    for p in test.children:
        if p.poll() is None:
            p.kill()
        p.wait()
        for pipe in (p.stdin, p.stdout):
            if pipe:
                pipe.close()
    if test.agent.proc.poll() is None:
        test.assertEqual(test.agent.stop(), 0, test.agent.read_log())
    log = test.agent.read_log()
    test.assertNotIn("Sanitizer", log)
    test.assertNotIn("runtime error", log)
    shutil.rmtree(test.root, ignore_errors=True)


class ProfileTest(unittest.TestCase):
    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="allocd-profile.")
        os.chmod(self.root, 0o755)
        self.agent = Agent(self.root)
        os.chmod(self.agent.shm, 0o1777)
        self.agent.start()
        self.children, self.responders = [], []
        self.real = Target(self.agent, "hold", "100", "64", "60000")
        self.children.append(self.real.proc)
        wait_for(lambda: os.path.exists(os.path.join(self.agent.shm, "liballoc.%d" % self.real.pid)), what="segment")
        with open(os.path.join(self.agent.shm, "liballoc.%d" % self.real.pid), "rb") as f:
            self.template = f.read()
        self.number = 0

    def tearDown(self):
        for r in self.responders:
            r.stop.set()
        finish(self)

    # ---- helpers ---------------------------------------------------------------

    def selftest(self, path=None, uid=None):
        p, info = run_selftest(path or SELFTEST, uid)
        self.children.append(p)
        return p, info

    def forge(self, pid, answer, uid=None):
        """A segment for `pid` answered by `answer`; waits until allocd
        collects it."""
        path = os.path.join(self.agent.shm, "liballoc.%d" % pid)
        knobs = self.config_knobs()
        forged = Forged(path, self.template, pid, owner=uid)
        self.prof_on(forged, knobs)
        forged.publish(1, time.time_ns())
        r = Responder(forged, answer)
        r.start()
        self.responders.append(r)
        wait_for(lambda: self.agent.get("/api/v1/processes/%d" % pid)[0] == 200, what="pid %d collected" % pid)
        return r

    def config_knobs(self):
        """The config block's knobs in order: the config's keys' order in
        the API's answer for the real process (alloc_shm.h's knob list)."""
        def config():
            status, body = self.agent.get("/api/v1/processes/%d" % self.real.pid)
            return body.get("config") if status == 200 and body.get("config") else None
        return list(wait_for(config, what="the real process's config"))

    @staticmethod
    def prof_on(forged, knobs):
        """The forged snapshots say prof=true in their config block, as a
        profiling process's do (allocd's history asks only those)."""
        if "prof" not in knobs:
            return   # a liballoc without the profiler: nothing says prof=false either
        with open(forged.path, "r+b") as f:
            nstats = struct.unpack("=I", f.read(512)[48:52])[0]
            body = bytearray(forged.slot_size - test_hostile.SNAP_BODY)
            struct.pack_into("=q", body, nstats * 8 + knobs.index("prof") * 8, 1)
            for i in range(forged.ring_slots):
                f.seek(forged.ring_offset + i * forged.slot_size + test_hostile.SNAP_BODY)
                f.write(body)
        forged.checksum = fnv(bytes(body))

    def answer_with(self, make_area, status=0, message="ok", ack=True):
        def answer(name):
            if name != "prof.publish":
                return errno.ENOENT, "unknown", "", None, True
            self.number += 1
            return status, message, str(self.number), make_area(self.number), ack
        return answer

    def sites_area(self, info, main_path="", extra_modules=()):
        """The three call sites of prof_selftest with the issue's shape:
        keep_64mib holds 64 MiB, churn allocates 16 GiB and holds little,
        fill_small holds 5 MiB and pins 90 MiB."""
        mods = [dict(m) for m in info["modules"]]
        for m in mods:
            if m["main"]:
                m["path"] = main_path
        mods.extend(extra_modules)
        s = {x["name"]: x["frames"] for x in info["sites"]}
        stacks = [(s["keep_64mib"], 1, 64 * MIB, 1, 64 * MIB, 2 * MIB),
                  (s["churn"], 1 << 20, 16 << 30, 10, 40960, 8192),
                  (s["fill_small"], 1 << 22, 100 * MIB, 200000, 5 * MIB, 90 * MIB)]
        return lambda n: profile_area(n, mods, stacks, [])

    def get_profile(self, pid, query=""):
        t0 = time.monotonic()
        status, body, headers = self.agent.request("GET", "/api/v1/processes/%d/profile/heap%s" % (pid, query)) \
            if not query.startswith("?format=json") else self._get_json(pid, query)
        return status, body, headers, time.monotonic() - t0

    def _get_json(self, pid, query):
        status, text, headers = self.agent.request("GET", "/api/v1/processes/%d/profile/heap%s" % (pid, query))
        return status, json.loads(text), headers

    def raw_profile(self, pid, query=""):
        import urllib.request
        import urllib.error
        req = urllib.request.Request("http://127.0.0.1:%d/api/v1/processes/%d/profile/heap%s" %
                                     (self.agent.port, pid, query))
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)

    def pprof_top(self, path, index):
        env = dict(os.environ, HOME=self.root, GOCACHE=os.path.join(self.root, "gocache"),
                   PPROF_BINARY_PATH=os.path.join(self.root, "nonexistent"))
        env.pop("LD_PRELOAD", None)
        out = subprocess.run([GO, "tool", "pprof", "-top", "-sample_index=" + index, "-symbolize=none", path],
                             capture_output=True, env=env, timeout=120)
        self.assertEqual(out.returncode, 0, out.stderr.decode())
        return out.stdout.decode()

    @staticmethod
    def top_rows(text):
        """The function names of `go tool pprof -top` rows, in order."""
        rows, started = [], False
        for line in text.splitlines():
            if line.strip().startswith("flat"):
                started = True
                continue
            if started and line.strip():
                rows.append(line.split()[5] if len(line.split()) > 5 else line.split()[-1])
        return rows

    def health_fast(self):
        t0 = time.monotonic()
        self.assertEqual(self.agent.get("/api/v1/health")[0], 200)
        self.assertLess(time.monotonic() - t0, 1.0)

    # ---- the profile of real call sites -------------------------------------------

    def test_pprof_ranks_real_call_sites(self):
        p, info = self.selftest()
        self.forge(p.pid, self.answer_with(self.sites_area(info)))
        status, body, headers = self.raw_profile(p.pid)
        self.assertEqual(status, 200, body[:300])
        self.assertEqual(headers["Content-Type"], "application/octet-stream")
        self.assertIn("attachment; filename=\"heap-%d-" % p.pid, headers["Content-Disposition"])
        self.assertEqual(body[:2], b"\x1f\x8b")
        gzip.decompress(body)
        path = os.path.join(self.root, "heap.pb.gz")
        with open(path, "wb") as f:
            f.write(body)
        by = {}
        for index in ("inuse_space", "pinned_space", "alloc_space"):
            by[index] = self.pprof_top(path, index)
        self.assertEqual(self.top_rows(by["inuse_space"])[0], "keep_64mib", by["inuse_space"])
        self.assertEqual(self.top_rows(by["pinned_space"])[0], "fill_small", by["pinned_space"])
        self.assertEqual(self.top_rows(by["alloc_space"])[0], "churn", by["alloc_space"])
        self.assertIn("69.04MB total", by["inuse_space"].replace("69.05MB", "69.04MB"))
        sys.stderr.write("\n%s\n" % by["inuse_space"])
        # the JSON: function, file:line of the call, the five values
        status, top, _, took = self.get_profile(p.pid, "?format=json&sort=pinned_space&top=2")
        self.assertEqual(status, 200, top)
        self.assertEqual(len(top["sites"]), 2)
        first = top["sites"][0]
        self.assertEqual(first["function"], "fill_small")
        self.assertTrue(first["file"].endswith("prof_selftest.c"), first)
        want = {x["name"]: x["lines"] for x in info["sites"]}
        self.assertEqual(first["line"], want["fill_small"][0])
        self.assertEqual(first["stack"][1]["function"], "main")
        self.assertEqual(first["stack"][1]["line"], want["fill_small"][1])
        self.assertEqual(first["pinned_space"], 90 * MIB)
        self.assertEqual(top["totals"]["inuse_space"], 64 * MIB + 40960 + 5 * MIB)
        self.assertEqual(top["sort"], "pinned_space")
        sys.stderr.write("profile: %d bytes gzip'ed, JSON in %.0f ms\n" % (len(body), took * 1000))

    def test_lines_in_pprof_and_main_path_from_kernel(self):
        # The main program's module has no path (as dl_iterate_phdr gives
        # it): allocd uses the kernel's /proc/PID/exe, and -lines shows the
        # source lines of prof_selftest.c.
        p, info = self.selftest()
        self.forge(p.pid, self.answer_with(self.sites_area(info, main_path="")))
        status, body, _ = self.raw_profile(p.pid)
        self.assertEqual(status, 200)
        path = os.path.join(self.root, "heap.pb.gz")
        with open(path, "wb") as f:
            f.write(body)
        env = dict(os.environ, HOME=self.root, GOCACHE=os.path.join(self.root, "gocache"))
        out = subprocess.run([GO, "tool", "pprof", "-raw", path], capture_output=True, env=env, timeout=120)
        raw = out.stdout.decode()
        self.assertIn(os.path.realpath(SELFTEST), raw)
        bid = [m["build_id"] for m in info["modules"] if m["main"]][0]
        self.assertIn(bid, raw)
        line = {x["name"]: x["lines"][0] for x in info["sites"]}["keep_64mib"]
        self.assertIn("prof_selftest.c:%d" % line, raw)

    def test_inlined_call_sites(self):
        # A call site in code inlined into its caller (-O2): the innermost
        # function is the inlined one at its line, then the function it was
        # inlined into at the line of the call; pprof gets both lines.
        p, info = self.selftest()
        site = [x for x in info["sites"] if x["name"] == "inlined_helper"][0]
        self.forge(p.pid, self.answer_with(lambda n: profile_area(
            n, info["modules"], [(site["frames"], 1, MIB, 1, MIB, 0)], [])))
        status, top, _, _ = self.get_profile(p.pid, "?format=json")
        self.assertEqual(status, 200, top)
        first = top["sites"][0]
        self.assertEqual((first["function"], first["line"]), ("inlined_helper", site["lines"][0]), first)
        self.assertEqual(first["inlined_into"][0]["function"], "calls_inlined", first)
        self.assertEqual(first["inlined_into"][0]["line"], info["inlined_call_line"], first)
        self.assertEqual(first["stack"][1]["function"], "main")
        status, body, _ = self.raw_profile(p.pid)
        path = os.path.join(self.root, "i.pb.gz")
        with open(path, "wb") as f:
            f.write(body)
        env = dict(os.environ, HOME=self.root, GOCACHE=os.path.join(self.root, "gocache"))
        out = subprocess.run([GO, "tool", "pprof", "-traces", "-symbolize=none", path], capture_output=True, env=env,
                             timeout=120).stdout.decode()
        self.assertRegex(out, r"inlined_helper \(inline\)\s*\n\s*calls_inlined\s*\n\s*main")

    def test_stripped_binary_gives_addresses_and_build_ids(self):
        stripped = os.path.join(self.root, "prof_stripped")
        subprocess.run(["strip", "-o", stripped, SELFTEST], check=True)
        os.chmod(stripped, 0o755)
        p, info = self.selftest(stripped)
        self.forge(p.pid, self.answer_with(self.sites_area(info, main_path=stripped)))
        status, top, _, _ = self.get_profile(p.pid, "?format=json")
        self.assertEqual(status, 200, top)
        first = top["sites"][0]
        self.assertNotIn("function", first)
        self.assertEqual(first["module"], stripped)
        self.assertEqual(int(first["address"], 16), [x for x in info["sites"] if x["name"] == "keep_64mib"][0]["frames"][0] - 1)
        status, body, _ = self.raw_profile(p.pid)
        self.assertEqual(status, 200)
        path = os.path.join(self.root, "s.pb.gz")
        with open(path, "wb") as f:
            f.write(body)
        env = dict(os.environ, HOME=self.root, GOCACHE=os.path.join(self.root, "gocache"))
        raw = subprocess.run([GO, "tool", "pprof", "-raw", "-symbolize=none", path], capture_output=True, env=env,
                             timeout=120).stdout.decode()
        self.assertIn([m["build_id"] for m in info["modules"] if m["main"]][0], raw)

    def test_module_files_another_user_could_not_read(self):
        # The process runs as nobody.  Its binary copied where nobody cannot
        # read it (0600 root, or inside a 0700 directory) gives addresses
        # only; a world-readable copy is symbolized.
        hidden_dir = os.path.join(self.root, "private")
        os.mkdir(hidden_dir, 0o700)
        public_dir = os.path.join(self.root, "public")
        os.mkdir(public_dir, 0o755)
        copies = {"0600": os.path.join(public_dir, "secret"), "dir": os.path.join(hidden_dir, "inside"),
                  "link into dir": os.path.join(public_dir, "link"), "ok": os.path.join(public_dir, "readable")}
        for kind, path in copies.items():
            if kind == "link into dir":   # a public symlink to the world-readable file in the 0700 directory
                os.symlink(copies["dir"], path)
                continue
            shutil.copy(SELFTEST, path)
            os.chmod(path, 0o600 if kind == "0600" else 0o755)
        runner = os.path.join(public_dir, "runner")
        shutil.copy(SELFTEST, runner)
        os.chmod(runner, 0o755)
        p, info = self.selftest(runner, uid=NOBODY)
        for kind, path in copies.items():
            self.number = 0
            r = None
            if kind != "0600":
                pass
            area = self.sites_area(info, main_path=path)
            if not self.responders:
                r = self.forge(p.pid, self.answer_with(area), uid=NOBODY)
            else:
                self.responders[0].answer = self.answer_with(area)
            status, top, _, _ = self.get_profile(p.pid, "?format=json")
            self.assertEqual(status, 200, top)
            if kind == "ok":
                self.assertEqual(top["sites"][0].get("function"), "keep_64mib", top)
            else:
                self.assertNotIn("function", top["sites"][0], (kind, top))
                self.assertIn("not readable by the process's owner", top["unsymbolized_reason"])

    # ---- hostile profile areas -----------------------------------------------------

    def test_hostile_profile_areas(self):
        p, info = self.selftest()
        good = self.sites_area(info)
        fifo = os.path.join(self.root, "fifo")
        os.mkfifo(fifo)
        cases = {
            "garbage": (lambda n: os.urandom(4096), 502, "profile"),
            "odd seq": (lambda n: profile_area(n, [], [], [], overrides={"seq": 2 * n - 1}), 502, "being written"),
            "bad checksum": (lambda n: profile_area(n, [], [([1, 2], 1, 1, 1, 1, 1)], [],
                                                    overrides={"checksum": 12345}), 502, "checksum"),
            "older number": (lambda n: profile_area(n - 1 if n > 1 else 0, [], [], [], ), 502, "older"),
            "huge counts": (lambda n: profile_area(n, [], [], [], overrides={"pre_nstacks": 1 << 31}), 502,
                            "more modules, stacks or frames"),
            "used lies": (lambda n: profile_area(n, [], [], [], overrides={"pre_used": 1 << 40}), 502, "used size"),
            "frames out of range": (lambda n: profile_area(n, [], [([5, 6], 1, 1, 1, 1, 1)], [],
                                                           overrides={"pre_nframes": 1, "pre_used": OFF_FRAMES + 8}),
                                    502, "outside the frame table"),
            "path not terminated": (lambda n: profile_area(n, [dict(path="x" * 256, start=0, end=1, bias=0)], [], []),
                                    502, "NUL-terminated"),
        }
        r = self.forge(p.pid, self.answer_with(good))
        for name, (make, want_status, want_text) in cases.items():
            r.answer = self.answer_with(make)
            status, body, _, took = self.get_profile(p.pid, "?format=json")
            self.assertEqual(status, want_status, (name, body))
            self.assertIn(want_text, body["error"], name)
            self.assertLess(took, 5, name)
            self.health_fast()
        # modules naming a FIFO, a device, a directory and a missing file:
        # addresses only, at once (none of them is opened for reading)
        for path in (fifo, "/dev/zero", "/dev/tty", "/", "/nonexistent/lib.so", "relative.so"):
            r.answer = self.answer_with(self.sites_area(info, main_path=path))
            status, body, _, took = self.get_profile(p.pid, "?format=json")
            self.assertEqual(status, 200, (path, body))
            self.assertNotIn("function", body["sites"][0], path)
            self.assertLess(took, 5, path)
        # a process that never answers: 504 within the push timeout (3 s here)
        r.answer = self.answer_with(good, ack=False)
        status, body, _, took = self.get_profile(p.pid, "?format=json")
        self.assertEqual(status, 504, body)
        self.assertLess(took, 8)
        self.health_fast()
        # a liballoc without the profiler, and profiling off
        r.answer = self.answer_with(good, status=errno.ENOENT, message="unknown name")
        status, body, _, _ = self.get_profile(p.pid, "?format=json")
        self.assertEqual(status, 409)
        self.assertIn("no heap profiler", body["error"])
        r.answer = self.answer_with(lambda n: profile_area(n, [], [], [], sample_bytes=0))
        status, body, _, _ = self.get_profile(p.pid, "?format=json")
        self.assertEqual(status, 409)
        self.assertIn("allocctl set %d prof=true" % p.pid, body["error"])
        # and allocd still serves the good profile
        r.answer = self.answer_with(good)
        self.assertEqual(self.get_profile(p.pid, "?format=json")[0], 200)

    def test_largest_profile_is_bounded(self):
        # The most the area holds: 8192 stacks of 64 frames, every frame a
        # distinct address inside the real binary (524,288 lookups).  The
        # answer comes within the symbolization budget (5 s, then
        # addresses only) plus encoding; health answers meanwhile.
        import random
        p, info = self.selftest()
        ranges = [(m["start"] + 1, m["end"]) for m in info["modules"] if m["main"] or "libc" in m["path"]]
        rnd = random.Random(19)
        stacks = [([rnd.randrange(*ranges[rnd.randrange(len(ranges))]) for _ in range(MAX_DEPTH)], 1, 4096, 1, 4096, 64)
                  for _ in range(MAX_STACKS)]
        distinct = len({a - 1 for st in stacks for a in st[0]})
        self.forge(p.pid, self.answer_with(lambda n: profile_area(n, info["modules"], stacks, [])))
        results = {}

        def ask():
            results["pprof"] = self.raw_profile(p.pid)
        t = threading.Thread(target=ask)
        t0 = time.monotonic()
        t.start()
        while t.is_alive():
            self.health_fast()
            time.sleep(0.2)
        took = time.monotonic() - t0
        status, body, _ = results["pprof"]
        self.assertEqual(status, 200, body[:300])
        self.assertLess(took, 20)
        sys.stderr.write("largest profile: %d bytes gzip'ed in %.1f s\n" % (len(body), took))
        status, top, _, took = self.get_profile(p.pid, "?format=json&top=3")
        self.assertEqual(status, 200)
        self.assertEqual(top["locations"], distinct)
        sys.stderr.write("largest profile as JSON in %.1f s, %d of %d locations symbolized\n" %
                         (took, top["symbolized"], top["locations"]))

    def test_process_exits_while_its_profile_is_read(self):
        p, info = self.selftest()
        good = self.sites_area(info)

        def exit_instead(name):
            p.kill()
            os.unlink(r.forged.path)
            return 0, "", "", None, False
        r = self.forge(p.pid, exit_instead)
        status, body, _, took = self.get_profile(p.pid, "?format=json")
        self.assertIn(status, (404, 504), body)
        self.assertLess(took, 8)
        self.health_fast()
        del good

    def test_refused_requests(self):
        # not a tracked pid, bad parameters, another method
        self.assertEqual(self.agent.get("/api/v1/processes/999999999/profile/heap")[0], 404)
        p, info = self.selftest()
        self.forge(p.pid, self.answer_with(self.sites_area(info)))
        for q in ("?format=xml", "?top=0", "?top=abc", "?sort=bogus", "?seconds=-1"):
            self.assertEqual(self.agent.get("/api/v1/processes/%d/profile/heap%s" % (p.pid, q))[0], 400, q)
        self.assertEqual(self.agent.get("/api/v1/processes/%d/profile/cpu" % p.pid)[0], 404)
        status, _, headers = self.agent.request("POST", "/api/v1/processes/%d/profile/heap" % p.pid,
                                                raw=b"", token=self.agent.token)
        self.assertEqual(status, 405)
        # `seconds` (what Parca and Pyroscope send) is accepted and ignored
        self.assertEqual(self.raw_profile(p.pid, "?seconds=30")[0], 200)
        # a segment of another user the collector rejects is not tracked
        q, _ = self.selftest()
        path = os.path.join(self.agent.shm, "liballoc.%d" % q.pid)
        # q runs as root: nobody's segment is not its
        Forged(path, self.template, q.pid, owner=NOBODY).publish(1, time.time_ns())
        time.sleep(0.5)
        status, body = self.agent.get("/api/v1/processes/%d/profile/heap" % q.pid)
        self.assertEqual(status, 404, body)
        self.assertIn("may read", body["error"])

    def test_scraper_paths(self):
        # Parca's and Pyroscope's default memory paths, the pid as a query
        # parameter: /debug/pprof/allocs defaults to alloc_space (Go's
        # convention), /debug/pprof/heap to inuse_space.
        p, info = self.selftest()
        self.forge(p.pid, self.answer_with(self.sites_area(info)))
        self.assertEqual(self.agent.get("/debug/pprof/heap")[0], 400)
        self.assertEqual(self.agent.get("/debug/pprof/heap?pid=abc")[0], 400)
        self.assertEqual(self.agent.get("/debug/pprof/heap?pid=999999999")[0], 404)
        env = dict(os.environ, HOME=self.root, GOCACHE=os.path.join(self.root, "gocache"))
        env.pop("LD_PRELOAD", None)
        for path, first in (("/debug/pprof/allocs", "churn"), ("/debug/pprof/heap", "keep_64mib")):
            url = "http://127.0.0.1:%d%s?pid=%d&seconds=15" % (self.agent.port, path, p.pid)
            # go tool pprof fetches the URL itself, as a scraper would
            out = subprocess.run([GO, "tool", "pprof", "-top", "-symbolize=none", url], capture_output=True, env=env,
                                 timeout=120)
            self.assertEqual(out.returncode, 0, out.stderr.decode())
            self.assertEqual(self.top_rows(out.stdout.decode())[0], first, out.stdout.decode())

    def test_history_and_diff(self):
        # --profile-interval 1s: allocd asks for and stores the profile;
        # ?base=T is the current profile minus the stored one at or before T.
        self.agent.stop()
        self.agent = Agent(self.root, port=self.agent.port, extra=("--profile-interval", "1s"))
        self.agent.start()
        p, info = self.selftest()
        s = {x["name"]: x["frames"] for x in info["sites"]}
        inuse = {"keep": 64 * MIB}

        def area(n):
            return profile_area(n, info["modules"], [(s["keep_64mib"], 1, inuse["keep"], 1, inuse["keep"], 0),
                                                     (s["fill_small"], 10, 10 * MIB, 10, 5 * MIB, 90 * MIB)], [])
        self.forge(p.pid, self.answer_with(area))
        before = time.time() - 3600
        stored = wait_for(lambda: self.agent.get("/api/v1/processes/%d/profiles" % p.pid)[1]["profiles"],
                          what="a stored profile")
        self.assertGreater(stored[0]["bytes"], 0)
        self.assertLess(stored[0]["bytes"], 64 * 1024, stored)   # zlib: the area's unused entries are zeros
        base = stored[0]["t"] + 0.0005
        inuse["keep"] = 96 * MIB   # it grew
        status, top, _, _ = self.get_profile(p.pid, "?format=json&base=%.3f" % base)
        self.assertEqual(status, 200, top)
        self.assertEqual(top["sites"][0]["function"], "keep_64mib")
        self.assertEqual(top["sites"][0]["inuse_space"], 32 * MIB)
        self.assertEqual(top["totals"]["inuse_space"], 32 * MIB)
        self.assertEqual(top["totals"]["pinned_space"], 0)
        self.assertAlmostEqual(top["base_time"], stored[0]["t"], places=2)
        status, body, _ = self.raw_profile(p.pid, "?base=%.3f" % base)
        self.assertEqual(status, 200)
        path = os.path.join(self.root, "diff.pb.gz")
        with open(path, "wb") as f:
            f.write(body)
        self.assertIn("32MB", self.pprof_top(path, "inuse_space"))
        # no stored profile that early; a bad time
        status, body, _, _ = self.get_profile(p.pid, "?format=json&base=%d" % before)
        self.assertEqual(status, 404, body)
        self.assertEqual(self.agent.get("/api/v1/processes/%d/profile/heap?base=yesterday" % p.pid)[0], 400)

    def test_allocctl_profile(self):
        p, info = self.selftest()
        self.forge(p.pid, self.answer_with(self.sites_area(info)))
        url = "http://127.0.0.1:%d" % self.agent.port
        out = subprocess.run([test_agent.ALLOCCTL, "--url", url, "profile", str(p.pid), "--top", "2"],
                             capture_output=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        text = out.stdout.decode()
        lines = [l for l in text.splitlines() if "keep_64mib" in l or "fill_small" in l or "churn" in l]
        self.assertEqual(len(lines), 2, text)
        self.assertIn("keep_64mib", lines[0])
        self.assertIn("prof_selftest.c:", lines[0])
        out = subprocess.run([test_agent.ALLOCCTL, "--url", url, "profile", str(p.pid), "--pinned"],
                             capture_output=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = [l for l in out.stdout.decode().splitlines() if "keep_64mib" in l or "fill_small" in l or "churn" in l]
        self.assertIn("fill_small", lines[0], out.stdout.decode())
        out = subprocess.run([test_agent.ALLOCCTL, "--url", url, "profile", "999999999"], capture_output=True, timeout=60)
        self.assertEqual(out.returncode, 4, out)


class RealProfileTest(unittest.TestCase):
    """prof_workload (-O2, no frame pointers) profiled by liballoc itself,
    served by allocd, read by go tool pprof."""

    def setUp(self):
        if not os.environ.get("ALLOC_TEST_PRELOAD"):
            self.skipTest("needs liballoc preloaded (ALLOC_TEST_PRELOAD: the release build)")
        self.root = tempfile.mkdtemp(prefix="allocd-realprof.")
        self.agent = Agent(self.root, extra=("--profile-interval", "0")).start()
        self.children = []

    def tearDown(self):
        finish(self)

    def workload(self, path=None):
        env = dict(os.environ, LD_PRELOAD=os.environ["ALLOC_TEST_PRELOAD"],
                   ALLOC_CONF="telemetry_dir:%s,stats_interval_ms:100,prof:true,prof_sample_bytes:65536" % self.agent.shm)
        p = subprocess.Popen([path or WORKLOAD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.children.append(p)
        line = p.stdout.readline().decode().split()
        self.assertEqual(line[0], "ready", line)
        pid, inuse = int(line[1]), int(line[2])
        wait_for(lambda: self.agent.get("/api/v1/processes/%d" % pid)[0] == 200, what="the workload collected")
        status, body = self.agent.get("/api/v1/processes/%d/profile/heap?format=json" % pid)
        if status == 409 and "no heap profiler" in body.get("error", ""):
            self.skipTest("this liballoc has no heap profiler (issue 19's writer): " + body["error"])
        self.assertEqual(status, 200, body)
        return p, pid, inuse

    def fetch(self, pid):
        t0 = time.monotonic()
        status, body, headers = ProfileTest.raw_profile(self, pid)
        took = time.monotonic() - t0
        self.assertEqual(status, 200, body[:300])
        path = os.path.join(self.root, "heap-%d.pb.gz" % pid)
        with open(path, "wb") as f:
            f.write(body)
        return path, len(body), took

    def test_ranks_and_totals(self):
        p, pid, truth = self.workload()
        path, size, took = self.fetch(pid)
        tops = {i: ProfileTest.pprof_top(self, path, i) for i in ("inuse_space", "pinned_space", "alloc_space")}
        sys.stderr.write("\n%s\nprofile: %d bytes gzip'ed, served in %.0f ms\n" % (tops["inuse_space"], size, took * 1000))
        self.assertEqual(ProfileTest.top_rows(tops["inuse_space"])[0], "keep_64mib", tops["inuse_space"])
        self.assertEqual(ProfileTest.top_rows(tops["pinned_space"])[0], "fill_small", tops["pinned_space"])
        self.assertEqual(ProfileTest.top_rows(tops["alloc_space"])[0], "churn", tops["alloc_space"])
        status, top = self.agent.get("/api/v1/processes/%d/profile/heap?format=json&top=5" % pid)
        total = top["totals"]["inuse_space"]
        self.assertLess(abs(total - truth) / truth, 0.10, (total, truth))
        first = top["sites"][0]
        self.assertEqual(first["function"], "keep_64mib")
        self.assertTrue(first["file"].endswith("prof_workload.c"), first)
        # the flame graph's tree: the root holds the total, every node at
        # least what its children hold, and keep_64mib's 64 MiB lie under
        # main, its caller
        flame = top["flame"]
        self.assertEqual((flame["name"], flame["value"], flame["value_name"]), ("all", total, "inuse_space"))
        def nodes(n, path=()):
            yield path + (n["name"],), n
            for c in n["children"]:
                self.assertLessEqual(c["value"], n["value"])
                yield from nodes(c, path + (n["name"],))
        keep = [(path, n) for path, n in nodes(flame) if path[-1] == "keep_64mib"]
        self.assertTrue(keep and all("main" in path for path, _ in keep), keep)
        self.assertLess(abs(sum(n["value"] for _, n in keep) - (64 << 20)) / (64 << 20), 0.10)
        self.assertLessEqual(sum(1 for _ in nodes(flame)), 4000)

    def test_history_of_a_real_process(self):
        # allocd keeps the idle workload's profile every second; against
        # a stored one, its diff is about nothing.
        self.agent.stop()
        self.agent = Agent(self.root, port=self.agent.port, extra=("--profile-interval", "1s")).start()
        p, pid, truth = self.workload()
        stored = wait_for(lambda: self.agent.get("/api/v1/processes/%d/profiles" % pid)[1]["profiles"],
                          what="a stored profile")
        status, top = self.agent.get("/api/v1/processes/%d/profile/heap?format=json&base=%.3f" %
                                     (pid, stored[0]["t"] + 0.0005))
        self.assertEqual(status, 200, top)
        self.assertLess(abs(top["totals"]["inuse_space"]), truth * 0.05, top["totals"])
        sys.stderr.write("stored profile: %d bytes compressed\n" % stored[0]["bytes"])

    def test_stripped_workload(self):
        stripped = os.path.join(self.root, "prof_workload_stripped")
        subprocess.run(["strip", "-o", stripped, WORKLOAD], check=True)
        p, pid, truth = self.workload(stripped)
        status, top = self.agent.get("/api/v1/processes/%d/profile/heap?format=json" % pid)
        self.assertEqual(status, 200, top)
        mine = [s for s in top["sites"] if s.get("module") == stripped]
        self.assertTrue(mine, top)
        self.assertFalse([s for s in mine if "function" in s], mine)
        self.fetch(pid)

    def test_exits_while_profile_is_read(self):
        p, pid, truth = self.workload()
        results = []
        t = threading.Thread(target=lambda: results.append(
            self.agent.get("/api/v1/processes/%d/profile/heap?format=json" % pid)[0]))
        t.start()
        p.stdin.write(b"exit\n")
        p.stdin.flush()
        t.join(30)
        self.assertFalse(t.is_alive())
        self.assertIn(results[0], (200, 404, 502, 504))
        self.assertEqual(self.agent.get("/api/v1/health")[0], 200)


if __name__ == "__main__":
    test_agent.ALLOCD, test_agent.TARGET, test_agent.ALLOCCTL = sys.argv[1], sys.argv[2], sys.argv[3]
    SELFTEST, WORKLOAD = sys.argv[4], sys.argv[5]
    unittest.main(argv=[sys.argv[0], "-v"] + sys.argv[6:])
