#!/usr/bin/env python3
"""tests/agent/test_hostile.py - allocd against hostile local users.

The threat model (docs/reliability.md): any local user can create files in
the telemetry directory (sticky and world-writable, like /dev/shm), choose
the contents of its own processes' segments, name its executables with any
bytes and make its processes non-dumpable.  Each test here is one way such
a user tried to spin, blind or mislead allocd, and runs a real allocd
(tests/agent/test_agent.py's Agent) against real processes and against
segments forged by the test itself, byte by byte, from the layout in
liballoc/include/alloc_shm.h.

usage: test_hostile.py ALLOCD TM_TARGET [unittest args]; ALLOC_TEST_PRELOAD
as for test_agent.py.
"""
import os
import random
import shutil
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_agent  # noqa: E402  (Agent, Target, stop_process, wait_for)
from test_agent import Agent, Target, stop_process, wait_for  # noqa: E402

NOBODY = 65534
HEADER = 512
OFF_PID, OFF_START, OFF_PIDNS, OFF_CREATED, OFF_EXE, OFF_PUBLISHED = 60, 64, 72, 88, 96, 504
OFF_RING_SLOTS = 28
SNAP_BODY = 48   # seq, number, time_ns, uptime_ns, nclasses, checksum


def fnv(data):
    """alloc_shm_checksum: FNV-1a over 64-bit words, then the byte tail."""
    h, mask = 0xcbf29ce484222325, (1 << 64) - 1
    n = len(data) // 8
    for (w,) in struct.iter_unpack("=Q", data[:n * 8]):
        h = ((h ^ w) * 0x100000001b3) & mask
    for b in data[n * 8:]:
        h = ((h ^ b) * 0x100000001b3) & mask
    return h


def fnv_zeros(h, nbytes):
    """fnv() continued over nbytes of zeros (each word or byte multiplies
    by the prime): a checksum of a body whose tail is all zero costs only
    its head."""
    n = nbytes // 8 + nbytes % 8
    return (h * pow(0x100000001b3, n, 1 << 64)) & ((1 << 64) - 1)


def read_pid_max():
    with open("/proc/sys/kernel/pid_max") as f:
        return int(f.read())


