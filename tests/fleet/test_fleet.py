#!/usr/bin/env python3
"""tests/fleet/test_fleet.py - the deployment files against real tools.

deploy/prometheus (scrape config, targets, rules), dashboards/grafana
(dashboards, provisioning) and deploy/systemd (unit, drop-ins):

  PromtoolTest      `promtool check config` and `promtool check rules`;
  MetricNamesTest   every liballoc_* / allocd_* name the rules and the
                    dashboards use is in a live allocd's /metrics (or is a
                    recording rule's output), and the dashboards' structure
                    (fixed uids, unique panel ids, links to existing uids);
  PrometheusTest    a real Prometheus, configured from the deploy example
                    (scrape and evaluation interval cut to 1 s, file_sd
                    targets file pointing at the test's allocd), scrapes a
                    real allocd collecting from a real process using
                    liballoc, loads the deploy rules (all evaluate with
                    health "ok") and answers every dashboard query, also
                    with a process whose executable is named with bytes
                    that are not UTF-8;
  SystemdTest       `systemd-analyze verify` of the unit and its drop-ins
                    (skipped without systemd-analyze);
  CapabilitiesTest  allocd under setpriv with exactly the capabilities the
                    unit and the non-root drop-in grant (root only).

usage: test_fleet.py ALLOCD TM_TARGET [unittest args]; the environment
variable ALLOC_TEST_PRELOAD is preloaded into the target.  allocd and the
target come from tests/agent/test_agent.py's helpers.
"""
import calendar
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(SRC, "tests", "agent"))
import test_agent as agent_test  # noqa: E402  (Agent, Target, free_port, wait_for)

PROM_DIR = os.path.join(SRC, "deploy", "prometheus")
PROM_CONFIG = os.path.join(PROM_DIR, "prometheus.yml")
RULES = os.path.join(PROM_DIR, "liballoc.rules.yml")
GRAFANA_DIR = os.path.join(SRC, "dashboards", "grafana")
DASHBOARD_UIDS = {"fleet-overview.json": "liballoc-fleet", "host-process.json": "liballoc-process"}
SYSTEMD_DIR = os.path.join(SRC, "deploy", "systemd")
PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "promtool"

# ---- reading the files (standard library only: no YAML parser) ------------------------


def read(path):
    with open(path) as f:
        return f.read()


def rule_exprs():
    """(name, expr) of every rule in the rules file: `expr:` on one line or
    as a block scalar (`expr: |` and the more indented lines below it)."""
    lines = read(RULES).splitlines()
    out, name = [], None
    i = 0
    while i < len(lines):
        m = re.match(r"^\s*- (?:record|alert): (\S+)", lines[i])
        if m:
            name = m.group(1)
        m = re.match(r"^(\s*)expr:\s*(.*)$", lines[i])
        if m:
            indent, value = len(m.group(1)), m.group(2)
            if value in ("|", ">", "|-", ">-"):
                body = []
                while i + 1 < len(lines) and (not lines[i + 1].strip() or
                                              len(lines[i + 1]) - len(lines[i + 1].lstrip()) > indent):
                    i += 1
                    body.append(lines[i].strip())
                value = " ".join(body)
            out.append((name, value))
        i += 1
    return out


def recording_outputs():
    return set(re.findall(r"^\s*- record: (\S+)", read(RULES), re.M))


def dashboards():
    return {os.path.basename(p): json.loads(read(p)) for p in sorted(glob.glob(os.path.join(GRAFANA_DIR, "*.json")))}


def panels(dash):
    for p in dash.get("panels", []):
        yield p
        yield from p.get("panels", [])   # panels inside a collapsed row


def dashboard_exprs(dash):
    """(where, expr) of every PromQL expression: panel targets and
    annotations.  Variable queries (Grafana's label_values) are given as
    their series selector."""
    for p in panels(dash):
        for t in p.get("targets", []):
            yield "panel %r %s" % (p["title"], t["refId"]), t["expr"]
    for a in dash["annotations"]["list"]:
        if "expr" in a:
            yield "annotation %r" % a["name"], a["expr"]
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.match(r"^label_values\((.*),\s*(\w+)\)$", q)
            assert m, "variable %s: unexpected query %s" % (v["name"], q)
            yield "variable %s" % v["name"], m.group(1)


