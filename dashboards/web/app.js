// allocd dashboard: a plain ES module, no framework.  Reads allocd's JSON
// API (docs/api.md) from the same origin, draws charts with uPlot (loaded by
// index.html as the global `uPlot`), polls every POLL_MS.
//
// window.dashboard exposes the charts and state, for the browser test and
// for poking at from the console.

const POLL_MS = 3000;
const TREND_POINTS = 40;          // per-process sparkline length (one per poll)
const TOP_WASTED = 10;            // rows of the top processes by wasted bytes
const EXES_STACKED = 8;           // executables in the stacked wasted-bytes chart
const HEATMAP_COLUMNS = 300;      // size-class rows asked for per range (one per step)
const TOKEN_KEY = "allocd.token";
const RANGES = {                  // the range pickers (host and process views): span and data source
  "15m": { span: 15 * 60, source: "raw", label: "15 min (raw)" },
  "6h": { span: 6 * 3600, source: "1m", label: "6 h (1-minute rollups)" },
  "7d": { span: 7 * 86400, source: "1h", label: "7 d (1-hour rollups)" },
};
const MEMORY_SERIES = [
  ["allocated", "#2563eb"], ["active", "#0891b2"], ["resident", "#7c3aed"], ["kernel_rss", "#111827"],
  ["dirty", "#ea580c"], ["muzzy", "#ca8a04"], ["retained", "#9ca3af"],
];
const HISTORY_METRICS = [...MEMORY_SERIES.map(([m]) => m), "fragmentation", "purged", "kernel_anon_huge"];
const HOST_SERIES = [["allocated", "#2563eb"], ["resident", "#7c3aed"], ["kernel_rss", "#111827"], ["wasted", "#dc2626"]];
const HOST_METRICS = [...HOST_SERIES.map(([m]) => m), "fragmentation", "processes"];
const STACK_COLOURS = ["#fca5a5", "#fdba74", "#fde047", "#86efac", "#67e8f9", "#a5b4fc", "#f0abfc", "#d6d3d1", "#cbd5e1"];
// x-axis tick spacings uPlot may choose, in seconds: none below a second,
// so that no range labels ticks with fractions (":23.250")
const COUNT_INCRS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000];
const TIME_INCRS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
  86400, 172800, 604800];

const $ = (sel) => document.querySelector(sel);
const state = {
  processes: [], sortKey: "alive", sortDir: -1, filter: "", aliveOnly: false,
  trends: new Map(),              // pid -> [allocated, ...] from successive polls
  ticks: {},                      // chart name -> its x-axis labels as last drawn
  heatmap: null,                  // {times, sizes, cells} as last drawn
  view: null, pid: null, viewFrom: null, viewTo: null, range: "15m", process: null, audit: [], markers: [],
  charts: {}, busy: false, timer: null, lastError: null,
};
window.dashboard = state;

// ---- helpers -------------------------------------------------------------

function fmtBytes(v) {
  if (v == null || !isFinite(v)) return "–";
  const a = Math.abs(v), units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0, x = a;
  while (x >= 1024 && i < units.length - 1) { x /= 1024; i++; }
  return (v < 0 ? "-" : "") + (i ? x.toFixed(x < 10 ? 2 : x < 100 ? 1 : 0) : x) + " " + units[i];
}
const fmtPct = (r) => (r == null || !isFinite(r) ? "–" : (r * 100).toFixed(1) + " %");
const fmtTime = (t) => new Date(t * 1000).toLocaleString();
const pad2 = (n) => String(n).padStart(2, "0");
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

