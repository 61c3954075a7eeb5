/* mlms_ir HTML report. Reads the JSON in #report-data; every string from the model goes on the
   page through textContent, never innerHTML. Layout positions come precomputed from Python. */
(function () {
  "use strict";
  const D = JSON.parse(document.getElementById("report-data").textContent);
  // a node of a block instance comes as a reference to its template's node (t), with its own id,
  // name and tensor names (in, out) and only what differs (del: fields it lacks)
  for (let i = 0; i < D.nodes.length; i++) {
    const r = D.nodes[i];
    if (r.t === undefined) continue;
    const t = D.nodes[r.t], n = Object.assign({}, t);
    for (const k in r) if (k !== "t" && k !== "in" && k !== "out" && k !== "del") n[k] = r[k];
    if (r.in) n.inputs = r.in.map((x, j) => [x, t.inputs[j][1], t.inputs[j][2]]);
    if (r.out) n.outputs = r.out.map((x, j) => [x, t.outputs[j][1]]);
    if (r.del) for (const k of r.del) delete n[k];
    D.nodes[i] = n;
  }
  // a main-graph row of the nodes table comes as the index of its node
  D.table = D.table.map((r) => { if (typeof r !== "number") return r; const n = D.nodes[r]; return [n.id, n.name, n.op, n.status, n.macs, n.flops, n.params, n.out_bytes, n.intensity, null]; });
  // a folded view's "×N" box lists its instances (boxes of the collapsed view); a lone instance comes as {c: its index}
  if (D.folded) D.folded.items = D.folded.items.map((it) => {
    if (typeof it === "number") return it;
    if (it.c !== undefined) return D.collapsed.items[it.c];
    it.members = [].concat(...it.instances.map((k) => D.collapsed.items[k].members));
    return it;
  });
  const SVGNS = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ small helpers
  function el(tag, attrs, text) {
    const e = document.createElement(tag);
    if (attrs) for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function sel(tag, attrs) {
    const e = document.createElementNS(SVGNS, tag);
    if (attrs) for (const k in attrs) e.setAttribute(k, attrs[k]);
    return e;
  }
  // three significant digits, trailing zeros dropped, never an exponent: as mlms_ir/report/text.py writes them
  function sig3(v) {
    if (v === 0 || !Number.isFinite(v)) return String(v);
    const r = Number(v.toPrecision(3));
    return r.toFixed(Math.max(0, 2 - Math.floor(Math.log10(Math.abs(r))))).replace(/(\.\d*?)0+$/, "$1").replace(/\.$/, "");
  }
  function count(v, unit) {
    if (v === null || v === undefined) return "–";
    const r = Number.isFinite(v) ? Number(Number(v).toPrecision(3)) : v;  // rounded first: 999,600 is "1 M", not "1000 K"
    const steps = [[1e18, "E"], [1e15, "P"], [1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "K"]];
    for (const [s, p] of steps) if (Math.abs(r) >= s) return sig3(r / s) + " " + p + (unit || "");
    return (Number.isInteger(v) ? String(v) : sig3(r)) + (unit ? " " + unit : "");
  }
  function bytes(v) {
    if (v === null || v === undefined) return "–";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0, x = v;
    while (Math.abs(x) >= 1024 && i < units.length - 1) { x /= 1024; i++; }
    return (i ? x.toFixed(x >= 100 ? 0 : 1) : String(x)) + " " + units[i];
  }
  // a time in µs: three significant digits, never finer than 0.01 µs (below that it is noise)
  function us(v) {
    if (v === null || v === undefined) return "–";
    if (v === 0) return "0 µs";
    if (Math.abs(v) < 0.01) return "< 0.01 µs";
    let r = Number(Number(v).toPrecision(3));
    if (Math.abs(r) < 1) r = Math.round(v * 100) / 100;
    if (Math.abs(r) >= 1e6) return sig3(r / 1e6) + " s";
    if (Math.abs(r) >= 1e3) return sig3(r / 1e3) + " ms";
    return sig3(r) + " µs";
  }
  // an infinite error (an overflow, a NaN on one side) travels as the string "inf"
  function num(v) { return v === "inf" ? Infinity : (v === "-inf" ? -Infinity : v); }
  function sci(v) { v = num(v); return v === null || v === undefined ? "–" : (v === 0 ? "0" : (Number.isFinite(v) ? Number(v).toPrecision(3) : (v > 0 ? "∞" : "−∞"))); }
  function pct(v) { return v === null || v === undefined ? "–" : (100 * v).toFixed(1) + "%"; }
  const pct100 = (v) => (v === null || v === undefined ? "–" : Number(v).toFixed(1) + "%");
  const FORMAT = { macs: (v) => count(v), flops: (v) => count(v), params: (v) => count(v), out_bytes: bytes, time_us: us,
                   macs_at: (v) => count(v), flops_at: (v) => count(v), out_bytes_at: bytes,
                   share: pct, achieved: (v) => count(v, "FLOP/s"), hw_sm_pct: pct100, hw_memory_pct: pct100 };
  function fmtMetric(key, v) { return (FORMAT[key] || sci)(v); }

  // ------------------------------------------------------------------ header facts
  (function facts() {
    const box = $("facts");
    const add = (k, v) => { if (v === null || v === undefined || v === "") return; const s = el("span"); s.append(el("b", null, k + " "), document.createTextNode(String(v))); box.append(s); };
    const t = D.totals;
    add("params", count(t.params));
    const f = D.formulas || {};
    add("MACs", t.macs === null && f.macs ? f.macs : count(t.macs));
    add("FLOPs", t.flops === null && f.flops ? f.flops : count(t.flops));
    add("weights", bytes(t.weight_bytes));
    add("peak activations", t.peak_activation_bytes === null && f.peak_activation_bytes ? f.peak_activation_bytes : bytes(t.peak_activation_bytes));
    if ((D.dims || []).length) add("dims", D.dims.map((d) => d.name).join(", "));
    add("nodes", t.nodes);
    const b = D.bindings || {};
    if (b.inputs) add("inputs", Object.entries(b.inputs).map(([k, v]) => k + ": " + (Array.isArray(v) ? v.join("×") : v)).join(", "));
    const s = D.system || {};
    if (s.cpu) add("CPU", [s.cpu.model, s.cpu.architecture, (s.cpu.logical_cores || "?") + " cores", s.cpu.memory_total_bytes ? bytes(s.cpu.memory_total_bytes) : null].filter(Boolean).join(", "));
    if (s.gpu && s.gpu.gpus && s.gpu.gpus.length) add("GPU", s.gpu.gpus.map((g) => g.name + (g.compute_capability ? " (cc " + g.compute_capability + ")" : "")).join(", ") + (s.gpu.driver ? ", driver " + s.gpu.driver : ""));
    if (s.software) {
      add("OS", s.software.os);
      add("Python", s.software.python_version);
      const p = s.software.packages || {};
      add("packages", Object.entries(p).map(([k, v]) => k + " " + v).join(", "));
    }
    if (D.profile) add("profiled on", D.profile.backend + " (" + D.profile.device + "), batch " + D.profile.batch + ", " + D.profile.runs + " traced runs, coverage " + pct(D.profile.coverage));
    const g = D.profile && D.profile.gpu;
    if (g && g.busy_us !== undefined) add("GPU execution", Math.round(g.kernels) + " kernels per run, busy " + us(g.busy_us) + ", idle " + us(g.idle_us) + ", utilisation " + pct(g.utilization) + (g.launch_latency_us === null ? "" : ", launch to start " + us(g.launch_latency_us)));
    const sampled = (g && g.telemetry && g.telemetry.available && g.telemetry.gpus) || [];
    const tg = sampled.find((x) => x.index === g.telemetry_gpu) || (sampled.length === 1 ? sampled[0] : null);
    if (tg) add("NVML (mean)", [["sm_clock_mhz", " MHz SM"], ["mem_clock_mhz", " MHz memory"], ["power_w", " W"], ["temperature_c", " °C"], ["gpu_utilization_pct", "% busy"]].filter(([k]) => tg[k]).map(([k, u]) => Math.round(tg[k].mean) + u).join(", "));
    for (const r of D.divergence) add("divergence", r.backend + " vs " + r.reference + " (" + r.precision + ")");
    if (D.runs && D.runs.length) {
      const seen = {};
      for (const r of D.runs) (seen[r.backend + " (" + r.device + ")"] = seen[r.backend + " (" + r.device + ")"] || []).push(r.batch + (r.status === "ok" ? "" : " " + r.status));
      add("runs", Object.entries(seen).map(([k, b]) => k + ": batch " + b.join(", ")).join("; "));
    }
    if (D.scenarios) add("LoadGen " + D.scenarios.settings.scenario, D.scenarios.runs.map((r) => r.backend + " (" + r.device + ") " + r.verdict).join(", "));
    const c = D.counters;
    if (c) add("counters", "ncu on " + (c.gpu || "?") + ", " + (c.totals.kernels || 0) + " kernels, coverage " + pct(c.coverage) + (c.device ? ", roofline " + c.device : ""));
    if (D.tool && D.tool.version) add("mlms_ir", D.tool.version);
    if (!D.measured) add("measured", "nothing: static analysis only");
  })();

  // ------------------------------------------------------------------ tabs
  const shown = {};
  function showTab(name) {
    for (const b of document.querySelectorAll("nav#tabs button")) b.classList.toggle("active", b.dataset.tab === name);
    for (const s of document.querySelectorAll("section.tab")) s.classList.toggle("active", s.id === name);
    if (!shown[name]) { shown[name] = true; (LAZY[name] || (() => {}))(); }
  }
  for (const b of document.querySelectorAll("nav#tabs button")) b.addEventListener("click", () => showTab(b.dataset.tab));

  // ------------------------------------------------------------------ colour scale
  const PALETTE = ["#fff7d6", "#fee7a0", "#fdd06e", "#fdb04b", "#fc8a3a", "#f5612f", "#e0382b", "#bd1a2b", "#8c0b2a"];
  const NONE = "#e4e7eb";
  function colourOf(t) { return PALETTE[Math.max(0, Math.min(PALETTE.length - 1, Math.floor(t * PALETTE.length)))]; }
  function isDark(c) { const i = PALETTE.indexOf(c); return i >= 6; }

  // ------------------------------------------------------------------ graph view
  const svg = $("canvas"), vp = $("viewport"), tip = $("tooltip");
  const nodes = D.nodes;
  const state = { view: D.view === "folded" ? (D.folded ? "folded" : "collapsed") : "full", instance: null, hits: [], items: [], pos: [], gs: [], rects: [], metric: null, k: 1, tx: 0, ty: 0, selected: -1, matches: [], matchAt: -1, width: 0, height: 0 };

  function viewData() {
    if (state.view === "folded" && D.folded) return { lay: D.folded, items: D.folded.items };
    if (state.view === "instance" && state.instance) return { lay: D.templates[state.instance.tpl], items: state.instance.members };
    if ((state.view !== "full" || !D.layout) && D.collapsed) return { lay: D.collapsed, items: D.collapsed.items };
    return { lay: D.layout, items: nodes.map((_, i) => i) };
  }
  // the collapsed view's box holding each node of a block instance
  let boxOfNode = null;
  function boxOf(m) {
    if (!boxOfNode) { boxOfNode = new Map(); for (const it of (D.collapsed ? D.collapsed.items : [])) if (typeof it !== "number") for (const k of it.members) boxOfNode.set(k, it); }
    return boxOfNode.get(m);
  }
  function setView(view, instance) {
    state.view = view; state.instance = instance || null;
    cbox.checked = view !== "full";
    render();
  }
  // show node m (an index into D.nodes) in the view, opening the instance that holds it when it is folded away
  function reveal(m) {
    let i = state.items.indexOf(m);
    if (i < 0) {
      const box = boxOf(m);
      if (box && box.tpl !== undefined) { setView("instance", box); i = state.items.indexOf(m); }
      else if (!box && D.layout && state.view !== "full") { setView("full"); i = state.items.indexOf(m); }
      else {
        if (state.view === "instance") setView(D.folded ? "folded" : "collapsed");
        i = state.items.indexOf(m);
        if (i < 0) i = state.items.findIndex((it) => typeof it !== "number" && it.members.includes(m));
      }
    }
    if (i >= 0) { centerOn(i); select(i); }
  }
  function itemNode(it) { return typeof it === "number" ? nodes[it] : it; }
  function metricValue(it, key) {
    const n = itemNode(it);
    if (key.startsWith("div")) {
      const intro = key.endsWith("i"), k = intro ? key.slice(0, -1) : key;
      const members = n.kind === "block" ? n.members.map((m) => nodes[m]) : [n];
      let best = null, exceeds = false;
      for (const m of members) {
        const d = m.div && m.div[k];
        if (!d) continue;
        const v = num(intro ? d.introduced_max_abs : d.max_abs);
        if (v !== null && v !== undefined && (best === null || v > best)) best = v;
        if (intro ? d.introduced_exceeds : d.exceeds) exceeds = true;
      }
      return { v: best, exceeds };
    }
    const v = n[key];
    return { v: v === undefined ? null : v, exceeds: false };
  }

  function render() {
    const { lay, items } = viewData();
    state.items = items; state.pos = lay.pos; state.width = lay.width; state.height = lay.height;
    state.gs = new Array(items.length); state.rects = new Array(items.length); state.selected = -1;
    state.fill = new Array(items.length); state.dark = new Array(items.length); state.exc = new Array(items.length); state.match = new Array(items.length);
    state.byY = null;
    while (vp.firstChild) vp.removeChild(vp.firstChild);
    let d = "", a = "";
    for (const [s, t, p] of lay.edges) {
      if (p.length < 4) continue;
      d += "M" + p[0] + " " + p[1];
      for (let i = 2; i < p.length; i += 2) {
        const x0 = p[i - 2], y0 = p[i - 1], x1 = p[i], y1 = p[i + 1], ym = (y0 + y1) / 2;
        d += "C" + x0 + " " + ym + " " + x1 + " " + ym + " " + x1 + " " + y1;
      }
      const x = p[p.length - 2], y = p[p.length - 1];
      a += "M" + (x - 3.5) + " " + (y - 7) + "L" + (x + 3.5) + " " + (y - 7) + "L" + x + " " + y + "Z";
    }
    vp.append(sel("path", { class: "edges", d: d }), sel("path", { class: "arrows", d: a }), sel("path", { class: "edges-hl", d: "" }));
    let ops = 0;
    for (let i = 0; i < items.length; i++) if (itemNode(items[i]).kind === "op") ops++;
    if (items.length <= CULL_AT) {
      const frag = document.createDocumentFragment();
      for (let i = 0; i < items.length; i++) frag.append(makeNode(i));
      vp.append(frag);
    } else {
      // too many to draw at once: only the nodes in (or near) the window are made, as it pans and zooms
      state.byY = items.map((_, i) => i).sort((a, b) => lay.pos[a][1] - lay.pos[b][1]);
    }
    const boxes = items.filter((x) => typeof x !== "number");
    $("node-count").textContent = ops + " nodes drawn" + (boxes.length ? " (" + boxes.length + (state.view === "folded" ? " folded runs of blocks, " + boxes.reduce((a, b) => a + (b.count || 1), 0) + " instances)" : " collapsed blocks)") : "")
      + (state.view === "instance" ? " of " + state.instance.name : "");
    $("unfold").hidden = !D.folded || (state.view !== "folded" && state.view !== "collapsed");
    $("unfold").textContent = state.view === "folded" ? "unfold blocks" : "fold blocks (×N)";
    $("back").hidden = state.view !== "instance";
    colour();
    applySearch();
    initialView();
  }

  // a view of more items than this draws only those near the window (a graph without repeated blocks to fold)
  const CULL_AT = 8000;
  function makeNode(i) {
    if (state.gs[i]) return state.gs[i];
    const n = itemNode(state.items[i]), p = state.pos[i];
    const g = sel("g", { class: "node " + (n.kind === "op" ? "op" : n.kind === "block" ? (n.fold ? "block fold" : "block") : "io"), transform: "translate(" + (p[0] - p[2] / 2) + "," + (p[1] - p[3] / 2) + ")", "data-i": i, "data-id": n.id });
    const r = sel("rect", { width: p[2], height: p[3] });
    const t = sel("text", { x: p[2] / 2, y: p[3] / 2 });
    t.textContent = n.label;
    g.append(r, t);
    state.gs[i] = g; state.rects[i] = r;
    decorate(i);
    return g;
  }
  // the colour, search and selection state of item i onto its drawn node, if it is drawn
  function decorate(i) {
    const g = state.gs[i];
    if (!g) return;
    const kind = itemNode(state.items[i]).kind;
    if ((kind === "op" || kind === "block") && state.fill[i]) state.rects[i].setAttribute("fill", state.fill[i]);
    g.classList.toggle("dark", !!state.dark[i]);
    g.classList.toggle("exceeds", !!state.exc[i]);
    g.classList.toggle("match", !!state.match[i]);
    g.classList.toggle("selected", i === state.selected);
  }
  function drawVisible() {
    if (!state.byY) return;
    const W = svg.clientWidth, H = svg.clientHeight, m = 200 / state.k;
    const x0 = -state.tx / state.k - m, x1 = (W - state.tx) / state.k + m, y0 = -state.ty / state.k - m, y1 = (H - state.ty) / state.k + m;
    const ys = state.byY, pos = state.pos;
    let lo = 0, hi = ys.length;
    while (lo < hi) { const mid = (lo + hi) >> 1; if (pos[ys[mid]][1] < y0) lo = mid + 1; else hi = mid; }
    const frag = document.createDocumentFragment();
    for (let j = lo; j < ys.length && pos[ys[j]][1] <= y1; j++) {
      const i = ys[j], p = pos[i];
      if (!state.gs[i] && p[0] + p[2] / 2 >= x0 && p[0] - p[2] / 2 <= x1) frag.append(makeNode(i));
    }
    vp.append(frag);
  }

  function colour() {
    const key = state.metric;
    const vals = state.items.map((it) => metricValue(it, key));
    const pos = vals.map((x) => x.v).filter((v) => v !== null && v > 0 && Number.isFinite(v));
    let lo = Infinity, hi = -Infinity;
    for (const v of pos) { const l = Math.log10(v); if (l < lo) lo = l; if (l > hi) hi = l; }
    let coloured = 0;
    for (let i = 0; i < vals.length; i++) {
      const { v, exceeds } = vals[i];
      let c = NONE;
      if (v !== null) {
        coloured++;
        c = v > 0 ? (Number.isFinite(v) ? colourOf(hi > lo ? (Math.log10(v) - lo) / (hi - lo) : 1) : PALETTE[PALETTE.length - 1]) : PALETTE[0];
      }
      state.fill[i] = c; state.dark[i] = isDark(c); state.exc[i] = !!exceeds;
      decorate(i);
    }
    legend(key, pos.length ? Math.pow(10, lo) : null, pos.length ? Math.pow(10, hi) : null, coloured, vals.filter((x) => x.exceeds).length);
  }

  function legend(key, lo, hi, coloured, exceeding) {
    const box = $("legend");
    while (box.firstChild) box.removeChild(box.firstChild);
    const label = (D.metrics.find((m) => m[0] === key) || [key, key])[1];
    box.append(el("div", null, label + (lo !== null ? " (log scale)" : "")));
    const bar = el("div", { class: "bar" });
    for (const c of PALETTE) { const s = el("span"); s.style.background = c; bar.append(s); }
    box.append(bar);
    const ends = el("div", { class: "ends" });
    ends.append(el("span", { id: "legend-min" }, lo !== null ? fmtMetric(key, lo) : "–"), el("span", { id: "legend-max" }, hi !== null ? fmtMetric(key, hi) : "–"));
    box.append(ends);
    const foot = el("div");
    foot.append(el("span", { class: "none" }), document.createTextNode("no value · " + coloured + " of " + state.items.length + " coloured" + (key.startsWith("div") ? " · " + exceeding + " beyond tolerance (red border)" : "")));
    box.append(foot);
  }

  // ---- zoom and pan
  function applyTransform() { vp.setAttribute("transform", "translate(" + state.tx + "," + state.ty + ") scale(" + state.k + ")"); drawVisible(); }
  function fit() {
    const W = svg.clientWidth - 360, H = svg.clientHeight;
    const k = Math.min(2, Math.min(W / (state.width + 40), H / (state.height + 40)));
    state.k = k; state.tx = (W - state.width * k) / 2; state.ty = 20; applyTransform();
  }
  function initialView() {
    const W = svg.clientWidth - 360, H = svg.clientHeight;
    if (state.height * Math.min(1, W / (state.width + 40)) <= H * 1.5) { fit(); return; }
    state.k = Math.max(0.35, Math.min(1, W / (state.width + 40)));
    state.tx = Math.max(20, (W - state.width * state.k) / 2); state.ty = 20; applyTransform();
  }
  function centerOn(i) {
    const p = state.pos[i], W = svg.clientWidth - 360, H = svg.clientHeight;
    if (state.k < 0.6) state.k = 1;
    state.tx = W / 2 - p[0] * state.k; state.ty = H / 2 - p[1] * state.k; applyTransform();
  }
  svg.addEventListener("wheel", (e) => {
    e.preventDefault();
    const r = svg.getBoundingClientRect(), mx = e.clientX - r.left, my = e.clientY - r.top;
    const kmin = Math.min(0.05, 0.5 * Math.min((svg.clientWidth - 360) / (state.width + 40), svg.clientHeight / (state.height + 40)));
    const f = Math.exp(-e.deltaY * 0.0015), k = Math.max(kmin, Math.min(8, state.k * f));
    state.tx = mx - (mx - state.tx) * (k / state.k); state.ty = my - (my - state.ty) * (k / state.k); state.k = k; applyTransform();
  }, { passive: false });
  let drag = null;
  svg.addEventListener("pointerdown", (e) => { drag = { x: e.clientX, y: e.clientY, tx: state.tx, ty: state.ty, moved: false }; });
  window.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) { drag.moved = true; svg.classList.add("dragging"); }
    state.tx = drag.tx + dx; state.ty = drag.ty + dy; applyTransform();
  });
  window.addEventListener("pointerup", () => { setTimeout(() => { drag = null; }, 0); svg.classList.remove("dragging"); });
  $("fit").addEventListener("click", fit);

  // ---- hover and click
  function nodeIndexOf(target) { const g = target.closest && target.closest("g.node"); return g ? Number(g.getAttribute("data-i")) : -1; }
  vp.addEventListener("mouseover", (e) => {
    const i = nodeIndexOf(e.target);
    if (i < 0) { tip.hidden = true; return; }
    const n = itemNode(state.items[i]), m = metricValue(state.items[i], state.metric);
    tip.textContent = (n.name || n.id) + " · " + (n.op || n.kind) + " · " + fmtMetric(state.metric, m.v);
    tip.hidden = false;
  });
  vp.addEventListener("mousemove", (e) => { const r = svg.getBoundingClientRect(); tip.style.left = (e.clientX - r.left + 14) + "px"; tip.style.top = (e.clientY - r.top + 10) + "px"; });
  vp.addEventListener("mouseout", () => { tip.hidden = true; });
  vp.addEventListener("click", (e) => { if (drag && drag.moved) return; const i = nodeIndexOf(e.target); if (i >= 0) select(i); });

  function select(i) {
    const was = state.selected;
    state.selected = i;
    decorate(was);
    if (!state.gs[i]) vp.append(makeNode(i));
    decorate(i);
    const { lay } = viewData();
    let d = "";
    for (const [s, t, p] of lay.edges) if ((s === i || t === i) && p.length >= 4) {
      d += "M" + p[0] + " " + p[1];
      for (let j = 2; j < p.length; j += 2) { const ym = (p[j - 1] + p[j + 1]) / 2; d += "C" + p[j - 2] + " " + ym + " " + p[j] + " " + ym + " " + p[j] + " " + p[j + 1]; }
    }
    vp.querySelector("path.edges-hl").setAttribute("d", d);
    details(itemNode(state.items[i]));
  }

  function kvTable(rows) {
    const t = el("table");
    for (const [k, v] of rows) { if (v === null || v === undefined || v === "") continue; const tr = el("tr"); tr.append(el("td", null, k), el("td", null, v)); t.append(tr); }
    return t;
  }
  function details(n) {
    const box = $("details");
    while (box.firstChild) box.removeChild(box.firstChild);
    box.append(el("h3", { id: "details-title" }, n.name || n.id));
    if (n.kind === "input" || n.kind === "output") {
      box.append(kvTable([["graph " + n.kind, n.name], ["shape", n.shape], ["type", n.dtype]]));
      return;
    }
    if (n.kind === "block" && n.fold) {
      box.append(kvTable([["block", n.block], ["instances", n.count], ["nodes", n.members.length], ["MACs", count(n.macs)], ["FLOPs", count(n.flops)], ["params", count(n.params)], ["time", us(n.time_us)], ["share of time", pct(n.share)]]));
      const b = el("button", { id: "details-unfold" }, "unfold the " + n.count + " instances");
      b.addEventListener("click", () => { setView("collapsed"); const i = state.items.indexOf(D.collapsed.items[n.instances[0]]); if (i >= 0) { centerOn(i); select(i); } });
      box.append(b);
      return;
    }
    if (n.kind === "block") {
      if (n.tpl !== undefined) {
        const b = el("button", { id: "details-open" }, "open this instance");
        b.addEventListener("click", () => { setView("instance", n); });
        box.append(b);
      }
      box.append(kvTable([["block", n.block], ["instance", n.name], ["nodes", n.members.length], ["MACs", count(n.macs)], ["FLOPs", count(n.flops)], ["params", count(n.params)], ["time", us(n.time_us)], ["share of time", pct(n.share)]]));
      box.append(el("h4", null, "nodes"));
      box.append(kvTable(n.members.slice(0, 200).map((m) => [nodes[m].op, nodes[m].name || nodes[m].id])));
      return;
    }
    box.append(kvTable([["id", n.id], ["op", n.op + (n.domain && n.domain !== "ai.onnx" ? " (" + n.domain + ")" : "")], ["status", n.status], ["note", n.note]]));
    box.append(el("h4", null, "cost"));
    const nf = n.formulas || {};
    const fig = (key, v, fmt) => (v === null || v === undefined) && nf[key] ? nf[key] : fmt(v);
    box.append(kvTable([["MACs", fig("macs", n.macs, count)], ["FLOPs", fig("flops", n.flops, count)], ["params", count(n.params)], ["output bytes", fig("output_bytes", n.out_bytes, bytes)], ["intensity", n.intensity === null || n.intensity === undefined ? null : n.intensity.toFixed(2) + " FLOP/B"], ["bound", n.bound], ["roofline time", n.lower_us === null || n.lower_us === undefined ? null : us(n.lower_us)]]));
    if (n.time_us !== undefined) {
      box.append(el("h4", null, "measured"));
      box.append(kvTable(n.fused_into ? [["time", "fused into " + n.fused_into + " (its kernel's time is there)"]]
        : [["time", us(n.time_us)], ["share of time", pct(n.share)], ["achieved", n.achieved === null ? null : count(n.achieved, "FLOP/s")], ["fused with", (n.fused_with || []).join(", ")]]));
      if (n.gpu) {
        const g = n.gpu;
        box.append(el("h4", null, "CUDA execution"));
        box.append(kvTable([["kernels per run", g.kernel_count], ["host time", us(g.cpu_us)], ["launch overhead (host − GPU)", g.launch_overhead_us === null ? null : (g.launch_overhead_us < 0 ? "−" + us(-g.launch_overhead_us) : us(g.launch_overhead_us))], ["GPU idle before its kernels", us(g.idle_us)], ["launch to kernel start", us(g.launch_latency_us)]]));
      }
      if (n.kernels && n.kernels.length) {
        box.append(el("h4", null, "kernels / backend ops"));
        const launch = (k) => {
          const dims = (v) => (Array.isArray(v) ? v.join("×") : v);
          const parts = [];
          if (k.grid !== undefined) parts.push("grid " + dims(k.grid));
          if (k.block !== undefined) parts.push("block " + dims(k.block));
          if (k.registers_per_thread !== undefined) parts.push(k.registers_per_thread + " regs");
          if (k.shared_memory !== undefined) parts.push(bytes(k.shared_memory) + " smem");
          if (k.occupancy_pct !== undefined) parts.push("occupancy " + k.occupancy_pct + "%");
          return parts.length ? " [" + parts.join(", ") + "]" : "";
        };
        box.append(kvTable(n.kernels.map((k) => [us(k.time_us), k.name + launch(k)])));
      }
    }
    if (n.hw) {
      const h = n.hw;
      const ratio = (v) => (v === null || v === undefined ? null : Number(v).toPrecision(3));
      box.append(el("h4", null, "hardware counters (ncu" + (D.counters && D.counters.gpu ? ", " + D.counters.gpu : "") + ")"));
      box.append(kvTable([["kernels", h.kernels], ["GPU time", us(h.gpu_time_us)],
        ["FLOPs measured / static", count(h.flops) + " / " + count(h.static_flops) + (h.flops_ratio === null ? "" : " (" + ratio(h.flops_ratio) + ")")],
        ["tensor cores", h.tensor_core ? "yes: their work is not in the measured FLOPs" : "no"],
        ["DRAM bytes measured / static", bytes(h.dram_bytes) + " / " + bytes(h.static_bytes) + (h.bytes_ratio === null ? "" : " (" + ratio(h.bytes_ratio) + ")")],
        ["SM / memory throughput", pct100(h.sm_pct) + " / " + pct100(h.memory_pct)], ["achieved occupancy", pct100(h.occupancy_pct)],
        ["achieved", h.achieved_flops_per_s === null ? null : count(h.achieved_flops_per_s, "FLOP/s")],
        ["measured intensity", h.intensity === null ? null : Number(h.intensity).toFixed(2) + " FLOP/B"],
        ["attainable there", h.attainable_flops_per_s === null ? null : count(h.attainable_flops_per_s, "FLOP/s") + (h.roofline_share === null ? "" : " (" + pct(h.roofline_share) + " achieved)")],
        ["bound", h.bound]]));
    }
    if (n.div) {
      D.divergence.forEach((r, k) => {
        const d = n.div["div" + k];
        if (!d) return;
        box.append(el("h4", null, "error: " + r.backend + " vs " + r.reference));
        box.append(kvTable([["max abs", sci(d.max_abs)], ["max rel", sci(d.max_rel)], ["cosine", d.cosine === null ? null : Number(d.cosine).toFixed(6)], ["SNR", d.snr_db === null ? null : Number(d.snr_db).toFixed(1) + " dB"], ["outside tolerance", pct(d.outside_share)], ["NaN", d.nan], ["beyond tolerance", d.exceeds ? "yes" : "no"], ["introduced max abs", sci(d.introduced_max_abs)], ["introduced", d.introduced_note]]));
        if (d.oracle) {
          const errs = Object.entries(d.oracle.errors).map(([b, e]) => b + " " + sci(e)).join(", ");
          box.append(kvTable([["exact result (float64)", d.oracle.verdict], ["error against it", errs || null], ["computed by", d.oracle.method]]));
        }
      });
    }
    box.append(el("h4", null, "inputs"));
    box.append(kvTable(n.inputs.map(([x, s, kind]) => [x, s + (kind === "initializer" ? " (weight)" : "")])));
    box.append(el("h4", null, "outputs"));
    box.append(kvTable(n.outputs.map(([x, s]) => [x, s])));
    if (n.attrs.length) { box.append(el("h4", null, "attributes")); box.append(kvTable(n.attrs)); }
  }

  // ---- metric selector
  const msel = $("metric");
  for (const [k, label] of D.metrics) msel.append(el("option", { value: k }, label));
  state.metric = D.metrics.some((m) => m[0] === "time_us") ? "time_us" : D.metrics.some((m) => m[0] === "macs_at") ? "macs_at" : "macs";
  msel.value = state.metric;
  msel.addEventListener("change", () => { state.metric = msel.value; colour(); });

  // ---- search
  // every node of the graph is searched, whatever the view; a box is marked when it holds a match
  let searched = null;
  function applySearch() {
    const q = $("search").value.trim().toLowerCase();
    const hay = (x) => x && String(x).toLowerCase().includes(q);
    if (q !== searched) {
      searched = q; state.hits = []; state.matchAt = -1;
      if (q) for (let i = 0; i < nodes.length; i++) { const n = nodes[i]; if (hay(n.name) || hay(n.op) || hay(n.id) || hay(n.label)) state.hits.push(i); }
    }
    const hit = new Set(state.hits);
    state.matches = [];
    for (let i = 0; i < state.items.length; i++) {
      const it = state.items[i];
      const h = !!q && (typeof it === "number" ? hit.has(it) : hay(it.label) || hay(it.name) || it.members.some((m) => hit.has(m)));
      state.match[i] = h;
      decorate(i);
      if (h) state.matches.push(i);
    }
    $("search-count").textContent = q ? state.hits.length + (state.hits.length === 1 ? " match" : " matches") + (state.hits.length ? " (Enter: next)" : "") : "";
  }
  let searchTimer = 0;
  $("search").addEventListener("input", () => { clearTimeout(searchTimer); searchTimer = setTimeout(applySearch, 120); });
  $("search").addEventListener("keydown", (e) => {
    if (e.key !== "Enter") return;
    clearTimeout(searchTimer); applySearch();
    if (!state.hits.length) return;
    state.matchAt = (state.matchAt + 1) % state.hits.length;
    reveal(state.hits[state.matchAt]);
  });

  // ---- collapse
  const cbox = $("collapse");
  if (!D.collapsed) { cbox.disabled = true; $("collapse-label").title = "no repeated blocks found"; }
  else if (!D.layout) { cbox.disabled = true; $("collapse-label").title = "too large to draw whole: unfold the blocks, then open an instance"; }
  cbox.checked = state.view !== "full";
  cbox.addEventListener("change", () => setView(cbox.checked ? (D.folded ? "folded" : "collapsed") : "full"));
  $("unfold").addEventListener("click", () => setView(state.view === "folded" ? "collapsed" : "folded"));
  $("back").addEventListener("click", () => { const box = state.instance; setView("collapsed"); const i = state.items.indexOf(box); if (i >= 0) { centerOn(i); select(i); } });
  // double-click: a "×N" box unfolds, an instance opens
  vp.addEventListener("dblclick", (e) => {
    const i = nodeIndexOf(e.target);
    if (i < 0) return;
    const n = itemNode(state.items[i]);
    if (n.fold) { setView("collapsed"); const j = state.items.indexOf(D.collapsed.items[n.instances[0]]); if (j >= 0) { centerOn(j); select(j); } }
    else if (n.kind === "block" && n.tpl !== undefined) setView("instance", n);
  });

  // ------------------------------------------------------------------ sortable tables
  function sortableTable(container, columns, rows, opts) {
    opts = opts || {};
    const limit = opts.limit || Infinity;
    let sortCol = opts.sort === undefined ? -1 : opts.sort, desc = true, filter = "";
    const table = el("table", { class: "data" });
    const thead = el("thead"), tr = el("tr");
    columns.forEach((c, j) => {
      const th = el("th", { class: c.num ? "num" : "" }, c.label);
      th.addEventListener("click", () => { if (sortCol === j) desc = !desc; else { sortCol = j; desc = !!c.num; } draw(); });
      tr.append(th);
    });
    thead.append(tr); table.append(thead);
    const tbody = el("tbody"); table.append(tbody);
    container.append(table);
    function draw() {
      for (const [j, th] of Array.from(tr.children).entries()) { th.classList.toggle("sorted-asc", j === sortCol && !desc); th.classList.toggle("sorted-desc", j === sortCol && desc); }
      let rs = rows;
      if (filter) rs = rs.filter((r) => columns.some((c) => !c.num && String(c.get(r) ?? "").toLowerCase().includes(filter)));
      if (sortCol >= 0) {
        const c = columns[sortCol];
        rs = rs.slice().sort((a, b) => {
          const x = c.get(a), y = c.get(b);
          if (x === y) return 0;
          if (x === null || x === undefined) return 1;
          if (y === null || y === undefined) return -1;
          const r = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
          return desc ? -r : r;
        });
      }
      while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
      const frag = document.createDocumentFragment();
      for (const r of rs.slice(0, limit)) {
        const row = el("tr", opts.rowClass ? { class: opts.rowClass(r) } : null);
        for (const c of columns) row.append(el("td", { class: c.num ? "num" : c.cls || "" }, c.text ? c.text(r) : c.fmt ? c.fmt(c.get(r)) : c.get(r) ?? ""));
        if (opts.onClick) row.addEventListener("click", () => opts.onClick(r));
        frag.append(row);
      }
      tbody.append(frag);
      if (opts.status) opts.status(Math.min(limit, rs.length), rs.length);
    }
    draw();
    return { setFilter(f) { filter = f.toLowerCase(); draw(); } };
  }

  // op types keyed by domain and name (a Map: an op may be called "constructor" or "__proto__")
  function opKey(domain, op) { return (domain && domain !== "ai.onnx" ? domain : "") + "\u0000" + op; }
  function opLabel(key) { const [d, op] = key.split("\u0000"); return d ? op + " (" + d + ")" : op; }
  function timeByOp() {
    const time = new Map();
    for (const n of nodes) if (n.kind === "op" && typeof n.time_us === "number") time.set(opKey(n.domain, n.op), (time.get(opKey(n.domain, n.op)) || 0) + n.time_us);
    return time;
  }
  const timeOf = new Map();
  for (const n of nodes) if (n.time_us !== undefined) timeOf.set(n.id, n);
  const LAZY = {
    nodes() {
      const cols = [
        { label: "id", get: (r) => r[0] }, { label: "name", get: (r) => r[1], cls: "name" }, { label: "op", get: (r) => r[2] },
        { label: "status", get: (r) => r[3] }, { label: "MACs", get: (r) => r[4], num: true, fmt: (v) => count(v) },
        { label: "FLOPs", get: (r) => r[5], num: true, fmt: (v) => count(v) }, { label: "params", get: (r) => r[6], num: true, fmt: (v) => count(v) },
        { label: "output", get: (r) => r[7], num: true, fmt: bytes }, { label: "FLOP/B", get: (r) => r[8], num: true, fmt: (v) => (v === null ? "–" : v.toFixed(2)) },
      ];
      if (D.profile) cols.push({ label: "time", get: (r) => (timeOf.has(r[0]) ? timeOf.get(r[0]).time_us : null), num: true, fmt: us,
                                  text: (r) => (timeOf.has(r[0]) && timeOf.get(r[0]).fused_into ? "fused into " + timeOf.get(r[0]).fused_into : us(timeOf.has(r[0]) ? timeOf.get(r[0]).time_us : null)) },
                                { label: "share", get: (r) => (timeOf.has(r[0]) ? timeOf.get(r[0]).share : null), num: true, fmt: pct });
      D.divergence.forEach((rep, k) => {
        const get = (r) => { const n = nodeById.get(r[0]); return n && n.div && n.div["div" + k] ? n.div["div" + k].max_abs : null; };
        cols.push({ label: "err " + rep.backend, get, num: true, fmt: sci });
      });
      cols.push({ label: "in subgraph of", get: (r) => r[9] });
      const t = sortableTable($("node-table"), cols, D.table, { sort: D.profile ? 9 : 4, limit: 500,
        status: (n, all) => { $("node-rows").textContent = n < all ? "showing " + n + " of " + all + " (sort or filter for the others)" : all + " nodes"; },
        onClick: (r) => { const i = nodeById.has(r[0]) ? nodes.indexOf(nodeById.get(r[0])) : -1; if (i >= 0) { showTab("graph"); reveal(i); } } });
      let ft = 0;
      $("node-filter").addEventListener("input", (e) => { clearTimeout(ft); ft = setTimeout(() => t.setFilter(e.target.value.trim()), 150); });
    },
    optypes() {
      const time = timeByOp();
      const cols = [{ label: "op", get: (o) => o.op_type }, { label: "domain", get: (o) => o.domain || "ai.onnx" }, { label: "count", get: (o) => o.count, num: true },
        { label: "MACs", get: (o) => o.macs, num: true, fmt: (v) => count(v) }, { label: "share of MACs", get: (o) => o.share_macs, num: true, fmt: pct },
        { label: "FLOPs", get: (o) => o.flops, num: true, fmt: (v) => count(v) }, { label: "params", get: (o) => o.params, num: true, fmt: (v) => count(v) }];
      if (D.profile) cols.push({ label: "time", get: (o) => time.get(opKey(o.domain, o.op_type)) ?? null, num: true, fmt: us });
      sortableTable($("optype-table"), cols, D.op_types, { sort: 3 });
    },
    blocks() {
      if (!D.blocks.length) { $("block-table").append(el("p", { class: "hint" }, "No repeated blocks were found.")); return; }
      sortableTable($("block-table"), [{ label: "block", get: (b) => b.name, cls: "name" }, { label: "instances", get: (b) => b.count, num: true },
        { label: "nodes each", get: (b) => b.nodes_per_block, num: true }, { label: "MACs (all)", get: (b) => b.macs, num: true, fmt: (v) => count(v) },
        { label: "FLOPs (all)", get: (b) => b.flops, num: true, fmt: (v) => count(v) }, { label: "params (all)", get: (b) => b.params, num: true, fmt: (v) => count(v) },
        { label: "found by", get: (b) => b.found_by }, { label: "instances", get: (b) => b.instances.slice(0, 4).join(", ") + (b.instances.length > 4 ? ", …" : ""), cls: "name" }],
        D.blocks, { sort: 3 });
    },
    plots() { plots(); },
    divergence() { divergenceTab(); },
    runs() { runsTab(); },
    scenarios() { scenariosTab(); },
    model() { modelTab(); },
  };
  const nodeById = new Map();
  for (const n of nodes) nodeById.set(n.id, n);

  // ------------------------------------------------------------------ plots (Chart.js)
  function chartDefaults() {
    if (typeof Chart === "undefined") return false;
    Chart.defaults.animation = false;
    Chart.defaults.font.size = 11;
    return true;
  }
  function plots() {
    if (!chartDefaults()) return;
    const top = D.op_types.filter((o) => o.macs > 0).slice(0, 15);
    new Chart($("plot-macs"), { type: "bar", data: { labels: top.map((o) => o.op_type), datasets: [{ label: "MACs", data: top.map((o) => o.macs), backgroundColor: "#fc8a3a" }] },
      options: { indexAxis: "y", plugins: { legend: { display: false }, tooltip: { callbacks: { label: (c) => count(c.raw) + " MACs" } } }, scales: { x: { ticks: { callback: (v) => count(v) } } } } });
    const tops = Array.from(timeByOp().entries()).sort((a, b) => b[1] - a[1]).slice(0, 15).map(([k, v]) => [opLabel(k), v]);
    if (tops.length) {
      $("fig-time").hidden = false;
      new Chart($("plot-time"), { type: "bar", data: { labels: tops.map((t) => t[0]), datasets: [{ label: "time (µs)", data: tops.map((t) => t[1]), backgroundColor: "#1f6feb" }] },
        options: { indexAxis: "y", plugins: { legend: { display: false }, tooltip: { callbacks: { label: (c) => us(c.raw) } } }, scales: { x: { title: { display: true, text: "µs per run (median)" } } } } });
    }
    roofline();
    if (D.sweep && D.sweep.rows.length >= 2) {
      const s = D.sweep;
      $("fig-sweep").hidden = false;
      $("sweep-caption").textContent = "Totals against " + s.dim + " (exact formulas evaluated)";
      const line = (key, label, colour, axis) => ({ label: label, yAxisID: axis, borderColor: colour, backgroundColor: colour,
        data: s.rows.filter((r) => r[key] > 0).map((r) => ({ x: r[s.dim], y: r[key] })) });
      new Chart($("plot-sweep"), { type: "line", data: { datasets: [line("macs", "MACs", "#fc8a3a", "y"), line("flops", "FLOPs", "#e0382b", "y"),
        line("peak_activation_bytes", "peak activation bytes", "#1f6feb", "y2"), line("activation_bytes", "activation bytes", "#8250df", "y2")] },
        options: { parsing: false, scales: { x: { type: "logarithmic", title: { display: true, text: s.dim } },
          y: { type: "logarithmic", title: { display: true, text: "operations" }, ticks: { callback: (v) => count(v) } },
          y2: { type: "logarithmic", position: "right", title: { display: true, text: "bytes" }, ticks: { callback: (v) => bytes(v) }, grid: { drawOnChartArea: false } } } } });
    }
    const runs = (D.runs || []).filter((r) => r.status === "ok" && r.latency_ms);
    const batches = new Set(runs.map((r) => r.batch));
    if (batches.size >= 2) {
      $("fig-batch").hidden = false;
      const series = {};
      for (const r of runs) (series[r.backend + " (" + r.device + ")"] = series[r.backend + " (" + r.device + ")"] || []).push({ x: r.batch, y: r.latency_ms.p50 });
      const colours = ["#1f6feb", "#e0382b", "#2da44e", "#8250df", "#fc8a3a", "#57606a"];
      new Chart($("plot-batch"), { type: "line", data: { datasets: Object.entries(series).map(([k, pts], j) => ({ label: k, data: pts.sort((a, b) => a.x - b.x), borderColor: colours[j % colours.length], backgroundColor: colours[j % colours.length] })) },
        options: { parsing: false, scales: { x: { type: "linear", title: { display: true, text: "batch size" } }, y: { title: { display: true, text: "median latency (ms)" } } } } });
    }
  }

  function decade(v) { const l = Math.log10(v); return Math.abs(l - Math.round(l)) < 1e-9; }
  function roofline() {
    const c = D.counters;
    const r = D.roofline || (c && c.peak_flops_per_s && c.bandwidth_bytes_per_s
      ? { device: c.device || c.gpu, peak_flops: { fp32: c.peak_flops_per_s }, bandwidth_bytes_per_s: c.bandwidth_bytes_per_s } : null);
    const measured = nodes.filter((n) => n.kind === "op" && n.intensity > 0 && n.achieved > 0);
    const statics = nodes.filter((n) => n.kind === "op" && n.intensity > 0 && n.flops > 0);
    const counted = nodes.filter((n) => n.kind === "op" && n.hw && n.hw.intensity > 0 && n.hw.achieved_flops_per_s > 0);
    if (!r && !measured.length && !counted.length) return;
    $("fig-roofline").hidden = false;
    const datasets = [];
    let xs = statics.map((n) => n.intensity).concat(counted.map((n) => n.hw.intensity));
    if (!xs.length) xs = [0.1, 100];
    const xmin = Math.max(1e-3, Math.min(...xs) / 2), xmax = Math.max(...xs) * 2;
    if (r) {
      const peak = r.peak_flops.fp32 || Math.max(...Object.values(r.peak_flops)), bw = r.bandwidth_bytes_per_s, ridge = peak / bw;
      datasets.push({ type: "line", label: "roof: " + r.device, data: [{ x: Math.min(xmin, ridge / 10), y: Math.min(xmin, ridge / 10) * bw }, { x: ridge, y: peak }, { x: Math.max(xmax, ridge * 10), y: peak }], borderColor: "#1d232b", pointRadius: 0, borderWidth: 1.5 });
    }
    if (measured.length) {
      datasets.push({ type: "scatter", label: "nodes (measured FLOP/s)", data: measured.map((n) => ({ x: n.intensity, y: n.achieved, name: n.name || n.id, op: n.op })), backgroundColor: "rgba(224,56,43,.6)", pointRadius: 3 });
    } else if (r) {
      const peak = r.peak_flops.fp32 || Math.max(...Object.values(r.peak_flops)), bw = r.bandwidth_bytes_per_s;
      datasets.push({ type: "scatter", label: "nodes (attainable bound)", data: statics.map((n) => ({ x: n.intensity, y: Math.min(peak, n.intensity * bw), name: n.name || n.id, op: n.op })), backgroundColor: "rgba(31,111,235,.55)", pointRadius: 3 });
    }
    if (counted.length) {
      datasets.push({ type: "scatter", label: "nodes (ncu: measured intensity and FLOP/s)", data: counted.map((n) => ({ x: n.hw.intensity, y: n.hw.achieved_flops_per_s, name: n.name || n.id, op: n.op })), backgroundColor: "rgba(46,160,67,.7)", pointStyle: "triangle", pointRadius: 4 });
    }
    $("roofline-caption").textContent = "Roofline" + (r ? " of " + r.device : "") + (measured.length ? ": nodes at their measured FLOP/s" : ": nodes at the bound their arithmetic intensity allows") + (counted.length ? "; triangles: hardware counters (SIMT FLOPs per DRAM byte)" : "");
    new Chart($("plot-roofline"), { data: { datasets }, options: { parsing: true,
      plugins: { tooltip: { callbacks: { label: (c) => (c.raw.name ? c.raw.name + " (" + c.raw.op + "): " : "") + c.raw.x.toFixed(2) + " FLOP/B, " + count(c.raw.y, "FLOP/s") } } },
      scales: { x: { type: "logarithmic", title: { display: true, text: "arithmetic intensity (FLOP/byte)" }, ticks: { callback: (v) => (decade(v) ? String(v) : "") } },
                y: { type: "logarithmic", title: { display: true, text: "FLOP/s" }, ticks: { callback: (v) => (decade(v) ? count(v) : "") } } } } });
  }

  // ------------------------------------------------------------------ divergence, runs, model
  function divergenceTab() {
    const box = $("divergence-body");
    D.divergence.forEach((r, k) => {
      box.append(el("h3", null, r.backend + " vs " + r.reference + " (" + r.device + ", " + r.precision + ")"));
      const fd = r.first_divergent, fn = r.first_nan;
      const t = el("table", { class: "kv" });
      for (const [a, b] of [["tolerance", "|d| > " + r.atol + " + " + r.rtol + "·|ref|"], ["first divergent node", fd ? (fd.name || fd.id) + " (" + fd.op_type + ")" : "none: every tensor within tolerance"],
        ["first NaN", fn ? (fn.name || fn.id) + " (" + fn.op_type + ")" : null], ["compared tensors", r.compared_tensors], ["segments", r.segments]]) {
        if (b === null || b === undefined) continue;
        const tr = el("tr"); tr.append(el("td", null, a), el("td", null, b)); t.append(tr);
      }
      box.append(t);
      const rows = nodes.filter((n) => n.div && n.div["div" + k]).map((n) => ({ n, d: n.div["div" + k] }));
      const wrap = el("div", { class: "table-wrap" });
      box.append(wrap);
      sortableTable(wrap, [{ label: "id", get: (x) => x.n.id }, { label: "name", get: (x) => x.n.name, cls: "name" }, { label: "op", get: (x) => x.n.op },
        { label: "max abs", get: (x) => num(x.d.max_abs), num: true, fmt: sci }, { label: "max rel", get: (x) => num(x.d.max_rel), num: true, fmt: sci },
        { label: "cosine", get: (x) => x.d.cosine, num: true, fmt: (v) => (v === null ? "–" : Number(v).toFixed(6)) }, { label: "SNR dB", get: (x) => x.d.snr_db, num: true, fmt: (v) => (v === null ? "–" : Number(v).toFixed(1)) },
        { label: "introduced", get: (x) => num(x.d.introduced_max_abs), num: true, fmt: sci }, { label: "beyond tolerance", get: (x) => (x.d.exceeds ? "yes" : "no") },
        { label: "exact result says", get: (x) => (x.d.oracle ? x.d.oracle.verdict : "") }],
        rows, { sort: 7, limit: 500, rowClass: (x) => (x.d.exceeds ? "bad" : "") });
    });
  }
  function runsTab() {
    sortableTable($("run-table"), [{ label: "backend", get: (r) => r.backend }, { label: "device", get: (r) => r.device }, { label: "batch", get: (r) => r.batch, num: true },
      { label: "status", get: (r) => r.status }, { label: "p50 ms", get: (r) => (r.latency_ms ? r.latency_ms.p50 : null), num: true, fmt: sci },
      { label: "p90 ms", get: (r) => (r.latency_ms ? r.latency_ms.p90 : null), num: true, fmt: sci }, { label: "p99 ms", get: (r) => (r.latency_ms ? r.latency_ms.p99 : null), num: true, fmt: sci },
      { label: "throughput /s", get: (r) => r.throughput, num: true, fmt: sci }, { label: "max abs diff", get: (r) => r.max_abs_diff, num: true, fmt: sci },
      { label: "vs", get: (r) => r.compared_with },
      { label: "agree", get: (r) => (r.outputs_agree === true ? "yes" : r.outputs_agree === false ? `no: ${r.beyond_tolerance} elements` : "–") },
      { label: "error", get: (r) => r.error, cls: "name" }], D.runs || [], { rowClass: (r) => (r.outputs_agree === false ? "bad" : "") });
  }
  // one section per backend of `run --scenario`: LoadGen's verdict and figures, the latency
  // histogram (as the system under test saw each sample) and the samples/s over time
  function scenariosTab() {
    const box = $("scenario-body"), S = D.scenarios, st = S.settings || {};
    const ms = (v) => (v === null || v === undefined ? "–" : us(1000 * v));
    const pctName = (p) => (p === null || p === undefined ? "" : " at p" + sig3(100 * p));
    box.append(el("p", { class: "hint" }, "MLPerf LoadGen " + (st.loadgen || "") + ", " + st.scenario + ", PerformanceOnly, at least " + st.duration_s + " s; QSL of " + st.sample_count + " samples (inputs: " + st.inputs + "); the SUT batches up to " + st.max_batch + ". Percentiles are LoadGen's, per query; the histogram and the samples/s are what the system under test saw, from a query reaching it to its completion."));
    S.runs.forEach((r, k) => {
      const h3 = el("h3", null, r.backend + " (" + r.device + "): " + r.scenario + " ");
      h3.append(el("span", { class: "verdict " + (r.verdict === "VALID" ? "valid" : r.verdict === "INVALID" ? "invalid" : "other"), "data-verdict": r.verdict }, r.verdict));
      box.append(h3);
      const lat = r.latency_ms || {};
      const rows = [["result", r.verdict + (r.status === "ok" ? "" : ": " + r.error)], ["invalid because", (r.invalid_reasons || []).map((x) => x.replace(/\.$/, "")).join("; ") || null],
        ["target QPS", r.peak_qps !== null && r.peak_qps !== undefined ? "peak " + count(r.peak_qps) : r.target_qps === null ? null : count(r.target_qps)],
        ["samples/s", r.samples_per_s === null ? null : count(r.samples_per_s)],
        ["latency bound", r.latency_bound_ms === null ? null : ms(r.latency_bound_ms) + pctName(r.latency_percentile)],
        ["latency (per query)", Object.entries(lat).map(([p, v]) => p + " " + ms(v)).join(", ") || null],
        ["queries", r.query_count === null ? null : r.query_count + (r.overlatency_queries ? " (" + r.overlatency_queries + " over the bound)" : "")],
        ["batches", Object.entries(r.batches || {}).map(([b, n]) => n + "×" + b).join(", ") || null], ["early stopping", r.early_stopping || null]];
      const t = el("table", { class: "kv" });
      for (const [a, b] of rows) { if (b === null || b === undefined || b === "") continue; const tr = el("tr"); tr.append(el("td", null, a), el("td", null, b)); t.append(tr); }
      box.append(t);
      if (r.probes && r.probes.length) {
        const wrap = el("div", { class: "table-wrap" });
        box.append(wrap);
        sortableTable(wrap, [{ label: "target QPS", get: (p) => p.target_qps, num: true, fmt: (v) => count(v) }, { label: "result", get: (p) => (p.valid ? "VALID" : "INVALID") },
          { label: "samples/s", get: (p) => p.samples_per_s, num: true, fmt: (v) => count(v) }, { label: "latency" + pctName(r.latency_percentile), get: (p) => p.latency_ms, num: true, fmt: ms }], r.probes, {});
      }
      const grid = el("div", { class: "plots" });
      box.append(grid);
      const h = r.histogram, tl = r.timeline;
      if (h && h.counts && h.counts.length) grid.append(figure("Latency distribution of " + r.backend + " (samples, log-spaced bins)", "scenario-hist-" + k));
      if (tl && tl.samples_per_s && tl.samples_per_s.length) grid.append(figure("Samples/s over time of " + r.backend + " (bins of " + ms(1000 * tl.bin_s) + ")", "scenario-qps-" + k));
      if (!chartDefaults()) return;
      const vline = (x, top, label, colour, dash) => ({ label, data: [{ x, y: 0 }, { x, y: top }], borderColor: colour, backgroundColor: colour, borderDash: dash, pointRadius: 0, borderWidth: 1.5 });
      if (h && h.counts && h.counts.length) {
        const n = h.counts.length, top = Math.max(...h.counts, 1);
        const pts = h.counts.map((c, i) => ({ x: h.edges_ms[i], y: c })).concat([{ x: h.edges_ms[n], y: h.counts[n - 1] }]);
        const datasets = [{ label: "samples", data: pts, stepped: "before", fill: "origin", borderColor: "#1f6feb", backgroundColor: "rgba(31,111,235,.25)", pointRadius: 0, borderWidth: 1 }];
        if (typeof lat.p50 === "number") datasets.push(vline(lat.p50, top, "p50 " + ms(lat.p50), "#2da44e", [4, 3]));
        if (typeof lat.p99 === "number") datasets.push(vline(lat.p99, top, "p99 " + ms(lat.p99), "#8250df", [4, 3]));
        if (typeof r.latency_bound_ms === "number") datasets.push(vline(r.latency_bound_ms, top, "bound " + ms(r.latency_bound_ms) + pctName(r.latency_percentile), "#d1242f", []));
        new Chart($("scenario-hist-" + k), { type: "line", data: { datasets }, options: { parsing: false,
          plugins: { tooltip: { callbacks: { label: (c) => (c.datasetIndex === 0 ? ms(c.raw.x) + ": " + c.raw.y + " samples" : c.dataset.label) } } },
          scales: { x: { type: "logarithmic", title: { display: true, text: "latency (ms)" } }, y: { beginAtZero: true, title: { display: true, text: "samples" } } } } });
      }
      if (tl && tl.samples_per_s && tl.samples_per_s.length) {
        const pts = tl.samples_per_s.map((v, i) => ({ x: (i + 0.5) * tl.bin_s, y: v }));
        const datasets = [{ label: "completed samples/s", data: pts, borderColor: "#1f6feb", backgroundColor: "#1f6feb", pointRadius: 1.5, borderWidth: 1.5 }];
        const target = r.scenario === "Server" ? r.target_qps : null;
        if (typeof target === "number") datasets.push({ label: "target " + count(target) + " QPS", data: [{ x: 0, y: target }, { x: tl.samples_per_s.length * tl.bin_s, y: target }], borderColor: "#d1242f", backgroundColor: "#d1242f", borderDash: [4, 3], pointRadius: 0, borderWidth: 1.5 });
        new Chart($("scenario-qps-" + k), { type: "line", data: { datasets }, options: { parsing: false,
          scales: { x: { type: "linear", title: { display: true, text: "time from the test's start (s)" } }, y: { beginAtZero: true, title: { display: true, text: "samples/s" } } } } });
      }
    });
  }
  function figure(caption, id) {
    const f = el("figure");
    f.append(el("figcaption", null, caption), el("canvas", { id }));
    return f;
  }
  function modelTab() {
    const box = $("model-body"), m = D.model;
    box.append(el("h3", null, "Model"));
    const rows = [["name", m.name], ["graph", m.graph_name], ["producer", m.producer], ["IR version", m.ir_version], ["file", m.path], ["file size", m.file_bytes === null ? null : bytes(m.file_bytes)], ["external data", m.external_data_bytes ? bytes(m.external_data_bytes) : null]];
    const t = el("table", { class: "kv" });
    for (const [a, b] of rows) { if (b === null || b === undefined || b === "") continue; const tr = el("tr"); tr.append(el("td", null, a), el("td", null, b)); t.append(tr); }
    box.append(t);
    for (const [title, list] of [["Inputs", m.inputs], ["Outputs", m.outputs]]) {
      box.append(el("h3", null, title));
      const tt = el("table", { class: "kv" });
      for (const io of list) { const tr = el("tr"); tr.append(el("td", null, io.name), el("td", null, (io.dtype || "") + " " + JSON.stringify(io.shape))); tt.append(tr); }
      box.append(tt);
    }
    if (m.doc_string) { box.append(el("h3", null, "Doc string")); box.append(el("pre", null, m.doc_string)); }
    const meta = Object.entries(m.metadata || {});
    if (meta.length) { box.append(el("h3", null, "Metadata")); const tt = el("table", { class: "kv" }); for (const [a, b] of meta) { const tr = el("tr"); tr.append(el("td", null, a), el("td", null, b)); tt.append(tr); } box.append(tt); }
    if (D.warnings.length) { box.append(el("h3", null, "Warnings")); const ul = el("ul"); for (const w of D.warnings) ul.append(el("li", null, w)); box.append(ul); }
  }

  if (D.divergence.length) $("tab-divergence").hidden = false;
  if (D.runs && D.runs.length) $("tab-runs").hidden = false;
  if (D.scenarios && D.scenarios.runs.length) $("tab-scenarios").hidden = false;
  const t0 = performance.now();
  render();
  document.body.setAttribute("data-render-ms", String(Math.round(performance.now() - t0)));
  // time from navigation start to the first frame painted with the graph (tools/bench_report.py)
  requestAnimationFrame(() => requestAnimationFrame(() => document.body.setAttribute("data-painted-ms", String(Math.round(performance.now())))));
  document.body.setAttribute("data-ready", "1");
})();