def start_time(pid):
    with open("/proc/%d/stat" % pid, "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[19])


def spawn_idle(uid=None):
    """A process that does nothing (sleep), as `uid` if given (root only)."""
    cmd = ["sleep", "600"]
    if uid is not None:
        cmd = ["setpriv", "--reuid", str(uid), "--regid", str(uid), "--clear-groups"] + cmd
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    p = subprocess.Popen(cmd, env=env)
    wait_for(lambda: os.path.exists("/proc/%d/exe" % p.pid) and os.readlink("/proc/%d/exe" % p.pid).endswith("sleep"),
             what="sleep to exec")
    return p


class Forged:
    """A segment written by the test for a live process `pid`: a real
    segment's layout (template), this process's identity, and snapshots
    whose numbers, times and `published` the test chooses, owned by
    `owner` (a uid) from the moment it appears."""

    def __init__(self, path, template, pid, exe=b"/usr/sbin/postgres", ring_slots=None, published=0, owner=None):
        self.path, self.pid = path, pid
        data = bytearray(template)
        struct.pack_into("=i", data, OFF_PID, pid)
        struct.pack_into("=Q", data, OFF_START, start_time(pid))
        struct.pack_into("=Q", data, OFF_PIDNS, os.stat("/proc/self/ns/pid").st_ino)
        struct.pack_into("=Q", data, OFF_CREATED, time.time_ns())
        data[OFF_EXE:OFF_EXE + 256] = exe.ljust(256, b"\0")[:256]
        self.ring_offset, slots, self.slot_size = struct.unpack_from("=III", data, 24)
        self.ring_slots = ring_slots or slots
        if ring_slots:   # a larger ring, laid out consistently, in a sparse file
            control_slots, request_size = struct.unpack_from("=II", data, 40)
            control = self.ring_offset + ring_slots * self.slot_size
            struct.pack_into("=I", data, OFF_RING_SLOTS, ring_slots)
            struct.pack_into("=I", data, 36, control)
            struct.pack_into("=Q", data, 16, control + control_slots * request_size)
            data = data[:HEADER]
        # `published` as the file first appears (renamed into place below):
        # a hostile value must be there before allocd can read the file.
        struct.pack_into("=Q", data, OFF_PUBLISHED, published)
        body = bytes(self.slot_size - SNAP_BODY)   # all statistics 0: its checksum never changes
        self.checksum = fnv(body)
        self.nstats = struct.unpack_from("=I", data, 48)[0]
        for i in range(self.ring_slots if not ring_slots else 0):
            data[self.ring_offset + i * self.slot_size + SNAP_BODY:
                 self.ring_offset + (i + 1) * self.slot_size] = body
        self.published = 0
        tmp = path + ".forging"
        with open(tmp, "wb") as f:
            f.write(data)
            f.truncate(struct.unpack_from("=Q", data, 16)[0])
        if owner is not None:   # before the rename: allocd judges a file once per inode
            os.chown(tmp, owner, owner)
        os.rename(tmp, path)

    def publish(self, count, time_ns, published=None, vary=False):
        """Write snapshots published+1 .. published+count (the last ring's
        worth of them), dated time_ns, then `published` (default: the last).
        With vary, every statistic of every snapshot is a new random number
        (what an attacker who wants to fill the database writes: allocd
        stores an unchanged value in a bit), else they are all 0."""
        with open(self.path, "r+b") as f:
            first = max(self.published + 1, self.published + count - self.ring_slots + 1)
            for n in range(first, self.published + count + 1):
                f.seek(self.ring_offset + ((n - 1) % self.ring_slots) * self.slot_size)
                stats, checksum = b"", self.checksum
                if vary:
                    stats = struct.pack("=%dQ" % self.nstats, *(random.getrandbits(40) for _ in range(self.nstats)))
                    checksum = fnv_zeros(fnv(stats), self.slot_size - SNAP_BODY - len(stats))
                f.write(struct.pack("=QQQQQQ", 2 * n, n, time_ns, 0, 0, checksum) + stats)
            self.published += count
            f.seek(OFF_PUBLISHED)
            f.write(struct.pack("=Q", self.published if published is None else published))


class HostileTest(unittest.TestCase):
    def setUp(self):
        # On tmpfs, like the real telemetry directory: an attacker's files
        # are created there in seconds (300,000 on ext4 take minutes).
        self.root = tempfile.mkdtemp(prefix="allocd-hostile.", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        os.chmod(self.root, 0o755)
        self.agent = None
        self.children = []

    def start(self, *extra):
        self.agent = Agent(self.root, extra=extra)
        os.chmod(self.agent.shm, 0o1777)   # like /dev/shm: anyone may create files
        self.agent.start()
        return self.agent

    def tearDown(self):
        for p in self.children:
            if p.poll() is None:
                p.kill()
            p.wait()
        if self.agent and self.agent.proc.poll() is None:
            self.assertEqual(self.agent.stop(), 0, self.agent.read_log())
        if self.agent:
            self.assertNotIn("Sanitizer", self.agent.read_log())
            self.assertNotIn("runtime error", self.agent.read_log())
        shutil.rmtree(self.root, ignore_errors=True)

    def target(self, *args, conf="stats_interval_ms:50"):
        t = Target(self.agent, *args, conf=conf)
        self.children.append(t.proc)
        return t

    def idle(self, uid=None):
        p = spawn_idle(uid)
        self.children.append(p)
        return p

    def process(self, pid):
        def look():
            status, body = self.agent.get("/api/v1/processes/%d" % pid)
            return body if status == 200 and body.get("alive") and body.get("stats") else None
        return wait_for(look, what="pid %d in the API" % pid)

    def template(self, pid):
        with open(os.path.join(self.agent.shm, "liballoc.%d" % pid), "rb") as f:
            return f.read()

    def metric(self, line_start):
        value = self.agent.metric(line_start)
        self.assertIsNotNone(value, "no %s in /metrics" % line_start)
        return value

    def timed_health(self):
        """GET /api/v1/health; fails unless it answers 200 within 1 s."""
        start = time.monotonic()
        status, _, _ = self.agent.request("GET", "/api/v1/health")
        took = time.monotonic() - start
        self.assertEqual(status, 200)
        self.assertLess(took, 1.0, "health took %.2f s under attack" % took)
        return took

    def promtool(self):
        text = self.agent.request("GET", "/metrics")[1]
        check = subprocess.run(["promtool", "check", "metrics"], input=text.encode(), capture_output=True)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        return text

    # ---- 1. a forged `published` must not spin the collector ---------------------------

    def test_published_at_uint64_max_does_not_spin(self):
        # `published = UINT64_MAX` made `for (n = from; n <= published; n++)`
        # wrap and never end, holding the collector's lock.  The segment is
        # now refused (layout), health answers at once, and the real
        # process next to it is collected on.
        self.start()
        real = self.target("hold", "100", "64", "60000")
        self.process(real.pid)
        attacker = self.idle()
        forged = Forged(os.path.join(self.agent.shm, "liballoc.%d" % attacker.pid), self.template(real.pid), attacker.pid,
                        published=(1 << 64) - 1)
        forged.publish(3, time.time_ns(), published=(1 << 64) - 1)
        big = self.idle()
        Forged(os.path.join(self.agent.shm, "liballoc.%d" % big.pid), self.template(real.pid), big.pid,
               ring_slots=8192)   # a ring the reader does not know (36 MB): 8192 rows a tick before
        ticks = self.agent.get("/api/v1/health")[1]["collector"]["ticks"]
        number = self.process(real.pid)["snapshot_number"]
        end = time.monotonic() + 3
        while time.monotonic() < end:
            self.timed_health()
            time.sleep(0.2)
        health = self.agent.get("/api/v1/health")[1]["collector"]
        self.assertGreater(health["ticks"], ticks + 10, "the collector stalled")
        self.assertGreater(self.process(real.pid)["snapshot_number"], number + 10)
        self.assertGreaterEqual(self.metric('allocd_segments_rejected_total{reason="layout"}'), 2)
        self.assertEqual(self.agent.get("/api/v1/processes/%d" % attacker.pid)[0], 404)

    # ---- 2. forged rows must not erase other processes' history -------------------------

    def attack(self, forged, stop, time_ns, vary=False):
        """Each forged segment publishes a full ring every 50 ms."""
        while not stop.is_set():
            for f in forged:
                f.publish(f.ring_slots, time_ns(), vary=vary)
            time.sleep(0.05)

    def test_forged_rows_do_not_erase_history(self):
        # Four processes of another user publish a ring of 32 snapshots
        # every 50 ms, dated 2036.  Before: the dates were stored as they
        # came, and under the size cap retention deleted the oldest `t`
        # first, so the real process's history went to 0.  Now: their
        # times are replaced by allocd's clock, each process gets at most
        # a ring per tick, and the size cap takes rows from the user and
        # process with the most rows first, so the real process keeps its
        # history from its first sample.
        self.start("--max-db-mb", "1")
        real = self.target("hold", "100", "64", "120000")
        self.process(real.pid)
        uid = NOBODY if os.geteuid() == 0 else None
        forged = []
        for _ in range(4):
            p = self.idle(uid)
            f = Forged(os.path.join(self.agent.shm, "liballoc.%d" % p.pid), self.template(real.pid), p.pid, owner=uid)
            forged.append(f)
        db = lambda: sqlite3.connect(self.agent.db)
        wait_for(lambda: db().execute("SELECT count(*) FROM sample_chunks s JOIN processes p ON p.id = s.process_id"
                                      " WHERE p.pid = ?", (real.pid,)).fetchone()[0] > 0, what="real samples")
        real_id, first_t = db().execute("SELECT p.id, min(s.t) FROM sample_chunks s JOIN processes p ON p.id = s.process_id"
                                        " WHERE p.pid = ?", (real.pid,)).fetchone()
        ticks0 = self.agent.get("/api/v1/health")[1]["collector"]["ticks"]
        stop = threading.Event()
        year_2036 = 2082758400 * 10**9
        writer = threading.Thread(target=self.attack, args=(forged, stop, lambda: year_2036, True))
        writer.start()
        try:
            wait_for(lambda: "over its size cap" in self.agent.read_log(), timeout=60, what="the size cap")
            time.sleep(5)   # retention at work under the attack
            self.timed_health()
        finally:
            stop.set()
            writer.join()
        ticks = self.agent.get("/api/v1/health")[1]["collector"]["ticks"] - ticks0
        conn = db()
        newest = conn.execute("SELECT max(last_t) FROM sample_chunks").fetchone()[0]
        self.assertLess(newest / 1e3, time.time() + 5, "a sample dated in the future was stored")
        oldest, count = conn.execute("SELECT min(t), sum(n) FROM sample_chunks WHERE process_id = ?", (real_id,)).fetchone()
        self.assertGreater(count, 0, "the real process's history was erased")
        self.assertEqual(oldest, first_t, "the real process lost its oldest samples to another user's rows")
        for f in forged:
            stored = conn.execute("SELECT ifnull(sum(n), 0) FROM sample_chunks s JOIN processes p ON p.id = s.process_id"
                                  " WHERE p.pid = ?", (f.pid,)).fetchone()[0]
            self.assertLessEqual(stored, 32 * (ticks + 2), "more than a ring per tick from pid %d" % f.pid)
        conn.close()
        self.assertGreater(self.metric("allocd_snapshot_times_replaced_total"), 0)

    # ---- 3. junk files must not slow collection ------------------------------------------

    def test_fifty_thousand_junk_files(self):
        # 50,000 files named like segments: before, each tick re-read them
        # all and looked each up in a list (O(N^2) per tick).  Now they are
        # judged at most a tick's budget at a time, remembered in O(1), and
        # those whose pid is no process are removed; collection keeps its
        # interval meanwhile.  Junk under a live process of the same user
        # (not provably a squatter) stays, refused once.  And 300,000 more
        # files named like nothing allocd reads, which no one may remove:
        # listing them all takes longer than a tick's budget, so the
        # directory is listed a budget's worth at a time, after the known
        # processes have been read.
        self.start()
        real = self.target("hold", "100", "64", "120000")
        self.process(real.pid)
        pid_max = read_pid_max()
        for i in range(50000):
            with open(os.path.join(self.agent.shm, "liballoc.%d" % (pid_max + 1 + i)), "wb") as f:
                f.write(b"junk")
        for i in range(300000):
            os.close(os.open(os.path.join(self.agent.shm, "junk.%d" % i), os.O_CREAT | os.O_WRONLY, 0o600))
        mine = os.path.join(self.agent.shm, "liballoc.%d" % os.getpid())
        with open(mine, "wb") as f:
            f.write(b"junk of a live process of the same user")
        ticks = self.agent.get("/api/v1/health")[1]["collector"]["ticks"]
        number = self.process(real.pid)["snapshot_number"]
        for _ in range(10):
            self.timed_health()
            time.sleep(0.3)
        self.assertGreater(self.agent.get("/api/v1/health")[1]["collector"]["ticks"], ticks + 20,
                           "collection fell behind its 100 ms interval")
        # The real process is still read at every tick: 3 s of its 50 ms snapshots.
        self.assertGreater(self.process(real.pid)["snapshot_number"], number + 40)
        wait_for(lambda: self.metric('allocd_squatters_removed_total{kind="segment"}') >= 50000, timeout=120,
                 what="the junk removed")
        self.assertTrue(os.path.exists(mine))
        self.assertEqual(self.metric('allocd_segments_rejected_total{reason="size"}'), 1)
        self.assertEqual(self.agent.read_log().count("rejected"), 1)
        self.assertLess(self.agent.read_log().count("removed"), 100, "junk floods the log")

    # ---- 4. names that are not UTF-8 -------------------------------------------------------

    def test_non_utf8_executable_and_comm(self):
        # A binary named evil\xff\xfe"} (its thread name is the same bytes)
        # and one renamed with prctl: both listed, pushed to (with a reply),
        # audited, and /metrics still passes promtool.
        self.start()
        bindir = os.path.join(self.root, "bin")
        os.makedirs(bindir)
        evil = os.path.join(os.fsencode(bindir), b'evil\xff\xfe"}')
        shutil.copy(test_agent.TARGET, evil)
        env = dict(os.environb)
        env[b"ALLOC_CONF"] = ("telemetry_dir:%s,stats_interval_ms:50" % self.agent.shm).encode()
        if os.environ.get("ALLOC_TEST_PRELOAD"):
            env[b"LD_PRELOAD"] = os.environb[b"ALLOC_TEST_PRELOAD"]
        procs = []
        nasty = b"\x1b[31m\xc0\xaf\n\\x"   # an escape sequence, an overlong '/', a newline, a backslash
        for argv0, extra in ((evil, {}), (os.fsencode(test_agent.TARGET), {b"TM_TARGET_COMM": nasty})):
            p = subprocess.Popen([argv0, b"hold", b"100", b"64", b"60000"], stdout=subprocess.PIPE,
                                 env={**env, **extra})
            self.children.append(p)
            line = p.stdout.readline().decode()
            p.stdout.close()
            self.assertTrue(line.startswith("ready "), line)
            procs.append(int(line.split()[1]))
        shown = self.process(procs[0])
        self.assertTrue(shown["exe"].endswith('/evil\\xff\\xfe"}'), shown["exe"])
        self.assertTrue(shown["exe_verified"])
        self.assertEqual(self.process(procs[1])["comm"], r"\x1b[31m\xc0\xaf\x0a\\x")
        listed = {p["pid"]: p for p in self.agent.get("/api/v1/processes")[1]["processes"]}
        for pid in procs:
            self.assertIn(pid, listed)
        self.assertEqual(len(self.agent.get("/api/v1/processes?alive=1")[1]["processes"]),
                         self.agent.get("/api/v1/health")[1]["collector"]["processes"])
        status, body = self.agent.post("/api/v1/processes/%d/config" % procs[0], {"dirty_decay_ms": 4000})
        self.assertEqual(status, 200, body)
        self.assertEqual(body["exe"], shown["exe"])
        audit = [a for a in self.agent.get("/api/v1/audit")[1]["audit"] if a["pid"] == procs[0]]
        self.assertEqual([(a["knob"], a["result"]) for a in audit], [("dirty_decay_ms", "ok")])
        text = self.promtool()
        self.assertIn('/evil\\\\xff\\\\xfe\\"}",comm="evil\\\\xff\\\\xfe\\"}"', text)

    def test_rows_an_older_allocd_stored_unclean(self):
        # An older allocd stored names as segments gave them: a process row
        # and an audit row whose exe is not UTF-8 vanished from the API.
        # They are cleaned on the way out now.
        self.start()
        self.assertEqual(self.agent.stop(), 0)
        t0 = int(time.time() * 1000) - 60000
        db = sqlite3.connect(self.agent.db)
        db.execute("INSERT INTO processes (pid, start_time, pidns, uid, exe, comm, version, first_seen, last_seen,"
                   " alive, exited_at) VALUES (4243, 1, 1, 0, CAST(? AS TEXT), CAST(? AS TEXT), '0.1.0', ?, ?, 0, ?)",
                   (b"/opt/evil\xff\xfe", b"evil\xff\xfe", t0, t0, t0))
        db.execute("INSERT INTO audit (t, client, pid, exe, knob, new_value, result) VALUES"
                   " (?, '127.0.0.1', 4243, CAST(? AS TEXT), 'thp', 'never', 'ok')", (t0, b"/opt/evil\xff\xfe"))
        db.commit()
        db.close()
        self.agent = Agent(self.root, port=self.agent.port).start()
        listed = [p for p in self.agent.get("/api/v1/processes")[1]["processes"] if p["pid"] == 4243]
        self.assertEqual([(p["exe"], p["comm"]) for p in listed], [("/opt/evil\\xff\\xfe", "evil\\xff\\xfe")])
        self.assertEqual(self.agent.get("/api/v1/processes/4243")[0], 200)
        audit = [a for a in self.agent.get("/api/v1/audit?since=0")[1]["audit"] if a["pid"] == 4243]
        self.assertEqual([a["exe"] for a in audit], ["/opt/evil\\xff\\xfe"])

    # ---- 5. identity from the kernel -----------------------------------------------------------

    @unittest.skipUnless(os.geteuid() == 0, "needs root to run a process as another user")
    def test_non_dumpable_process_of_another_user(self):
        # A non-dumpable process's /proc/PID/stat belongs to root: allocd
        # took that as the process's owner and refused the segment its
        # real user wrote (owner_mismatch).  The uid now comes from
        # /proc/PID/status.
        self.start()
        env = dict(os.environ, ALLOC_CONF="telemetry_dir:%s,stats_interval_ms:50" % self.agent.shm,
                   TM_TARGET_NODUMP="1")
        if os.environ.get("ALLOC_TEST_PRELOAD"):
            env["LD_PRELOAD"] = os.environ["ALLOC_TEST_PRELOAD"]
        p = subprocess.Popen(["setpriv", "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups",
                              test_agent.TARGET, "hold", "100", "64", "60000"], stdout=subprocess.PIPE, env=env)
        self.children.append(p)
        line = p.stdout.readline().decode()
        self.assertTrue(line.startswith("ready "), line)
        pid = int(line.split()[1])
        self.assertEqual(os.stat("/proc/%d/stat" % pid).st_uid, 0)   # what misled allocd
        shown = self.process(pid)
        self.assertEqual(shown["uid"], NOBODY)
        self.assertEqual(self.metric('allocd_segments_rejected_total{reason="owner_mismatch"}'), 0)

    def test_rules_match_the_kernels_executable(self):
        # A segment may claim any executable: rules match what
        # /proc/PID/exe says, and the API shows that too.
        self.start()
        status, body = self.agent.post("/api/v1/rules", {"exe_glob": "postgres*", "config": {"thp": "never"}})
        self.assertEqual(status, 201, body)
        liar_rule = body["id"]
        status, body = self.agent.post("/api/v1/rules", {"exe_glob": "sleep", "config": {"thp": "always"}})
        self.assertEqual(status, 201, body)
        true_rule = body["id"]
        real = self.target("hold", "100", "64", "60000")
        self.process(real.pid)
        liar = self.idle()
        forged = Forged(os.path.join(self.agent.shm, "liballoc.%d" % liar.pid), self.template(real.pid), liar.pid,
                        exe=b"/usr/sbin/postgres")
        forged.publish(3, time.time_ns())
        shown = self.process(liar.pid)
        self.assertEqual(shown["exe"], os.readlink("/proc/%d/exe" % liar.pid))
        self.assertTrue(shown["exe_verified"])
        # Rules apply in id order: once the second has been tried (it times
        # out: nothing serves the forged control area), the first was passed.
        audit = lambda: [a["rule_id"] for a in self.agent.get("/api/v1/audit")[1]["audit"] if a["pid"] == liar.pid]
        wait_for(lambda: true_rule in audit(), what="the rule on the real executable tried")
        self.assertNotIn(liar_rule, audit())

    # ---- 6. squatters and stale temporaries ----------------------------------------------------

    @unittest.skipUnless(os.geteuid() == 0, "needs root to plant files as another user")
    def test_squatters_and_stale_temporaries_removed(self):
        # Another user pre-creates a process's temporary name, or plants a
        # segment under its name: allocd removes what is provably not the
        # process's (owner none of its uids, or no such process) and counts
        # it; the process then publishes again.  What it cannot prove (a
        # temporary of a live process of the same user) stays.
        self.start()
        t = self.target("hold", "100", "64", "60000")
        self.process(t.pid)
        shm = self.agent.shm
        victim = self.idle()   # root's
        planted = {
            ".liballoc.%d.tmp" % victim.pid: NOBODY,        # another user's, for a live process
            ".liballoc.%d.tmp" % (read_pid_max() + 7): 0,   # no such process
            ".liballoc.%d.0123456789abcdef.tmp" % (read_pid_max() + 9): 0,   # the writer's random name, left
        }
        kept = ".liballoc.%d.tmp" % victim.pid + ".no"    # not a temporary's name: not ours to judge
        for name, uid in list(planted.items()) + [(kept, NOBODY)]:
            test_agent.place_segment(os.path.join(shm, name), b"x", owner=uid)
        owned = [".liballoc.%d.tmp" % os.getpid(), ".liballoc.%d.fedcba9876543210.tmp" % os.getpid()]
        for own in owned:   # the owner's own: may be being written
            with open(os.path.join(shm, own), "wb") as f:
                f.write(b"x")
        # a segment planted under the live process's name by another user
        path = os.path.join(shm, "liballoc.%d" % t.pid)
        stop_process(t.pid)   # its writer must not re-create the file meanwhile
        # read now: once its file is another user's, the process is unseen
        # (allocd counts it exited) until it publishes again
        when = self.process(t.pid)["snapshot_time"]
        data = self.template(t.pid)
        os.unlink(path)
        # whole, by a rename: written in place, allocd could see it empty and
        # root's (the process's own file, truncated), judge it so and, the
        # inode being the same, not look at it again before the test ends
        test_agent.place_segment(path, data, owner=NOBODY)
        wait_for(lambda: self.metric('allocd_squatters_removed_total{kind="temporary"}') == 3, what="temporaries removed")
        wait_for(lambda: self.metric('allocd_squatters_removed_total{kind="segment"}') == 1, what="the squatter removed")
        for name in planted:
            self.assertFalse(os.path.exists(os.path.join(shm, name)), name)
        for own in owned:
            self.assertTrue(os.path.exists(os.path.join(shm, own)), own)
        self.assertTrue(os.path.exists(os.path.join(shm, kept)))
        os.kill(t.pid, 18)   # SIGCONT: it re-creates its segment, and is collected again
        wait_for(lambda: self.process(t.pid)["snapshot_time"] > when, what="the process collected again")
        self.assertEqual(os.stat(path).st_uid, 0)
        self.assertIn("squatter segment", self.agent.read_log())


if __name__ == "__main__":
    test_agent.ALLOCD, test_agent.TARGET, test_agent.ALLOCCTL = sys.argv[1], sys.argv[2], sys.argv[3]
    unittest.main(argv=[sys.argv[0], "-v"] + sys.argv[4:])