// A time-axis label for t: its clock time to the second when ticks are
// under a minute apart, to the minute under a day's span, else with the date.
function fmtTick(t, tickSecs, spanSecs) {
  const d = new Date(t * 1000), hm = `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
  if (spanSecs > 2 * 86400) return `${MONTHS[d.getMonth()]} ${d.getDate()} ${hm}`;
  return tickSecs < 60 ? `${hm}:${pad2(d.getSeconds())}` : hm;
}

// uPlot's x axis with readable labels at every range (kept per chart in state.ticks).
function timeAxis(name) {
  return {
    space: 70, incrs: TIME_INCRS,
    values: (u, splits, ai, space, incr) => {
      const span = u.scales.x.max - u.scales.x.min;
      return (state.ticks[name] = splits.map((t) => fmtTick(t, incr, span)));
    },
  };
}
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

async function api(path, opts = {}) {
  const r = await fetch(path, { cache: "no-store", ...opts });
  let body = null;
  const text = await r.text();
  try { body = JSON.parse(text); } catch { body = { error: text || r.statusText }; }
  if (!r.ok) {
    const e = new Error(`${r.status} ${r.statusText}: ${body && body.error ? body.error : text}`);
    e.status = r.status;
    throw e;
  }
  return body;
}

function setStatus(text, error = false) {
  const s = $("#status");
  s.textContent = text;
  s.classList.toggle("error", error);
}

// ---- charts ----------------------------------------------------------------

// Vertical dashed lines at state.markers (times of configuration changes).
const markerPlugin = {
  hooks: {
    draw: (u) => {
      const ctx = u.ctx, { top, height } = u.bbox;
      ctx.save();
      ctx.strokeStyle = "#dc2626";
      ctx.lineWidth = 1.5 * devicePixelRatio;
      ctx.setLineDash([5 * devicePixelRatio, 4 * devicePixelRatio]);
      ctx.fillStyle = "#dc2626";
      ctx.font = `${11 * devicePixelRatio}px sans-serif`;
      ctx.textAlign = "left";
      ctx.textBaseline = "alphabetic";
      for (const m of state.markers) {
        const x = u.valToPos(m.t, "x", true);
        if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
        ctx.beginPath();
        ctx.moveTo(x, top);
        ctx.lineTo(x, top + height);
        ctx.stroke();
        ctx.fillText(m.label, x + 3 * devicePixelRatio, top + 12 * devicePixelRatio);
      }
      ctx.restore();
    },
  },
};

function chartWidth(el) {
  return Math.max(300, el.clientWidth || el.parentElement.clientWidth - 20);
}

// A process chart spans its data to now; a host chart (fullRange) the
// whole range picked, so that 7 days look like 7 days however few points.
const xRange = (fullRange) => (u, min, max) => {
  const { viewFrom, viewTo } = state;
  if (fullRange || min == null || max == null) return [viewFrom, viewTo];
  return [min, Math.max(max, viewTo || max)];
};

// Create (once) or update the uPlot chart `name` in element `el`.
// How a chart prints its values: bytes, bytes/s, a count or a ratio.
function valueFormat({ bytes = true, rate = false, count = false }) {
  if (count) return (v) => (v == null ? "–" : String(Math.round(v)));
  if (!bytes) return (v) => (v == null ? "–" : v.toFixed(3));
  return rate ? (v) => fmtBytes(v) + "/s" : fmtBytes;
}

// series entries are [label, stroke] or [label, stroke, fill, shown(i) -> value]
function chart(name, el, series, data, { markers = true, fullRange = false, ...kind } = {}) {
  let u = state.charts[name];
  if (u && u.root.parentElement !== el) { u.destroy(); u = null; }
  if (!u) {
    const fmt = valueFormat(kind);
    const opts = {
      width: chartWidth(el), height: 220,
      // charts end at the query's `to` (now), so that a marker newer than
      // the last sample is drawn too, and a quiet host's chart still spans its range
      // byte and count charts start at 0 (a stack, or a level, read from its base)
      scales: { x: { time: true, range: xRange(fullRange) }, y: kind.bytes === false ? {} : { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      series: [{}, ...series.map(([label, stroke, fill, shown]) => ({
        label, stroke, fill, width: 1.5, value: (u, v, si, i) => fmt(shown && i != null ? shown(i) : v),
      }))],
      axes: [timeAxis(name), { size: 80, values: (u, vals) => vals.map(fmt), ...(kind.count ? { incrs: COUNT_INCRS } : {}) }],
      plugins: markers ? [markerPlugin] : [],
      legend: { live: true },
    };
    u = state.charts[name] = new uPlot(opts, data, el);
  } else {
    u.setData(data);
  }
  return u;
}

window.addEventListener("resize", () => {
  for (const u of Object.values(state.charts)) {
    const el = u.root.parentElement;
    if (el && el.offsetParent !== null) u.setSize({ width: chartWidth(el), height: 220 });
  }
});

// ---- host view ------------------------------------------------------------

function trendOf(pid) { return state.trends.get(pid) || []; }

function sparkline(values) {
  if (values.length < 2) return '<span class="flat">–</span>';
  const w = 80, h = 18, min = Math.min(...values), max = Math.max(...values), span = max - min || 1;
  const pts = values.map((v, i) => `${(i / (values.length - 1)) * w},${h - 1 - ((v - min) / span) * (h - 2)}`).join(" ");
  const first = values[0], last = values[values.length - 1];
  const change = first ? (last - first) / first : 0;
  const [cls, arrow] = change > 0.02 ? ["up", "↑"] : change < -0.02 ? ["down", "↓"] : ["flat", "→"];
  return `<svg class="spark" width="${w}" height="${h}"><polyline fill="none" stroke="currentColor" stroke-width="1.2" points="${pts}"/></svg> <span class="${cls}">${arrow}</span>`;
}

function sortValue(p, key) {
  switch (key) {
    case "pid": return p.pid;
    case "exe": return p.exe || "";
    case "alive": return p.alive ? 1 : 0;
    case "kernel_rss": return p.stats ? p.stats.kernel_rss : -1;
    case "allocated": return p.stats ? p.stats.allocated : -1;
    case "fragmentation": return p.fragmentation ?? -1;
    case "trend": {
      const t = trendOf(p.pid);
      return t.length > 1 && t[0] ? (t[t.length - 1] - t[0]) / t[0] : 0;
    }
  }
  return 0;
}

function renderTable() {
  const f = state.filter.trim().toLowerCase();
  let rows = state.processes.filter((p) =>
    (!state.aliveOnly || p.alive) &&
    (!f || String(p.pid).includes(f) || (p.exe || "").toLowerCase().includes(f) || (p.comm || "").toLowerCase().includes(f)));
  const k = state.sortKey, d = state.sortDir;
  rows.sort((a, b) => {
    const x = sortValue(a, k), y = sortValue(b, k);
    return (x < y ? -1 : x > y ? 1 : 0) * d || (b.alive - a.alive) || a.pid - b.pid;
  });
  for (const th of document.querySelectorAll("#proc-table th")) {
    th.classList.toggle("sorted-asc", th.dataset.key === k && d > 0);
    th.classList.toggle("sorted-desc", th.dataset.key === k && d < 0);
  }
  $("#proc-table tbody").innerHTML = rows.map((p) => `
    <tr data-pid="${p.pid}" class="${p.alive ? "alive" : "dead"}">
      <td class="num">${p.pid}</td>
      <td class="exe" title="${esc(p.comm)}">${esc(p.exe)}</td>
      <td>${p.alive ? "yes" : "exited"}</td>
      <td class="num">${fmtBytes(p.stats && p.stats.kernel_rss)}</td>
      <td class="num">${fmtBytes(p.stats && p.stats.allocated)}</td>
      <td class="num">${fmtPct(p.fragmentation)}</td>
      <td>${p.alive ? sparkline(trendOf(p.pid)) : ""}</td>
    </tr>`).join("");
  $("#no-procs").hidden = rows.length > 0;
}

// The range picked: [from, to, source] ending now.
function rangeNow() {
  const { span, source } = RANGES[state.range];
  const to = Date.now() / 1000;
  state.viewFrom = to - span;
  state.viewTo = to;
  return [to - span, to, source];
}

const rangeQuery = (from, to, source) => `from=${from.toFixed(3)}&to=${to.toFixed(3)}&source=${source}`;

// Points [t, value] of a history answer (rollups: their average).
const pointsOf = (h) => h.points.map((p) => [p[0], p[1]]);

function sourceNote(n, source) {
  const what = source === "raw" ? "raw samples" : source + " rollups";
  return n ? `${n} point${n === 1 ? "" : "s"} from ${what}${source === "raw" ? "" : " (averages)"}` : `no ${what} in this range yet`;
}

function renderTopWasted() {
  const wasted = (p) => p.stats.resident - p.stats.allocated;
  const top = state.processes.filter((p) => p.alive && p.stats).sort((a, b) => wasted(b) - wasted(a)).slice(0, TOP_WASTED);
  $("#top-wasted tbody").innerHTML = top.length ? top.map((p) => `
    <tr data-pid="${p.pid}"><td class="num"><a href="#/process/${p.pid}">${p.pid}</a></td>
      <td class="exe">${esc(p.exe)}</td><td class="num">${fmtBytes(wasted(p))}</td>
      <td class="num">${fmtBytes(p.stats.resident)}</td><td class="num">${fmtBytes(p.stats.allocated)}</td>
      <td class="num">${fmtPct(p.fragmentation)}</td></tr>`).join("")
    : '<tr><td colspan="6" class="muted">no live process</td></tr>';
}

// Executables' wasted bytes on one time axis, each drawn as the running
// sum of those below it (so the fills stack), the top one first.
function stacked(list) {
  const xs = [...new Set(list.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
  const own = list.map((s) => align(xs, s.points).map((v) => v ?? 0));
  const sums = own.map((_, i) => xs.map((_, k) => own.slice(0, i + 1).reduce((a, v) => a + v[k], 0)));
  const order = own.map((_, i) => own.length - 1 - i);
  const series = order.map((i) => [list[i].exe ?? "other executables", "#6b7280", STACK_COLOURS[i % STACK_COLOURS.length],
    (k) => own[i][k]]);
  return { series, data: [xs, ...order.map((i) => sums[i])] };
}

async function refreshHostHistory() {
  const [from, to, source] = rangeNow(), q = rangeQuery(from, to, source);
  const [hist, exes] = await Promise.all([
    Promise.all(HOST_METRICS.map((m) => api(`/api/v1/host/history?metric=${m}&${q}`).then(pointsOf))),
    api(`/api/v1/host/executables?metric=wasted&limit=${EXES_STACKED}&${q}`),
  ]);
  if (state.view !== "host") return;
  const by = Object.fromEntries(HOST_METRICS.map((m, i) => [m, hist[i]]));
  const xs = by.allocated.map((p) => p[0]);
  $("#host-note").textContent = sourceNote(xs.length, source);
  const host = { markers: false, fullRange: true };
  chart("host", $("#host-chart"), HOST_SERIES, [xs, ...HOST_SERIES.map(([m]) => align(xs, by[m]))], host);
  chart("hostFragmentation", $("#host-frag"), [["fragmentation", "#b45309"]], [xs, align(xs, by.fragmentation)],
        { ...host, bytes: false });
  chart("hostProcesses", $("#host-procs"), [["processes", "#0891b2"]], [xs, align(xs, by.processes)],
        { ...host, count: true });
  const list = exes.series.map((e) => ({ exe: e.exe, points: pointsOf(e) }));
  const st = stacked(list), key = st.series.map((s) => s[0]).join("\n");
  if (state.charts.wasted && state.charts.wasted.stackKey !== key) { state.charts.wasted.destroy(); delete state.charts.wasted; }
  chart("wasted", $("#host-wasted"), st.series, st.data, host).stackKey = key;
}

async function refreshHost() {
  const { processes } = await api("/api/v1/processes");
  state.processes = processes;
  for (const p of processes) {
    if (!p.alive || !p.stats) continue;
    const t = state.trends.get(p.pid) || [];
    t.push(p.stats.allocated);
    if (t.length > TREND_POINTS) t.shift();
    state.trends.set(p.pid, t);
  }
  if (state.view !== "host") return;
  const { memory_pressure: psi } = await api("/api/v1/health");
  $("#host-pressure").textContent = psi
    ? `memory pressure: some ${fmtPct(psi.some[0])}, full ${fmtPct(psi.full[0])} (10 s)` : "";
  renderTable();
  renderTopWasted();
  await refreshHostHistory();
}

// ---- process view -----------------------------------------------------------

async function history(pid, metric, from, to, source) {
  const q = `metric=${metric}&from=${from.toFixed(3)}&to=${to.toFixed(3)}&source=${source}`;
  const h = await api(`/api/v1/processes/${pid}/history?${q}`);
  // raw points are [t, value]; rollups [t, avg, min, max, last]: index 1 either way
  return h.points.map((p) => [p[0], p[1]]);
}

function align(xs, points) {
  const m = new Map(points);
  return xs.map((t) => (m.has(t) ? m.get(t) : null));
}

// Memory freed in one size class holding blocks of another (lenders).
function lendItems(s, item) {
  if (!s.lenders) return [];
  return [item("lent", `${fmtBytes(s.lent)} <span class="muted">in ${s.lenders} sparse slabs</span>`)];
}

// The limit liballoc honours (memory_limit) and what it did near it.
const LIMIT_SOURCES = ["none", "option", "cgroup v1", "cgroup v2"];
function limitItems(s, item) {
  if (!s.limit) return [];
  return [item("memory limit", `${fmtBytes(s.limit)} <span class="muted">${LIMIT_SOURCES[s.limit_source] || ""}</span>`),
          item("near the limit", `${s.limit_hits} times, ${fmtBytes(s.limit_returned)} returned, ${s.limit_refused} refused`)];
}

// The process's memory cgroup beside the allocator's figures: how close
// the whole cgroup is to its limit, and whether it has hit it.
function cgroupItems(cg, item) {
  if (!cg) return [];
  const cap = [cg.limit, cg.high].filter((v) => v > 0).reduce((a, b) => Math.min(a, b), Infinity);
  const of = cap === Infinity ? "no limit" : `${fmtBytes(cap)} (${fmtPct(cg.usage / cap)})`;
  return [item("cgroup", `${esc(cg.path)} <span class="muted">v${cg.version}</span>`),
          item("cgroup usage", `${fmtBytes(cg.usage)} of ${of}`),
          item("limit hit", `${cg.failures} times, ${cg.oom_kills} OOM kills`)];
}

function renderSummary(p) {
  const s = p.stats || {}, c = p.config || {};
  const item = (k, v) => `<div><b>${k}</b>${v}</div>`;
  $("#proc-summary").innerHTML = [
    item("exe", esc(p.exe)), item("state", p.alive ? "alive" : "exited " + (p.exited_at ? fmtTime(p.exited_at) : "")),
    item("allocated", fmtBytes(s.allocated)), item("resident", fmtBytes(s.resident)),
    item("kernel RSS", fmtBytes(s.kernel_rss)), item("fragmentation", fmtPct(p.fragmentation)),
    item("dirty_decay_ms", esc(c.dirty_decay_ms)), item("muzzy_decay_ms", esc(c.muzzy_decay_ms)),
    item("thp", esc(c.thp)), item("threads", esc(s.threads)),
    ...lendItems(s, item), ...limitItems(s, item), ...cgroupItems(p.cgroup, item),
  ].join("");
  for (const [id, knob] of [["#cfg-dirty", "dirty_decay_ms"], ["#cfg-muzzy", "muzzy_decay_ms"]])
    $(id).placeholder = c[knob] != null ? `now ${c[knob]}` : "";
  $("#cfg-thp option[value='']").textContent = c.thp ? `(unchanged: ${c.thp})` : "(unchanged)";
}

function renderClasses(classes) {
  const el = $("#classes");
  if (!classes || !classes.length) { el.innerHTML = '<span class="muted">no size class in use</span>'; return; }
  el.innerHTML = classes.map((c) => {
    const u = Math.max(0, Math.min(1, c.utilisation || 0));
    return `<div class="num">${fmtBytes(c.size)}</div>
      <div class="bar" title="${(u * 100).toFixed(1)} %"><span style="width:${(u * 100).toFixed(1)}%"></span></div>
      <div class="muted">${(u * 100).toFixed(1)} % · ${c.live} live · ${c.slabs} slabs</div>`;
  }).join("");
}

function renderAudit() {
  $("#audit-table tbody").innerHTML = state.audit.length ? state.audit.map((a) => `
    <tr><td>${fmtTime(a.time)}</td><td>${esc(a.client)}</td><td>${esc(a.knob)}</td><td>${esc(a.old_value)}</td>
    <td>${esc(a.new_value)}</td><td>${esc(a.result)}</td><td>${esc(a.effective)}</td></tr>`).join("")
    : '<tr><td colspan="7" class="muted">no configuration change recorded for this process</td></tr>';
}

async function refreshProcess() {
  const pid = state.pid;
  const p = await api(`/api/v1/processes/${pid}`);
  if (state.view !== "process" || state.pid !== pid) return;
  state.process = p;
  $("#proc-title").textContent = `${p.comm || "process"} · pid ${p.pid}`;
  renderSummary(p);
  renderClasses(p.classes);

  const [from, to, source] = rangeNow();
  const step = Math.max(1, Math.floor((to - from) / HEATMAP_COLUMNS));
  const [series, audit, classes] = await Promise.all([
    Promise.all(HISTORY_METRICS.map((m) => history(pid, m, from, to, source))),
    api(`/api/v1/audit?since=${from.toFixed(3)}&limit=1000`),
    api(`/api/v1/processes/${pid}/classes?from=${from.toFixed(3)}&to=${to.toFixed(3)}&step=${step}`),
  ]);
  if (state.view !== "process" || state.pid !== pid) return;
  const byMetric = Object.fromEntries(HISTORY_METRICS.map((m, i) => [m, series[i]]));
  state.audit = audit.audit.filter((a) => a.pid === pid &&
    (!p.first_seen || a.time >= p.first_seen - 1));
  state.markers = state.audit.map((a) => ({ t: a.time, label: `${a.knob}=${a.new_value}` }));
  renderAudit();

  const xs = byMetric.allocated.map((pt) => pt[0]);
  $("#history-note").textContent = sourceNote(xs.length, source);
  drawHeatmap(classes, from, to);
  chart("memory", $("#chart-memory"), MEMORY_SERIES, [xs, ...MEMORY_SERIES.map(([m]) => align(xs, byMetric[m]))]);
  const fx = byMetric.fragmentation.map((pt) => pt[0]);
  chart("fragmentation", $("#chart-frag"), [["fragmentation", "#b45309"]], [fx, byMetric.fragmentation.map((pt) => pt[1])], { bytes: false });
  // purged is a counter: plot its rate, and nothing across a restart (drop)
  const pu = byMetric.purged, rx = [], ry = [];
  for (let i = 1; i < pu.length; i++) {
    const dt = pu[i][0] - pu[i - 1][0], dv = pu[i][1] - pu[i - 1][1];
    rx.push(pu[i][0]);
    ry.push(dt > 0 && dv >= 0 ? dv / dt : null);
  }
  chart("purged", $("#chart-purged"), [["purged", "#16a34a"]], [rx, ry], { rate: true });
  const hx = byMetric.kernel_anon_huge.map((pt) => pt[0]);
  chart("huge", $("#chart-huge"), [["kernel_anon_huge", "#db2777"]], [hx, byMetric.kernel_anon_huge.map((pt) => pt[1])]);
}

// ---- heap profile ----------------------------------------------------------------------
// Asked for on demand only (each request makes the process write its
// profile): the top call sites as allocd symbolized them, or allocd's
// error (profiling off, no profiler) said plainly.

function frameText(f) {
  if (!f) return "";
  const where = f.file ? ` ${f.file.split("/").pop()}:${f.line || "?"}` : "";
  return `${f.function || f.address}${where}`;
}

async function loadProfile() {
  const pid = state.pid, sort = $("#prof-sort").value;
  $("#prof-note").textContent = "asking the process for its profile…";
  let body = {}, ok = false;
  try {
    const r = await fetch(`/api/v1/processes/${pid}/profile/heap?format=json&top=15&sort=${sort}`);
    ok = r.ok;
    body = await r.json();
  } catch (e) {
    body = { error: String(e) };
  }
  if (state.view !== "process" || state.pid !== pid) return;
  state.profile = ok ? body : { error: body.error || "no answer" };
  const rows = ok ? body.sites : [];
  $("#prof-table tbody").innerHTML = rows.map((s) => `
    <tr><td>${fmtBytes(s.inuse_space)}</td><td>${fmtBytes(s.pinned_space)}</td><td>${fmtBytes(s.alloc_space)}</td>
    <td>${s.inuse_objects}</td><td>${esc(frameText(s))}</td><td>${esc(frameText(s.stack[1]))}</td></tr>`).join("");
  state.flameRoot = ok ? body.flame : null;
  renderFlame(state.flameRoot);
  $("#prof-note").textContent = ok
    ? `${rows.length} call sites; in use ${fmtBytes(body.totals.inuse_space)}, pinned ${fmtBytes(body.totals.pinned_space)}, ` +
      `sampling every ${fmtBytes(body.sample_bytes)}${body.unsymbolized_reason ? ` (some frames unsymbolized: ${body.unsymbolized_reason})` : ""}`
    : state.profile.error;
}

// The flame graph: an icicle of the stacks allocd merged (its "flame"
// tree), the outermost frame on top, each frame as wide as its share of
// the chosen value.  Clicking a frame zooms into it; the top bar goes back.
const FLAME_ROW = 18, FLAME_MIN = 0.002;   // frames narrower than 0.2 % are not drawn

function flameColour(name) {
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return `hsl(${20 + (h % 40)}, ${70 + (h % 20)}%, ${62 + (h % 12)}%)`;
}

function renderFlame(root, focus = root) {
  const el = $("#prof-flame");
  if (!root || !root.value) { el.innerHTML = ""; el.style.height = "0"; return; }
  const total = focus.value, bars = [];
  let depth = 0;
  const place = (n, x, d) => {
    if (n.value / total < FLAME_MIN) return;
    depth = Math.max(depth, d);
    bars.push({ n, x, d });
    let cx = x;
    for (const c of n.children) { place(c, cx, d + 1); cx += c.value / total; }
  };
  place(focus, 0, 0);
  el.style.height = `${(depth + 1) * FLAME_ROW}px`;
  el.innerHTML = bars.map(({ n, x, d }, i) => {
    const w = n.value / total, label = n === focus && focus !== root ? `↑ ${n.name}` : n.name;
    const title = `${n.name} · ${fmtBytes(n.value)} (${(100 * n.value / root.value).toFixed(1)} % of ${root.value_name})`;
    return `<div class="frame" data-i="${i}" title="${esc(title)}" style="left:${(x * 100).toFixed(3)}%;` +
      `width:${(w * 100).toFixed(3)}%;top:${d * FLAME_ROW}px;background:${flameColour(n.name)}">${esc(label)}</div>`;
  }).join("");
  el.onclick = (ev) => {
    const i = ev.target.dataset && ev.target.dataset.i;
    if (i == null) return;
    const n = bars[Number(i)].n;
    renderFlame(root, n === focus ? root : n);
  };
}

