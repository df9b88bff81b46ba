#!/usr/bin/env node
// tests/dashboard/test_dashboard.js - allocd's web dashboard in a real browser.
//
// A real allocd (own database, token and telemetry directory, a free port on
// 127.0.0.1, --static-dir the built dashboard) collects from two real
// processes using liballoc (tm_target, preloaded); the system's Chromium,
// driven headless by playwright-core, loads the dashboard and checks the
// process table, the process view's charts, and a configuration change from
// the panel (acknowledgement and audit marker), the host's charts drawn from
// allocd's stored history (after a reload, and after allocd restarts), the
// wasted-bytes views and the size-class heatmap.  Screenshots go to ARTIFACTS.
//
// usage: node test_dashboard.js ALLOCD TM_TARGET LIBALLOC_SO WWW_DIR NODE_MODULES ARTIFACTS
// environment: CHROMIUM (default /usr/bin/chromium)
"use strict";
const { test } = require("node:test");
const assert = require("node:assert/strict");
const { spawn } = require("node:child_process");
const fs = require("node:fs");
const net = require("node:net");
const os = require("node:os");
const path = require("node:path");

const [ALLOCD, TARGET, PRELOAD, WWW, NODE_MODULES, ARTIFACTS] = process.argv.slice(2);
if (!ARTIFACTS) {
  console.error("usage: test_dashboard.js ALLOCD TM_TARGET LIBALLOC_SO WWW_DIR NODE_MODULES ARTIFACTS");
  process.exit(2);
}
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const { chromium } = require(path.join(NODE_MODULES, "playwright-core"));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// a readable time-axis label: clock time (to the second, or the minute), with the date over days
const TICK_LABEL = /^(\d\d:\d\d(:\d\d)?|[A-Z][a-z]{2} \d{1,2} \d\d:\d\d)$/;