def metric_names(expr):
    """Names in a PromQL expression that must exist: identifiers starting
    with liballoc_ or allocd_, and recording-rule style names (with a colon).
    String literals (label values) and Grafana variables are left out;
    function names, label names, `by`, `and`... never start that way."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    expr = re.sub(r"\$\{?\w+(?::\w+)?\}?", "", expr)
    names = set()
    for tok in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if tok.startswith(("liballoc_", "allocd_")) or ":" in tok:
            names.add(tok)
    return names


def grafana_to_promql(expr):
    """A dashboard expression as Prometheus takes it: every selection
    variable matches everything, interval variables become 1m."""
    expr = re.sub(r"\$\{?__(?:rate_)?interval\}?", "1m", expr)
    return re.sub(r"\$\{?(instance|exe|pid)\}?", ".*", expr)


def rfc3339(text):
    """Seconds since the epoch of Prometheus's "2026-01-02T03:04:05.123456789Z"."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$", text)
    assert m, text
    secs = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S"))
    return secs + float("0." + (m.group(2) or "0"))


def exported_names(metrics_text):
    """Metric names with at least one sample in an exposition."""
    return {re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group(0)
            for line in metrics_text.splitlines() if line and not line.startswith("#")}


def unknown_names(exprs, exported, recorded):
    """[(where, name)] of names used but neither exported nor recorded."""
    return sorted({(where, n) for where, e in exprs for n in metric_names(e) if n not in exported | recorded})


# ---- processes ---------------------------------------------------------------------------


class Fleet:
    """allocd (tests/agent's Agent) and one preloaded target holding memory,
    stopped by stop() whatever state start() reached."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="allocd-fleet.")
        self.agent = self.target = None

    def start(self):
        self.agent = agent_test.Agent(os.path.join(self.root, "agent")).start()
        self.target = agent_test.Target(self.agent, "hold", "5000", "112", "600000")
        agent_test.wait_for(lambda: 'pid="%d"' % self.target.pid in self.metrics(), what="the target in /metrics")
        return self

    def metrics(self):
        status, text, _ = self.agent.request("GET", "/metrics")
        assert status == 200, status
        return text

    def stop(self):
        if self.target and self.target.proc.poll() is None:
            self.target.proc.kill()
            self.target.proc.wait(timeout=20)
        rc = self.agent.stop() if self.agent and self.agent.proc else 0
        log = self.agent.read_log() if self.agent else ""
        shutil.rmtree(self.root, ignore_errors=True)
        assert rc == 0, "allocd exited with %s: %s" % (rc, log)


class Prometheus:
    """A real Prometheus with the deploy example's configuration, adapted
    for a test: 1 s intervals, the rules file by absolute path, a file_sd
    targets file naming the test's allocd."""

    def __init__(self, root, allocd_port):
        self.root = os.path.join(root, "prometheus")
        os.makedirs(os.path.join(self.root, "targets"))
        self.port = agent_test.free_port()
        config = read(PROM_CONFIG)
        for old, new in (("scrape_interval: 15s", "scrape_interval: 1s"),
                         ("evaluation_interval: 15s", "evaluation_interval: 1s"),
                         ("- liballoc.rules.yml", "- " + RULES),
                         ("- targets/*.yml", "- %s/targets/*.yml" % self.root),
                         ("refresh_interval: 1m", "refresh_interval: 1s")):
            assert config.count(old) == 1, "deploy/prometheus/prometheus.yml no longer has %r" % old
            config = config.replace(old, new)
        self.config = os.path.join(self.root, "prometheus.yml")
        with open(self.config, "w") as f:
            f.write(config)
        with open(os.path.join(self.root, "targets", "allocd.yml"), "w") as f:
            f.write("- targets: ['127.0.0.1:%d']\n  labels:\n    role: test\n" % allocd_port)
        self.log_path = os.path.join(self.root, "prometheus.log")
        self.proc = None

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [PROMETHEUS, "--config.file=" + self.config, "--storage.tsdb.path=" + os.path.join(self.root, "data"),
             "--web.listen-address=127.0.0.1:%d" % self.port], stdout=self.log, stderr=self.log)
        agent_test.wait_for(self.ready, timeout=60, what="Prometheus to be ready")
        return self

    def ready(self):
        if self.proc.poll() is not None:
            raise AssertionError("prometheus exited: " + self.read_log())
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/-/ready" % self.port, timeout=5) as r:
                return r.status == 200
        except OSError:
            return False

    def api(self, path, **params):
        url = "http://127.0.0.1:%d/api/v1/%s?%s" % (self.port, path, urllib.parse.urlencode(params))
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:   # 400/422: a bad query, with its error in the body
            return json.loads(e.read())

    def query(self, expr):
        return self.api("query", query=expr)

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()