// ---- size-class heatmap -------------------------------------------------------------

const HEATMAP = { left: 70, bottom: 24, top: 6, right: 8, rowHeight: 14 };

// Utilisation 0 (red: slabs pinned, nearly empty) .. 1 (green: full).
const utilColour = (u) => `hsl(${Math.round(120 * Math.max(0, Math.min(1, u)))}, 70%, ${55 - 10 * u}%)`;

// The class rows as cells: one column per row (to the next row's time),
// one band per size; state.heatmap keeps them for hovering and the test.
function heatmapCells(answer, from, to) {
  const cols = answer.columns, at = (k) => cols.indexOf(k);
  const rows = answer.points, times = rows.map((r) => r[0]);
  if (times.length) from = Math.max(from, times[0]);   // a process younger than the range fills the width
  const sizes = [...new Set(rows.flatMap((r) => r[1].map((c) => c[at("size")])))].sort((a, b) => a - b);
  const gap = times.length > 1 ? (times[times.length - 1] - times[0]) / (times.length - 1) : to - from;
  const cells = rows.flatMap((r, i) => r[1].map((c) => ({
    t0: r[0], t1: i + 1 < rows.length ? rows[i + 1][0] : Math.min(to, r[0] + gap), row: sizes.indexOf(c[at("size")]),
    size: c[at("size")], live: c[at("live")], slabs: c[at("slabs")], utilisation: c[at("utilisation")],
    pinned: c[at("pinned_bytes")], free: c[at("free_bytes")],
  })));
  return { from, to, times, sizes, cells };
}