async function waitFor(pred, what, timeoutMs = 20000) {
  const end = Date.now() + timeoutMs;
  let last;
  while (Date.now() < end) {
    try {
      const v = await pred();
      if (v) return v;
    } catch (e) { last = e; }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}${last ? ": " + last.message : ""}`);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

const children = [];
function start(cmd, args, opts) {
  const p = spawn(cmd, args, opts);
  children.push(p);
  return p;
}
function exited(p) { return p.exitCode !== null || p.signalCode !== null; }
function stop(p, sig = "SIGTERM", ms = 10000) {
  if (exited(p)) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => { p.kill("SIGKILL"); }, ms);
    p.once("exit", () => { clearTimeout(t); resolve(); });
    p.kill(sig);
  });
}

// A tm_target (or a copy under another name) holding N blocks, publishing
// into shm; resolves to its pid.  Mode "lend" makes lenders first.
function startTarget(shm, n, size, exe = TARGET, conf = "", mode = "hold") {
  const env = { ...process.env, LD_PRELOAD: PRELOAD,
                ALLOC_CONF: `telemetry_dir:${shm},stats_interval_ms:200,memory_limit:4G${conf}` };
  const p = start(exe, [mode, String(n), String(size), "240000"], { env, stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    let out = "";
    p.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/ready (\d+)/);
      if (m) resolve(Number(m[1]));
    });
    p.once("exit", (code) => reject(new Error(`tm_target exited (${code}) before ready: ${out}`)));
  });
}

test("dashboard in headless chromium", { timeout: 240000 }, async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const shot = (name) => path.join(ARTIFACTS, name);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "allocd-dashboard."));
  const shm = path.join(root, "shm");
  fs.mkdirSync(shm);
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const logPath = path.join(root, "allocd.log");
  const log = fs.openSync(logPath, "a");
  const startAllocd = () => start(ALLOCD, ["--listen", `127.0.0.1:${port}`, "--db", path.join(root, "allocd.db"),
    "--token-file", path.join(root, "token"), "--shm-dir", shm, "--interval-ms", "200",
    "--push-timeout-ms", "3000", "--static-dir", WWW], { stdio: ["ignore", log, log] });
  let allocd = startAllocd();
  const agents = [allocd];
  const getJSON = async (p) => {
    const r = await fetch(base + p);
    assert.equal(r.status, 200, `GET ${p}`);
    return r.json();
  };
  let browser;
  try {
    const answering = () => waitFor(async () => {
      if (exited(allocd)) throw new Error("allocd exited: " + fs.readFileSync(logPath, "utf8"));
      return (await fetch(base + "/api/v1/health")).ok;
    }, "allocd to answer");
    await answering();
    const token = fs.readFileSync(path.join(root, "token"), "utf8").trim();

    // two executables, so that the wasted bytes stack
    const other = path.join(root, "tm_other");
    fs.copyFileSync(TARGET, other);
    fs.chmodSync(other, 0o755);
    // the first one profiles its heap (a sample every 4 KiB: its 200 KB give ~50)
    const pids = [await startTarget(shm, 2000, 100, TARGET, ",prof:true,prof_sample_bytes:4096"),
                  await startTarget(shm, 300, 5000, other, "", "lend")];
    for (const pid of pids)
      await waitFor(async () => (await getJSON(`/api/v1/processes/${pid}`)).stats, `pid ${pid} in the API`);
    const before = (await getJSON(`/api/v1/processes/${pids[0]}`)).config;

    browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--headless", "--no-sandbox", "--disable-gpu"] });
    const page = await browser.newPage({ viewport: { width: 1400, height: 1100 } });
    const pageErrors = [];
    page.on("pageerror", (e) => pageErrors.push(e.message));
    page.on("console", (m) => { if (m.type() === "error" && !/Failed to load resource/.test(m.text())) pageErrors.push(m.text()); });
    page.on("response", (r) => { if (r.status() >= 400) pageErrors.push(`${r.status()} ${r.url()}`); });
    // every chart's time-axis labels are readable: clock times, no fractions of seconds
    // (and every chart on the page has some)
    const checkTicks = async (where) => {
      const { ticks, charts } = await page.evaluate(() => ({ ticks: window.dashboard.ticks,
                                                              charts: Object.keys(window.dashboard.charts) }));
      for (const name of charts) assert.ok(ticks[name] && ticks[name].length > 0, `${where}: chart ${name} has no time labels`);
      for (const [name, labels] of Object.entries(ticks))
        for (const l of labels) assert.match(l, TICK_LABEL, `${where}: chart ${name} labels a tick ${JSON.stringify(l)}`);
    };

    // ---- host view: the table lists both processes, sorts and filters
    await page.goto(base + "/");
    for (const pid of pids) await page.waitForSelector(`#proc-table tr[data-pid="${pid}"]`, { timeout: 20000 });
    const rowText = await page.textContent(`#proc-table tr[data-pid="${pids[0]}"]`);
    assert.match(rowText, /tm_target/);
    assert.match(rowText, /yes/);
    assert.match(rowText, /[KM]iB/);
    const rowPids = () => page.$$eval("#proc-table tbody tr", (rs) => rs.map((r) => Number(r.dataset.pid)));
    await page.click('#proc-table th[data-key="pid"]');
    const asc = await rowPids();
    assert.deepEqual(asc, [...asc].sort((a, b) => a - b), "ascending by pid");
    await page.click('#proc-table th[data-key="pid"]');
    const desc = await rowPids();
    assert.deepEqual(desc, [...desc].sort((a, b) => b - a), "descending by pid");
    // the host's memory pressure (PSI) where the kernel has it, as allocd's health says
    if ((await getJSON("/api/v1/health")).memory_pressure)
      await page.waitForFunction(() => /^memory pressure: some \d+\.\d %, full \d+\.\d % \(10 s\)$/
                                       .test(document.querySelector("#host-pressure").textContent), null, { timeout: 15000 });
    await page.fill("#filter", String(pids[1]));
    assert.deepEqual(await rowPids(), [pids[1]], "filtered to one pid");
    await page.fill("#filter", "");
    // a few polls: sparklines and the host charts get points, from allocd's history
    await page.waitForFunction(() => window.dashboard.charts.host && window.dashboard.charts.host.data[0].length >= 2,
                               null, { timeout: 20000 });
    await page.waitForSelector(`#proc-table tr[data-pid="${pids[0]}"] svg.spark`, { timeout: 20000 });
    const hostCharts = () => page.evaluate(() => Object.fromEntries(["host", "hostFragmentation", "hostProcesses", "wasted"]
      .map((k) => { const u = window.dashboard.charts[k];
                    return [k, u && { xs: u.data[0], series: u.series.slice(1).map((s) => s.label), data: u.data.slice(1) }]; })));
    await page.waitForFunction(() => {
      const p = window.dashboard.charts.hostProcesses, w = window.dashboard.charts.wasted;
      return p && p.data[1][p.data[1].length - 1] === 2 && w && w.data[0].length > 0;
    }, null, { timeout: 20000 });
    let hc = await hostCharts();
    assert.deepEqual(hc.host.series, ["allocated", "resident", "kernel_rss", "wasted"]);
    assert.ok(hc.host.data[0][hc.host.data[0].length - 1] >= 2000 * 112 + 300 * 5120, "host allocated: both targets");
    assert.deepEqual([...hc.wasted.series].sort(), [other, TARGET].sort(), "stacked executables");
    // stacked: the top band at the newest common time is the host's wasted bytes then
    const top = hc.wasted.data[0], tw = hc.wasted.xs[hc.wasted.xs.length - 1], hi = hc.host.xs.indexOf(tw);
    assert.ok(hi >= 0, "the stack and the host chart share their times");
    assert.equal(top[top.length - 1], hc.host.data[3][hi], "top of the stack = host wasted");
    assert.ok(hc.wasted.data[1][hc.wasted.data[1].length - 1] < top[top.length - 1], "the lower band is below the top");
    // the top processes by wasted bytes link to their process views
    const links = await page.$$eval("#top-wasted a", (as) => as.map((a) => a.getAttribute("href")));
    for (const pid of pids) assert.ok(links.includes(`#/process/${pid}`), `top-wasted links: ${links}`);
    await checkTicks("host view, 15 min");
    await page.screenshot({ path: shot("host-view.png"), fullPage: true });

    // ---- a reload: the host charts come back at once with what allocd stored before it
    const reloadedAt = Date.now() / 1000;
    await page.reload();
    await page.waitForFunction((t) => { const u = window.dashboard.charts.host;
                                        return u && u.data[0].length > 0 && u.data[0][0] < t - 2; },
                               reloadedAt, { timeout: 20000 });
    hc = await hostCharts();
    assert.ok(hc.host.xs.filter((t) => t < reloadedAt).length >= 10, "points older than the page");
    await page.screenshot({ path: shot("host-after-reload.png"), fullPage: true });

    // ---- process view: click the row; the charts have data
    await page.click(`#proc-table tr[data-pid="${pids[0]}"]`);
    await page.waitForFunction((pid) => location.hash === `#/process/${pid}`, pids[0]);
    await page.waitForFunction(() => {
      const c = window.dashboard.charts;
      return ["memory", "fragmentation", "purged", "huge"].every((k) => c[k] && c[k].data[0].length >= 3);
    }, null, { timeout: 30000 });
    const charts = await page.evaluate(() => Object.fromEntries(Object.entries(window.dashboard.charts).map(
      ([k, u]) => [k, { points: u.data[0].length, series: u.series.map((s) => s.label),
                        nonNull: u.data.slice(1).map((d) => d.filter((v) => v != null).length) }])));
    assert.deepEqual(charts.memory.series.slice(1),
                     ["allocated", "active", "resident", "kernel_rss", "dirty", "muzzy", "retained"]);
    for (const n of charts.memory.nonNull) assert.ok(n > 0, "every memory series has values");
    assert.ok(charts.fragmentation.nonNull[0] > 0);
    const canvases = await page.$$eval(".uplot canvas", (cs) => cs.filter((c) => c.width > 0 && c.height > 0).length);
    assert.ok(canvases >= 4, `canvases drawn: ${canvases}`);
    const allocatedLast = await page.evaluate(() => {
      const d = window.dashboard.charts.memory.data[1];
      return d[d.length - 1];
    });
    assert.ok(allocatedLast >= 2000 * 100, `allocated ${allocatedLast}`);
    assert.ok(await page.$$eval("#classes .bar span", (s) => s.length) > 0, "size-class bars");
    // the size-class heatmap, drawn from the stored class rows: the first
    // target's 2000 blocks of 100 bytes are in its 112-byte class
    await page.waitForFunction(() => window.dashboard.heatmap && window.dashboard.heatmap.cells.length > 0, null,
                               { timeout: 20000 });
    const heat = await page.evaluate(() => { const h = window.dashboard.heatmap;
      return { sizes: h.sizes, cells: h.cells.filter((c) => c.size === 112), times: h.times.length }; });
    assert.ok(heat.cells.length > 0 && heat.cells.every((c) => c.live >= 2000 && c.utilisation > 0 && c.pinned > 0),
              JSON.stringify(heat.cells.slice(0, 3)));
    const painted = await page.$eval("#heatmap canvas", (c) => {
      const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 3; i < d.length; i += 4) n += d[i] > 0;
      return n;
    });
    assert.ok(painted > 1000, `heatmap pixels drawn: ${painted}`);
    // hovering the 112-byte cell shows the bytes it pins
    const cellAt = await page.evaluate(() => { const h = window.dashboard.heatmap, g = h.geometry;
      const c = h.cells.filter((c) => c.size === 112).pop();
      return { x: (g.x(c.t0) + Math.max(g.x(c.t1), g.x(c.t0) + 1)) / 2, y: g.y(c.row) + 5 }; });
    await page.$eval("#heatmap", (el) => el.scrollIntoView({ block: "center" }));
    const box = await page.$eval("#heatmap canvas", (c) => { const r = c.getBoundingClientRect(); return { x: r.left, y: r.top }; });
    await page.mouse.move(box.x + cellAt.x, box.y + cellAt.y);
    await page.waitForSelector("#heatmap-tip:not([hidden])", { timeout: 5000 });
    assert.match(await page.textContent("#heatmap-tip"), /^112 B blocks · .* pinned in \d+ slabs/);
    await checkTicks("process view, 15 min");
    // the limit liballoc honours, and its memory cgroup where allocd could read one
    assert.match(await page.textContent("#proc-summary"), /memory limit4\.00 GiB option.*near the limit0 times/);
    const cg = (await getJSON(`/api/v1/processes/${pids[0]}`)).cgroup;
    if (cg) {
      const summary = await page.textContent("#proc-summary");
      assert.ok(summary.includes(cg.path) && /cgroup usage\d.* of /.test(summary) && /limit hit\d+ times/.test(summary),
                `summary: ${summary}`);
    }
    await page.screenshot({ path: shot("process-view.png"), fullPage: true });
    await (await page.$("#heatmap")).screenshot({ path: shot("heatmap.png") });

    // ---- the heap profile panel, on demand: the targets' liballoc answers
    // (the top call sites, or allocd's reason: profiling off, no profiler)
    await page.click("#prof-load");
    await page.waitForFunction(() => window.dashboard.profile, null, { timeout: 20000 });
    const prof = await page.evaluate(() => window.dashboard.profile);
    const note = await page.textContent("#prof-note");
    assert.ok(!prof.error, `the profiling target answers: ${note}`);
    assert.match(note, /call sites; in use /);
    assert.ok((await page.$$("#prof-table tbody tr")).length >= 1, "top call sites listed");
    assert.match(await page.getAttribute("#prof-download", "href"), /^\/api\/v1\/processes\/\d+\/profile\/heap$/);
    // ... and its flame graph: "all" on top holding the whole, main below it
    const frames = await page.$$eval("#prof-flame .frame", (fs) => fs.map((f) => ({ text: f.textContent, title: f.title,
      top: parseFloat(f.style.top), width: parseFloat(f.style.width) })));
    assert.ok(frames.length >= 3, `flame frames: ${JSON.stringify(frames)}`);
    assert.equal(frames[0].text, "all");
    assert.equal(frames[0].width, 100);
    assert.match(frames[0].title, /^all · .* \(100\.0 % of inuse_space\)$/);
    assert.ok(frames.some((f) => f.text === "main" && f.top > 0), `main in the flame graph: ${JSON.stringify(frames)}`);
    await (await page.$("#prof-flame")).screenshot({ path: shot("flame.png") });
    // a click zooms into a frame (it becomes the full-width top bar), a click on that goes back
    await page.click('#prof-flame .frame:text-is("main")');
    assert.equal(await page.textContent("#prof-flame .frame"), "↑ main");
    await page.click("#prof-flame .frame");
    assert.equal(await page.textContent("#prof-flame .frame"), "all");

    // ---- the configuration panel: a wrong token is refused, plainly
    await page.fill("#cfg-dirty", "4321");
    await page.fill("#cfg-token", "not-the-token");
    await page.click("#cfg-apply");
    await page.waitForSelector("#config-result.error", { timeout: 15000 });
    assert.match(await page.textContent("#config-result"), /401/);

    // ... the right one changes dirty_decay_ms: old -> new acknowledged
    const newValue = before.dirty_decay_ms === 4321 ? 4322 : 4321;
    await page.fill("#cfg-dirty", String(newValue));
    await page.fill("#cfg-token", token);
    await page.click("#cfg-apply");
    await page.waitForSelector('#config-result tr[data-knob="dirty_decay_ms"]', { timeout: 15000 });
    const ack = await page.textContent('#config-result tr[data-knob="dirty_decay_ms"]');
    assert.ok(ack.includes(`${before.dirty_decay_ms} → ${newValue}`), `acknowledgement: ${ack}`);
    assert.match(ack, /ok/);
    assert.equal(await page.evaluate(() => sessionStorage.getItem("allocd.token")), token, "token kept in sessionStorage");
    // the process publishes its new configuration with its next snapshot
    await waitFor(async () => (await getJSON(`/api/v1/processes/${pids[0]}`)).config.dirty_decay_ms === newValue,
                  "the new dirty_decay_ms in the process's published configuration");
    await page.waitForFunction((v) => document.querySelector("#proc-summary").textContent.includes(String(v)),
                               newValue, { timeout: 15000 });

    // ... and appears in the audit table and as a marker on the charts
    await page.waitForFunction((v) => window.dashboard.markers.some((m) => m.label === `dirty_decay_ms=${v}`),
                               newValue, { timeout: 15000 });
    const audit = await page.textContent("#audit-table tbody");
    assert.ok(audit.includes("dirty_decay_ms") && audit.includes(String(newValue)), `audit table: ${audit}`);
    // the marker is inside the plotting area (so drawn) on every chart
    const markerX = await page.evaluate(() => Object.entries(window.dashboard.charts).map(([k, u]) => {
      const x = u.valToPos(window.dashboard.markers[0].t, "x");
      return [k, x >= 0 && x <= u.bbox.width / devicePixelRatio];
    }));
    for (const [k, inside] of markerX) assert.ok(inside, `the marker lies within chart ${k}'s time range`);
    await page.screenshot({ path: shot("after-config.png"), fullPage: true });

    // ---- the range picker asks for rollups (none yet for a new process: no error)
    await page.selectOption("#range", "6h");
    await page.waitForFunction(() => /1m rollups/.test(document.querySelector("#history-note").textContent),
                               null, { timeout: 15000 });
    assert.equal(await page.evaluate(() => window.dashboard.lastError), null);

    // ---- back to the host view by the link
    await page.selectOption("#range", "15m");
    await page.click('a[href="#/"]');
    await page.waitForSelector(`#proc-table tr[data-pid="${pids[1]}"]`, { timeout: 15000 });

    // ---- the second target lends the free space of its thinned slabs: its summary says how much
    await page.click(`#proc-table tr[data-pid="${pids[1]}"]`);
    await page.waitForFunction(() => /lent\d[\d.]* [KM]iB in \d+ sparse slabs/.test(document.querySelector("#proc-summary").textContent),
                               null, { timeout: 15000 });
    await page.click('a[href="#/"]');
    await page.waitForSelector(`#proc-table tr[data-pid="${pids[1]}"]`, { timeout: 15000 });

    // ---- allocd restarts: the reloaded page draws what the earlier run stored, and what follows
    const stoppedAt = Date.now() / 1000;
    await stop(allocd, "SIGTERM");
    assert.equal(allocd.exitCode, 0, "allocd stopped cleanly");
    allocd = startAllocd();
    agents.push(allocd);
    await answering();
    await page.reload();
    await page.waitForFunction((t) => { const u = window.dashboard.charts.host;
                                        return u && u.data[0].some((x) => x < t - 5) && u.data[0].some((x) => x > t + 0.5); },
                               stoppedAt, { timeout: 30000 });
    await checkTicks("host view after the restart");
    await page.screenshot({ path: shot("host-after-restart.png"), fullPage: true });
    // the stop wrote the minute and hour in progress: the 6 h and 7 d views have them
    for (const [range, source] of [["6h", "1m"], ["7d", "1h"]]) {
      await page.selectOption("#host-range", range);
      await page.waitForFunction((s) => document.querySelector("#host-note").textContent.includes(`${s} rollups (averages)`)
                                        && window.dashboard.charts.host.data[0].length > 0, source, { timeout: 20000 });
      await checkTicks(`host view, ${range}`);
      await page.screenshot({ path: shot(`host-${range}.png`), fullPage: true });
    }

    // the refused POST; a profile of a process whose liballoc cannot give one (409, shown in the panel)
    const errs = pageErrors.filter((e) => !/^401 .*\/config$/.test(e) && !/^409 .*\/profile\/heap\?/.test(e));
    assert.deepEqual(errs, [], "no errors in the page");
    console.log(`screenshots in ${ARTIFACTS}`);
  } finally {
    if (browser) await browser.close().catch(() => {});
    for (const p of children.filter((c) => !agents.includes(c))) await stop(p, "SIGKILL");
    for (const a of agents.slice(0, -1)) await stop(a, "SIGKILL");   // stopped already, unless a check failed first
    await stop(allocd, "SIGTERM");
    fs.closeSync(log);
    if (allocd.exitCode !== 0) console.error(fs.readFileSync(logPath, "utf8"));
    fs.rmSync(root, { recursive: true, force: true });
  }
  assert.equal(allocd.exitCode, 0, "allocd stopped cleanly");
});