# ---- the tests ------------------------------------------------------------------------------


class PromtoolTest(unittest.TestCase):
    def promtool(self, *args):
        r = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, cwd=PROM_DIR)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r.stdout + r.stderr

    def test_check_config(self):
        # also checks the rules file it names and that the targets glob matches a file
        out = self.promtool("check", "config", PROM_CONFIG)
        self.assertNotIn("WARNING", out)

    def test_check_rules(self):
        out = self.promtool("check", "rules", RULES)
        self.assertIn("SUCCESS: %d rules found" % len(rule_exprs()), out)

    def test_targets_file_is_file_sd(self):
        # every host entry is host:port, the shape file_sd wants
        text = read(os.path.join(PROM_DIR, "targets", "allocd.yml"))
        hosts = re.findall(r"^\s+- (\S+)$", text, re.M)
        self.assertTrue(hosts)
        for h in hosts:
            self.assertRegex(h, r"^[A-Za-z0-9.-]+:\d+$")


@unittest.skipUnless(shutil.which("systemd-analyze"), "systemd-analyze (Debian's systemd) is not installed")
class SystemdTest(unittest.TestCase):
    """deploy/systemd through `systemd-analyze verify` (unknown keys, bad
    values, a missing binary) with ExecStart pointing at the built allocd;
    drop-ins are read from the unit path, set to a copy of the files."""

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="allocd-systemd.")
        self.addCleanup(shutil.rmtree, self.root, True)

    def verify(self, unit):
        env = dict(os.environ, SYSTEMD_UNIT_PATH=self.root + ":")
        r = subprocess.run(["systemd-analyze", "verify", os.path.join(self.root, unit)], capture_output=True,
                           text=True, env=env)
        self.assertEqual((r.returncode, r.stdout + r.stderr), (0, ""))

    def install(self, name, text, dropin_dir=None):
        d = os.path.join(self.root, dropin_dir) if dropin_dir else self.root
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, name), "w") as f:
            f.write(text)

    def test_allocd_service(self):
        unit = read(os.path.join(SYSTEMD_DIR, "allocd.service"))
        self.assertEqual(unit.count("ExecStart=/usr/local/sbin/allocd "), 1)
        self.install("allocd.service", unit.replace("/usr/local/sbin/allocd", os.path.abspath(agent_test.ALLOCD)))
        self.verify("allocd.service")
        # the sandbox keeps what allocd needs (see the unit's comments)
        directives = [line for line in unit.splitlines() if line and not line.startswith("#")]
        for line in ("CapabilityBoundingSet=CAP_DAC_OVERRIDE CAP_FOWNER", "ReadWritePaths=/dev/shm",
                     "StateDirectory=allocd", "ProtectSystem=strict", "NoNewPrivileges=yes"):
            self.assertIn(line, directives)
        for bad in ("DynamicUser=", "ProtectProc=", "PrivateNetwork=yes"):
            self.assertFalse([d for d in directives if d.startswith(bad)], bad)
        r = subprocess.run(["systemd-analyze", "security", "--offline=yes", os.path.join(self.root, "allocd.service")],
                           capture_output=True, text=True)
        m = re.search(r"Overall exposure level for allocd.service: ([0-9.]+)", r.stdout)
        self.assertTrue(m, r.stdout + r.stderr)
        self.assertLessEqual(float(m.group(1)), 3.0, r.stdout)

    def test_allocd_nonroot_dropin(self):
        self.install("allocd.service", read(os.path.join(SYSTEMD_DIR, "allocd.service"))
                     .replace("/usr/local/sbin/allocd", os.path.abspath(agent_test.ALLOCD)))
        self.install("nonroot.conf", read(os.path.join(SYSTEMD_DIR, "allocd-nonroot.conf")), "allocd.service.d")
        self.verify("allocd.service")

    def test_preload_dropin(self):
        self.install("myservice.service", "[Service]\nExecStart=/bin/true\n")
        dropin = read(os.path.join(SYSTEMD_DIR, "liballoc-preload.conf"))
        self.assertIn("Environment=LD_PRELOAD=/usr/local/lib/liballoc.so.0\n", dropin)
        self.install("liballoc.conf", dropin, "myservice.service.d")
        self.verify("myservice.service")