function heatmapGeometry(el, h) {
  const width = chartWidth(el), height = HEATMAP.top + HEATMAP.bottom + Math.max(1, h.sizes.length) * HEATMAP.rowHeight;
  const plotW = width - HEATMAP.left - HEATMAP.right;
  const x = (t) => HEATMAP.left + ((t - h.from) / (h.to - h.from)) * plotW;
  const y = (row) => HEATMAP.top + (h.sizes.length - 1 - row) * HEATMAP.rowHeight;   // small sizes at the bottom
  return { width, height, plotW, x, y };
}

function heatmapAxes(ctx, h, g) {
  ctx.fillStyle = "#1d2330";
  ctx.font = "11px sans-serif";
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  h.sizes.forEach((s, row) => ctx.fillText(fmtBytes(s), HEATMAP.left - 6, g.y(row) + HEATMAP.rowHeight / 2));
  const span = h.to - h.from, incr = TIME_INCRS.find((i) => g.plotW / (span / i) >= 90) || TIME_INCRS[TIME_INCRS.length - 1];
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  const labels = [];
  for (let t = Math.ceil(h.from / incr) * incr; t <= h.to; t += incr) {
    labels.push(fmtTick(t, incr, span));
    ctx.fillText(labels[labels.length - 1], g.x(t), g.height - HEATMAP.bottom + 6);
  }
  state.ticks.heatmap = labels;
}

function drawHeatmap(answer, from, to) {
  const el = $("#heatmap"), canvas = el.querySelector("canvas"), h = heatmapCells(answer, from, to);
  const g = heatmapGeometry(el, h), ctx = canvas.getContext("2d");
  canvas.width = g.width * devicePixelRatio;
  canvas.height = g.height * devicePixelRatio;
  canvas.style.height = `${g.height}px`;
  ctx.setTransform(devicePixelRatio, 0, 0, devicePixelRatio, 0, 0);
  ctx.clearRect(0, 0, g.width, g.height);
  for (const c of h.cells) {
    ctx.fillStyle = utilColour(c.utilisation);
    ctx.fillRect(g.x(c.t0), g.y(c.row), Math.max(1, g.x(c.t1) - g.x(c.t0)), HEATMAP.rowHeight - 1);
  }
  heatmapAxes(ctx, h, g);
  state.heatmap = { ...h, geometry: g };
  $("#heatmap-note").textContent = h.times.length
    ? `${h.times.length} snapshots of ${h.sizes.length} size classes (stored every minute, one an hour after the raw retention)`
    : "no size-class history in this range yet";
}

// The cell under the pointer, shown with the bytes it pins.
function heatmapHover(ev) {
  const h = state.heatmap, tip = $("#heatmap-tip");
  if (!h) return;
  const r = ev.currentTarget.getBoundingClientRect(), px = ev.clientX - r.left, py = ev.clientY - r.top;
  const g = h.geometry, c = h.cells.find((c) => px >= g.x(c.t0) && px < Math.max(g.x(c.t1), g.x(c.t0) + 1) &&
    py >= g.y(c.row) && py < g.y(c.row) + HEATMAP.rowHeight);
  tip.hidden = !c;
  if (!c) return;
  tip.textContent = `${fmtBytes(c.size)} blocks · ${fmtPct(c.utilisation)} used · ${fmtBytes(c.pinned)} pinned in ` +
    `${c.slabs} slabs · ${fmtBytes(c.free)} free · ${fmtTime(c.t0)}`;
  tip.style.left = `${Math.min(px + 12, r.width - tip.offsetWidth)}px`;
  tip.style.top = `${py + 12}px`;
}