def directive(text, key):
    """The value of the last `key=` line of a unit file or drop-in."""
    values = re.findall(r"^%s=(.*)$" % re.escape(key), text, re.M)
    assert values, key
    return values[-1]


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("setpriv"), "needs root and setpriv")
class CapabilitiesTest(unittest.TestCase):
    """The capabilities the unit files grant are the ones allocd needs: with
    only them it collects from another user's process (segment mode 0600),
    pushes a configuration change into it, and removes its segment from a
    root-owned sticky directory (like /dev/shm) once it is killed; with no
    capability it cannot open the segment at all.  allocd runs under
    setpriv with the unit's capability set; the target runs as nobody."""

    def setUp(self):
        self.root = tempfile.mkdtemp(prefix="allocd-caps.")
        os.chmod(self.root, 0o755)
        self.addCleanup(shutil.rmtree, self.root, True)
        self.procs = []
        self.addCleanup(self.kill_all)

    def kill_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    def run_agent(self, wrapper, user=None):
        agent = agent_test.Agent(os.path.join(self.root, "agent"))
        os.chmod(agent.root, 0o755)
        os.chmod(agent.shm, 0o1777)   # root-owned and sticky, like /dev/shm
        if user:
            state = os.path.join(agent.root, "state")
            os.mkdir(state, 0o700)
            shutil.chown(state, user, user)
            agent.args[agent.args.index(agent.db)] = agent.db = os.path.join(state, "allocd.db")
            agent.args[agent.args.index(agent.token_file)] = agent.token_file = os.path.join(state, "token")
        agent.args[:0] = wrapper
        agent.start()
        self.addCleanup(lambda: agent.proc.poll() is None and agent.stop())
        # env after setpriv: only the target is preloaded (setpriv itself
        # is covered by tests/programs' program_sandbox)
        env = ["ALLOC_CONF=telemetry_dir:%s,stats_interval_ms:50" % agent.shm]
        if os.environ.get("ALLOC_TEST_PRELOAD"):
            env.append("LD_PRELOAD=" + os.environ["ALLOC_TEST_PRELOAD"])
        target = subprocess.Popen(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "env", *env,
                                   os.path.abspath(agent_test.TARGET), "hold", "100", "64", "60000"],
                                  stdout=subprocess.PIPE)
        self.procs.append(target)
        line = target.stdout.readline().decode()
        target.stdout.close()
        self.assertTrue(line.startswith("ready "), line)
        return agent, target, int(line.split()[1])

    def check_allowed(self, agent, target, pid):
        seg = os.path.join(agent.shm, "liballoc.%d" % pid)
        agent_test.wait_for(lambda: os.path.exists(seg), what="the segment")   # after one stats interval
        self.assertEqual(os.stat(seg).st_mode & 0o777, 0o600)
        agent_test.wait_for(lambda: agent.get("/api/v1/processes/%d" % pid)[0] == 200, what="the process collected")
        status, body = agent.post("/api/v1/processes/%d/config" % pid, {"dirty_decay_ms": 3000})
        self.assertEqual(status, 200, body)
        target.kill()
        target.wait()
        agent_test.wait_for(lambda: not os.path.exists(seg), what="the stale segment removed")
        self.assertEqual(agent.stop(), 0, agent.read_log())

    def caps(self, text, key):
        return ",".join("+" + c.lower().replace("cap_", "") for c in directive(text, key).split())

    def test_service_capabilities_suffice(self):
        unit = read(os.path.join(SYSTEMD_DIR, "allocd.service"))
        self.assertEqual(directive(unit, "User"), "root")
        bounding = self.caps(unit, "CapabilityBoundingSet")
        self.check_allowed(*self.run_agent(["setpriv", "--bounding-set=-all," + bounding, "--inh-caps=-all"]))

    def test_nonroot_dropin_capabilities_suffice(self):
        dropin = read(os.path.join(SYSTEMD_DIR, "allocd-nonroot.conf"))
        ambient = self.caps(dropin, "AmbientCapabilities")
        user = "daemon"   # a system user every Debian has, standing for the drop-in's "allocd"
        self.check_allowed(*self.run_agent(["setpriv", "--reuid=" + user, "--regid=" + user, "--clear-groups",
                                            "--inh-caps=" + ambient, "--ambient-caps=" + ambient], user=user))

    def test_without_capabilities_nothing_is_collected(self):
        agent, target, pid = self.run_agent(["setpriv", "--bounding-set=-all", "--inh-caps=-all"])
        agent_test.wait_for(lambda: 'allocd_segments_rejected_total{reason="open"} 1' in agent.request("GET", "/metrics")[1],
                            what="the segment rejected")
        self.assertEqual(agent.get("/api/v1/processes/%d" % pid)[0], 404)


class MetricNamesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        fleet = Fleet()
        cls.addClassCleanup(fleet.stop)
        cls.exported = exported_names(fleet.start().metrics())

    def test_exposition_has_the_families(self):
        # the check below is only as good as this list
        for n in ("liballoc_allocated_bytes", "liballoc_fragmentation_ratio", "liballoc_host_active_bytes",
                  "liballoc_config_dirty_decay_seconds", "allocd_up", "allocd_segments_rejected_total",
                  "liballoc_host_class_live_blocks", "liballoc_host_class_capacity_blocks",
                  "liballoc_host_class_slab_bytes", "liballoc_host_class_free_bytes"):
            self.assertIn(n, self.exported)

    def test_rules_use_exported_names(self):
        exprs = [("rule " + name, e) for name, e in rule_exprs()]
        self.assertGreater(len(exprs), 5)
        self.assertEqual(unknown_names(exprs, self.exported, recording_outputs()), [])

    def test_dashboards_use_exported_names(self):
        exprs = [(f + " " + w, e) for f, d in dashboards().items() for w, e in dashboard_exprs(d)]
        self.assertGreater(len(exprs), 20)
        self.assertEqual(unknown_names(exprs, self.exported, recording_outputs()), [])

    def test_the_check_catches_an_unknown_name(self):
        exprs = [("x", 'rate(liballoc_no_such_total{exe=~"$exe", knob="liballoc_in_a_string"}[5m])'
                       " / process:no_such:ratio and on (pid) allocd_up")]
        self.assertEqual(unknown_names(exprs, self.exported, recording_outputs()),
                         [("x", "liballoc_no_such_total"), ("x", "process:no_such:ratio")])

    def test_dashboards_structure(self):
        boards = dashboards()
        self.assertEqual(set(boards), set(DASHBOARD_UIDS))
        uids = set()
        for name, d in boards.items():
            self.assertEqual(d["uid"], DASHBOARD_UIDS[name], "uids are stable: links and bookmarks use them")
            uids.add(d["uid"])
            ids = [p["id"] for p in panels(d)]
            self.assertEqual(len(ids), len(set(ids)), name + ": panel ids repeat")
            variables = {v["name"]: v for v in d["templating"]["list"]}
            self.assertEqual(variables["datasource"]["type"], "datasource")
            for p in panels(d):
                g = p["gridPos"]
                self.assertLessEqual(g["x"] + g["w"], 24, p["title"])
                if p["type"] == "row":
                    continue
                self.assertEqual(p["datasource"]["uid"], "${datasource}", p["title"])
                self.assertTrue(p["targets"], p["title"])
                for t in p["targets"]:
                    self.assertEqual(t["datasource"]["uid"], "${datasource}", p["title"])
                for used in re.findall(r"\$\{?(\w+)", json.dumps(p["targets"])):
                    self.assertTrue(used.startswith("__") or used in variables, "%s: $%s" % (p["title"], used))
            self.assertTrue(any("changes(liballoc_config_" in a.get("expr", "") for a in d["annotations"]["list"]),
                            name + ": no config-change annotation")
        for name, d in boards.items():   # links between dashboards go to uids that exist
            for link in re.findall(r'"url": "/d/([\w-]+)/', json.dumps(d)):
                self.assertIn(link, uids, name)
        self.assertEqual({"instance", "exe", "pid"} - set(v["name"] for v in boards["host-process.json"]["templating"]["list"]), set())

    def test_provisioning_points_at_prometheus(self):
        ds = read(os.path.join(GRAFANA_DIR, "provisioning", "datasources", "prometheus.yml"))
        self.assertIn("type: prometheus", ds)
        prov = read(os.path.join(GRAFANA_DIR, "provisioning", "dashboards", "liballoc.yml"))
        self.assertIn("type: file", prov)


class PrometheusTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.fleet = Fleet()
        cls.addClassCleanup(cls.fleet.stop)
        cls.fleet.start()
        cls.prom = Prometheus(cls.fleet.root, cls.fleet.agent.port)
        cls.addClassCleanup(cls.prom.stop)
        cls.prom.start()
        cls.pid = cls.fleet.target.pid

    def wait_query(self, expr, timeout=60.0):
        def look():
            r = self.prom.query(expr)
            self.assertEqual(r["status"], "success", "%s: %s" % (expr, r))
            return r["data"]["result"]
        try:
            return agent_test.wait_for(look, timeout=timeout, what=expr)
        except AssertionError:
            print(self.prom.read_log()[-4000:], file=sys.stderr)
            raise

    def test_scrapes_the_process(self):
        res = self.wait_query('liballoc_allocated_bytes{job="allocd", pid="%d"}' % self.pid)
        labels = res[0]["metric"]
        self.assertEqual(labels["instance"], "127.0.0.1:%d" % self.fleet.agent.port)
        self.assertEqual(labels["role"], "test")   # from the file_sd targets file
        self.assertTrue(labels["exe"].endswith("tm_target"), labels)
        self.assertGreaterEqual(float(res[0]["value"][1]), 5000 * 112)
        self.wait_query('up{job="allocd"} == 1')

    def test_rules_load_and_evaluate(self):
        # Rules evaluated before the first scrape see no data and are "ok"
        # whatever they say: judge only evaluations made after the data is
        # in (the recording rules' outputs exist) and a full interval later.
        self.wait_query('process:liballoc_free_in_active:bytes{pid="%d"} > 0' % self.pid)
        self.wait_query('process:liballoc_resident_overhead:bytes{pid="%d"}' % self.pid)
        self.wait_query('instance:liballoc_fragmentation:ratio >= 0 <= 1')
        self.wait_query('exe:liballoc_allocated_bytes:sum > 0')
        since = time.time() + 1.0
        expected = {name for name, _ in rule_exprs()}

        def evaluated():
            r = self.prom.api("rules")
            self.assertEqual(r["status"], "success", r)
            rules = [rule for g in r["data"]["groups"] for rule in g["rules"]]
            self.assertEqual({rule["name"] for rule in rules}, expected)
            if not all(rfc3339(rule["lastEvaluation"]) > since for rule in rules):
                return False
            for rule in rules:
                self.assertEqual(rule["health"], "ok", "%s: %s" % (rule["name"], rule.get("lastError")))
            return True
        agent_test.wait_for(evaluated, timeout=30, what="every rule evaluated again")
        # nothing is wrong on this host: no alert fires
        for alert in self.prom.api("alerts")["data"]["alerts"]:
            self.assertNotEqual(alert["state"], "firing", alert)

    def test_dashboard_queries_run(self):
        self.wait_query('rate(liballoc_purged_bytes_total{pid="%d"}[1m]) >= 0' % self.pid)   # two samples at least
        empty = []
        for f, d in dashboards().items():
            for where, expr in dashboard_exprs(d):
                q = grafana_to_promql(expr)
                r = self.prom.query(q)
                self.assertEqual(r["status"], "success", "%s %s: %s\n%s" % (f, where, q, r))
                if not r["data"]["result"]:
                    empty.append((f, where))
        # Everything answers for a live host except what only shows trouble
        # (hosts down, rejected segments, write failures) or config changes.
        print("dashboard queries with no result:", empty, file=sys.stderr)
        for f, where in empty:
            self.assertRegex(where, r"Hosts down|rejected|failures|Config changes", "%s %s is empty" % (f, where))

    def test_non_utf8_names_scraped(self):
        # A binary named with bytes that are not UTF-8 (its thread name is
        # the same bytes): before, its label values made the whole scrape
        # invalid (up == 0, every process blinded).  Now allocd cleans them
        # and Prometheus takes the scrape, this process's series included.
        evil = os.path.join(os.fsencode(self.fleet.root), b'evil\xff\xfe"}')
        shutil.copy(agent_test.TARGET, evil)
        env = dict(os.environb)
        env[b"ALLOC_CONF"] = ("telemetry_dir:%s" % self.fleet.agent.shm).encode()
        if os.environ.get("ALLOC_TEST_PRELOAD"):
            env[b"LD_PRELOAD"] = os.environb[b"ALLOC_TEST_PRELOAD"]
        p = subprocess.Popen([evil, b"hold", b"1000", b"64", b"600000"], stdout=subprocess.PIPE, env=env)
        self.addCleanup(lambda: (p.kill(), p.wait()))
        line = p.stdout.readline().decode()
        p.stdout.close()
        self.assertTrue(line.startswith("ready "), line)
        pid = int(line.split()[1])
        res = self.wait_query('liballoc_allocated_bytes{job="allocd", pid="%d"}' % pid)
        self.assertTrue(res[0]["metric"]["exe"].endswith('/evil\\xff\\xfe"}'), res[0]["metric"])
        self.assertEqual(res[0]["metric"]["comm"], 'evil\\xff\\xfe"}')
        self.wait_query('liballoc_allocated_bytes{job="allocd", pid="%d"}' % self.pid)
        since = time.time()
        agent_test.wait_for(lambda: [r for r in self.prom.query('up{job="allocd"} == 1')["data"]["result"]]
                            and self.prom.query('timestamp(up{job="allocd"})')["data"]["result"]
                            and float(self.prom.query('timestamp(up{job="allocd"})')["data"]["result"][0]["value"][1]) > since + 1,
                            timeout=30, what="a successful scrape after the process appeared")

    def test_config_change_annotation(self):
        # a live change pushed through allocd shows as the drill-down's annotation
        ann = next(a for a in dashboards()["host-process.json"]["annotations"]["list"] if "expr" in a)
        expr = grafana_to_promql(ann["expr"])
        self.wait_query('liballoc_config_dirty_decay_seconds{pid="%d"} == 10' % self.pid)   # the default, scraped
        status, body = self.fleet.agent.post("/api/v1/processes/%d/config" % self.pid, {"dirty_decay_ms": 3000})
        self.assertEqual(status, 200, body)
        res = self.wait_query(expr)
        self.assertEqual([(r["metric"]["knob"], r["metric"]["pid"]) for r in res], [("dirty_decay_ms", str(self.pid))])


if __name__ == "__main__":
    agent_test.ALLOCD, agent_test.TARGET = sys.argv[1], sys.argv[2]
    unittest.main(argv=[sys.argv[0], "-v"] + sys.argv[3:])