// ---- configuration panel ---------------------------------------------------------

async function applyConfig(ev) {
  ev.preventDefault();
  const out = $("#config-result"), btn = $("#cfg-apply");
  const token = $("#cfg-token").value.trim();
  sessionStorage.setItem(TOKEN_KEY, token);
  const body = {};
  for (const [id, knob] of [["#cfg-dirty", "dirty_decay_ms"], ["#cfg-muzzy", "muzzy_decay_ms"]]) {
    const v = $(id).value.trim();
    if (v !== "") body[knob] = Number(v);
  }
  if ($("#cfg-thp").value) body.thp = $("#cfg-thp").value;
  out.className = "result";
  if (!Object.keys(body).length) { out.className = "result error"; out.textContent = "Nothing to change: fill in a knob."; return; }
  if (!token) { out.className = "result error"; out.textContent = "A token is needed (allocd's --token-file)."; return; }
  btn.disabled = true;
  out.textContent = "applying…";
  try {
    const r = await api(`/api/v1/processes/${state.pid}/config`, {
      method: "POST",
      headers: { "Authorization": `Bearer ${token}`, "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    out.innerHTML = `<table class="ack"><thead><tr><th>knob</th><th>before → after</th><th>status</th></tr></thead><tbody>` +
      Object.entries(r.results).map(([k, v]) => `<tr data-knob="${esc(k)}"><td>${esc(k)}</td>
        <td class="change">${esc(v.old)} → ${esc(v.effective)}</td>
        <td class="${v.status === "ok" ? "ok" : "bad"}">${esc(v.status)}${v.message && v.message !== v.status ? ": " + esc(v.message) : ""}</td></tr>`).join("") +
      `</tbody></table>`;
    for (const id of ["#cfg-dirty", "#cfg-muzzy"]) $(id).value = "";
    $("#cfg-thp").value = "";
    await refreshProcess().catch(() => {});
  } catch (e) {
    out.className = "result error";
    out.textContent = `Not applied: ${e.message}`;
  } finally {
    btn.disabled = false;
  }
}

// ---- routing and polling ------------------------------------------------------

async function poll() {
  if (state.busy) { state.again = true; return; }
  state.busy = true;
  state.again = false;
  try {
    if (state.view === "process") await refreshProcess();
    else await refreshHost();
    state.lastError = null;
    setStatus(`updated ${new Date().toLocaleTimeString()}`);
  } catch (e) {
    state.lastError = e.message;
    setStatus(`error: ${e.message}`, true);
  } finally {
    state.busy = false;
  }
  if (state.again) poll();        // the view changed while this poll ran
}

function route() {
  const m = location.hash.match(/^#\/process\/(\d+)/);
  const view = m ? "process" : "host";
  const pid = m ? Number(m[1]) : null;
  if (view !== state.view || pid !== state.pid) {
    for (const u of Object.values(state.charts)) u.destroy();
    state.charts = {};
    state.ticks = {};
    state.heatmap = null;
    state.markers = [];
    state.profile = null;
    $("#config-result").textContent = "";
    $("#prof-table tbody").innerHTML = "";
    $("#prof-note").textContent = "";
    renderFlame(null);
    if (m) $("#prof-download").href = `/api/v1/processes/${m[1]}/profile/heap`;
  }
  state.view = view;
  state.pid = pid;
  $("#host-view").hidden = view !== "host";
  $("#process-view").hidden = view !== "process";
  poll();
}

function init() {
  $("#filter").addEventListener("input", (e) => { state.filter = e.target.value; renderTable(); });
  $("#alive-only").addEventListener("change", (e) => { state.aliveOnly = e.target.checked; renderTable(); });
  for (const th of document.querySelectorAll("#proc-table th")) {
    th.addEventListener("click", () => {
      const k = th.dataset.key;
      state.sortDir = state.sortKey === k ? -state.sortDir : (k === "pid" || k === "exe" ? 1 : -1);
      state.sortKey = k;
      renderTable();
    });
  }
  $("#proc-table tbody").addEventListener("click", (e) => {
    const tr = e.target.closest("tr[data-pid]");
    if (tr) location.hash = `#/process/${tr.dataset.pid}`;
  });
  for (const sel of document.querySelectorAll("select.range")) {
    sel.innerHTML = Object.entries(RANGES).map(([k, r]) => `<option value="${k}">${esc(r.label)}</option>`).join("");
    sel.addEventListener("change", (e) => {
      state.range = e.target.value;
      for (const other of document.querySelectorAll("select.range")) other.value = state.range;
      for (const u of Object.values(state.charts)) u.setData([[], ...u.series.slice(1).map(() => [])]);
      poll();
    });
  }
  $("#heatmap-ramp").style.background = `linear-gradient(to right, ${[0, 0.25, 0.5, 0.75, 1].map(utilColour).join(", ")})`;
  $("#heatmap canvas").addEventListener("mousemove", heatmapHover);
  $("#heatmap canvas").addEventListener("mouseleave", () => { $("#heatmap-tip").hidden = true; });
  $("#cfg-token").value = sessionStorage.getItem(TOKEN_KEY) || "";
  $("#config-form").addEventListener("submit", applyConfig);
  $("#prof-load").addEventListener("click", loadProfile);
  window.addEventListener("hashchange", route);
  route();
  state.timer = setInterval(poll, POLL_MS);
}

init();
