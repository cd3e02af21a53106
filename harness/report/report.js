/* bce-harness report: the interactive parts (explorer, plots, edge-case tables).
 *
 * Inlined into report.html. The data comes from the JSON island #report-data; every
 * string from it reaches the page through textContent or setAttribute, never through
 * innerHTML, so a case named with markup is shown as text. Nothing is fetched.
 */
(function () {
  "use strict";

  const D = JSON.parse(document.getElementById("report-data").textContent);
  const R = columns(D.results);
  const N = R.status.length;
  const SEV = D.severity;
  const NUMERIC = ["value", "grad.input", "grad.target", "grad.weight", "grad.pos_weight"];
  const SVGNS = "http://www.w3.org/2000/svg";
  const PAGE = 50;

  // ------------------------------------------------------------ helpers ----
  // The results travel compact (page_data.py): runs of results that share their
  // row, dtype, case and reduction; check, status and format as one character each; max
  // ulp and allowance only where a result has them ("ua"). Rebuilt here as columns.
  function columns(C) {
    const n = C.n;
    // plain arrays: a typed array's map() would turn what it maps to into numbers
    const out = { row: new Array(n), dtype: new Array(n), case: new Array(n), red: new Array(n),
      ulp: new Array(n), allow: new Array(n), detail: new Array(n).fill(-1) };
    let i = 0;
    C.runs.forEach(function (run) {
      for (let k = 0; k < run[4]; k++, i++) { out.row[i] = run[0]; out.dtype[i] = run[1]; out.case[i] = run[2]; out.red[i] = run[3]; }
    });
    const ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    ["check", "status", "mi"].forEach(function (k) {
      const col = C[k];
      if (typeof col !== "string") { out[k] = col; return; }
      const a = new Array(n);
      for (let j = 0; j < n; j++) a[j] = ALPHABET.indexOf(col.charAt(j));
      out[k] = a;
    });
    let u = 0, a = 0;
    for (let j = 0; j < n; j++) {
      const f = C.ua.charAt(j);
      out.ulp[j] = f === "1" || f === "2" ? C.ulp[u++] : null;
      out.allow[j] = f === "2" || f === "3" ? C.allow[a++] : null;
    }
    C.detailed.forEach(function (r, d) { out.detail[r] = d; });
    return out;
  }
  function arr(k) { return typeof k === "number" ? (k >= 0 ? D.arrays[k] : null) : k; }
  function num(v) {
    if (v === null || v === undefined) return null;
    if (typeof v === "number") return v;
    if (v === "nan") return NaN;
    if (v === "inf") return Infinity;
    if (v === "-inf") return -Infinity;
    return null;
  }
  function fmt(v, digits) {
    const f = num(v);
    if (f === null) return "—";
    if (Number.isNaN(f)) return "NaN";
    if (f === Infinity) return "∞";
    if (f === -Infinity) return "−∞";
    if (f === 0) return Object.is(f, -0) ? "−0" : "0";
    if (Number.isInteger(f) && Math.abs(f) < 1e6) return String(f);
    const s = f.toPrecision(digits || 3);
    return s.includes("e") ? s.replace(/\.?0+e/, "e").replace("e+", "e") : s.replace(/(\.\d*?)0+$/, "$1").replace(/\.$/, "");
  }
  function el(tag, attrs) {
    const e = document.createElement(tag);
    if (attrs) {
      for (const k of Object.keys(attrs)) {
        const v = attrs[k];
        if (v === null || v === undefined || v === false) continue;
        if (k === "class") e.className = v;
        else if (k === "text") e.textContent = v;
        else if (k.slice(0, 2) === "on") e.addEventListener(k.slice(2), v);
        else e.setAttribute(k, v === true ? "" : String(v));
      }
    }
    for (let i = 2; i < arguments.length; i++) append(e, arguments[i]);
    return e;
  }
  function append(parent, kid) {
    if (kid === null || kid === undefined || kid === false) return;
    if (Array.isArray(kid)) { kid.forEach(function (k) { append(parent, k); }); return; }
    parent.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  function svg(tag, attrs) {
    const e = document.createElementNS(SVGNS, tag);
    for (const k of Object.keys(attrs || {})) {
      if (k === "text") e.textContent = attrs[k];
      else e.setAttribute(k, String(attrs[k]));
    }
    return e;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
  function option(value, label, selected) {
    const o = el("option", { value: value, text: label });
    if (selected) o.selected = true;
    return o;
  }
  function uniq(xs) { return Array.from(new Set(xs)); }
  function rowName(ri) { const r = D.rows[ri]; return r[0] + "/" + r[1] + " @ " + r[2]; }
  function statusOf(i) { return D.statuses[R.status[i]]; }
  function detailOf(i) { const d = R.detail[i]; return d >= 0 ? D.details[d] : null; }
  // Python's repr of a float, and its "%.3g": the judge's words, written here when the page
  // left a message out because the detail's numbers say it (page_data.py _detail)
  function pyRepr(v) {
    if (typeof v !== "number") return String(v);
    if (Number.isNaN(v)) return "nan";
    if (!Number.isFinite(v)) return v > 0 ? "inf" : "-inf";
    if (v === 0) return Object.is(v, -0) ? "-0.0" : "0.0";
    const m = v.toExponential().match(/^(-?)(\d)(?:\.(\d+))?e([+-]\d+)$/);
    const sign = m[1], digits = m[2] + (m[3] || ""), exp = Number(m[4]);
    if (exp < -4 || exp >= 16) {
      const mant = digits.length > 1 ? digits[0] + "." + digits.slice(1) : digits;
      return sign + mant + "e" + (exp < 0 ? "-" : "+") + String(Math.abs(exp)).padStart(2, "0");
    }
    if (exp < 0) return sign + "0." + "0".repeat(-exp - 1) + digits;
    if (digits.length <= exp + 1) return sign + digits + "0".repeat(exp + 1 - digits.length) + ".0";
    return sign + digits.slice(0, exp + 1) + "." + digits.slice(exp + 1);
  }
  function pyG3(v) {
    const f = num(v);
    if (f === null) return String(v);
    if (Number.isNaN(f)) return "nan";
    if (!Number.isFinite(f)) return f > 0 ? "inf" : "-inf";
    if (f === 0) return Object.is(f, -0) ? "-0" : "0";
    const m = f.toExponential(2).match(/^(-?)(\d)\.(\d+)e([+-]\d+)$/);
    const exp = Number(m[4]);
    if (exp < -4 || exp >= 3) {
      const mant = (m[2] + "." + m[3]).replace(/\.?0+$/, "");
      return m[1] + mant + "e" + (exp < 0 ? "-" : "+") + String(Math.abs(exp)).padStart(2, "0");
    }
    return f.toFixed(Math.max(0, 2 - exp)).replace(/(\.\d*?)0+$/, "$1").replace(/\.$/, "");
  }
  // A detail's worst element as the page data stores it: its arguments are an index
  // into D.inputs, and its condition number is the record's unless it says otherwise.
  function worstOf(d) {
    const w = d && d.w;
    if (!w) return w;
    return Object.assign({}, w, { in: typeof w.in === "number" ? D.inputs[w.in] : w.in,
                                  c: w.c === undefined ? d.c : w.c });
  }
  function composed(i, d) {
    const w = worstOf(d);
    if (!w) return "";
    const idx = "[" + (w.i || []).join(", ") + "]";
    if (d.f) {
      return d.f + " of " + d.el + " element(s) beyond the allowance; worst at " + idx + ": got " + pyRepr(w.g) +
        ", expected " + pyRepr(w.e) + " (" + pyG3(w.u) + " ulp > " + pyG3(w.a) + " allowed)";
    }
    return "max " + pyG3(R.ulp[i]) + " ulp (" + D.measured[R.mi[i]] + ") at " + idx + ": got " + pyRepr(w.g) +
      ", expected " + pyRepr(w.e) + ", " + pyG3(w.a) + " ulp allowed there";
  }
  const messages = [];
  function textOf(i, d) {
    if (!d) return "";
    if (typeof d.m === "number") return D.messages[d.m];
    if (messages[i] === undefined) messages[i] = composed(i, d);
    return messages[i];
  }
  const sevRank = D.statuses.map(function (s) { const k = SEV.indexOf(s); return k < 0 ? 99 : k; });
  const ratio = new Float64Array(N);
  for (let i = 0; i < N; i++) {
    const u = num(R.ulp[i]), a = num(R.allow[i]);
    if (u === null) ratio[i] = -1;
    else if (Number.isNaN(u)) ratio[i] = Infinity;
    else if (u === 0) ratio[i] = 0;
    else if (a === null || !a || Number.isNaN(a)) ratio[i] = u;
    else ratio[i] = u / a;
  }
  const caseLower = D.cases.map(function (c) { return c.toLowerCase(); });

  // ----------------------------------------------------------- explorer ----
  const present = new Set(R.status.map(function (s) { return D.statuses[s]; }));
  // by default the results that ask for attention: unexpected, known and fixed; else
  // any non-pass; else everything
  const notPass = Array.from(present).filter(function (s) { return s !== "pass"; });
  const attention = notPass.filter(function (s) { return s !== "unsupported" && s !== "skipped"; });
  const defaults = attention.length ? attention : notPass.length ? notPass : Array.from(present);
  const state = {
    statuses: new Set(defaults),
    backend: "", impl: "", device: "", dtype: "", check: "", red: "", text: "",
    sort: "severity", page: 0, open: new Set(),
  };
  const ui = {};
  let filtered = [];

  function buildExplorer() {
    const root = document.getElementById("explorer");
    if (!root) return;
    const counts = {};
    for (let i = 0; i < N; i++) counts[statusOf(i)] = (counts[statusOf(i)] || 0) + 1;
    const chips = el("fieldset", { class: "status-chips" }, el("legend", { text: "status" }));
    ui.chips = {};
    SEV.filter(function (s) { return counts[s]; }).forEach(function (s) {
      const box = el("input", { type: "checkbox", "data-status": s });
      box.checked = state.statuses.has(s);
      box.addEventListener("change", function () {
        if (box.checked) state.statuses.add(s); else state.statuses.delete(s);
        state.page = 0; refresh();
      });
      ui.chips[s] = box;
      chips.append(el("label", { class: "chip s-" + s }, box, s + " " + counts[s]));
    });
    function select(name, label, values, labeller) {
      const s = el("select", { name: name, "data-filter": name });
      s.append(option("", "all"));
      values.forEach(function (v) { s.append(option(v, labeller ? labeller(v) : v)); });
      s.addEventListener("change", function () {
        state[name] = s.value;
        if (name === "backend") { state.impl = ""; fillImpl(); }
        state.page = 0; refresh();
      });
      ui[name] = s;
      return el("label", null, label, s);
    }
    const backends = uniq(D.rows.map(function (r) { return r[0]; }));
    const devices = uniq(D.rows.map(function (r) { return r[2]; }));
    ui.text = el("input", { type: "search", placeholder: "case name or message", "data-filter": "text" });
    let timer = null;
    ui.text.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () { state.text = ui.text.value.trim().toLowerCase(); state.page = 0; refresh(); }, 150);
    });
    ui.sort = el("select", { name: "sort", "data-filter": "sort" },
      option("severity", "severity (worst first)", true), option("ratio", "ulp / allowance"),
      option("ulp", "max ulp"), option("case", "case name"));
    ui.sort.addEventListener("change", function () { state.sort = ui.sort.value; state.page = 0; refresh(); });
    const reset = el("button", { type: "button", class: "plain", text: "reset filters" });
    reset.addEventListener("click", function () { setFilters({}, defaults); });
    root.append(el("div", { class: "filters" }, chips,
      select("backend", "backend", backends), select("impl", "implementation", []),
      select("device", "device", devices), select("dtype", "dtype", D.dtypes),
      select("check", "check", D.checks), select("red", "reduction", D.reductions),
      el("label", null, "search", ui.text), el("label", null, "sort by", ui.sort), reset));
    fillImpl();
    ui.pagerTop = el("div", { class: "pager" });
    ui.table = el("table", { class: "results" });
    ui.pagerBottom = el("div", { class: "pager" });
    root.append(ui.pagerTop, ui.table, ui.pagerBottom);
    refresh();
  }

  function fillImpl() {
    const s = ui.impl;
    clear(s).append(option("", "all"));
    uniq(D.rows.filter(function (r) { return !state.backend || r[0] === state.backend; })
      .map(function (r) { return r[1]; })).forEach(function (v) { s.append(option(v, v, v === state.impl)); });
  }

  function setFilters(f, statuses) {
    ["backend", "impl", "device", "dtype", "check", "red"].forEach(function (k) { state[k] = f[k] || ""; });
    state.text = ""; state.page = 0; state.open.clear();
    if (statuses) state.statuses = new Set(statuses);
    if (!ui.table) return;
    ui.text.value = "";
    ui.backend.value = state.backend; fillImpl();
    ["impl", "device", "dtype", "check", "red"].forEach(function (k) { ui[k].value = state[k]; });
    Object.keys(ui.chips).forEach(function (s) { ui.chips[s].checked = state.statuses.has(s); });
    refresh();
  }

  function matches(i) {
    if (!state.statuses.has(statusOf(i))) return false;
    const row = D.rows[R.row[i]];
    if (state.backend && row[0] !== state.backend) return false;
    if (state.impl && row[1] !== state.impl) return false;
    if (state.device && row[2] !== state.device) return false;
    if (state.dtype && D.dtypes[R.dtype[i]] !== state.dtype) return false;
    if (state.check && D.checks[R.check[i]] !== state.check) return false;
    if (state.red && D.reductions[R.red[i]] !== state.red) return false;
    if (state.text) {
      if (caseLower[R.case[i]].indexOf(state.text) >= 0) return true;
      const d = detailOf(i);
      return !!(d && textOf(i, d).toLowerCase().indexOf(state.text) >= 0);
    }
    return true;
  }

  function sortKey() {
    const u = function (i) { const f = num(R.ulp[i]); return f === null ? -1 : (Number.isNaN(f) ? Infinity : f); };
    if (state.sort === "ulp") return function (a, b) { return u(b) - u(a) || a - b; };
    if (state.sort === "ratio") return function (a, b) { return (ratio[b] - ratio[a]) || a - b; };
    if (state.sort === "case") {
      return function (a, b) {
        const ca = D.cases[R.case[a]], cb = D.cases[R.case[b]];
        return ca < cb ? -1 : ca > cb ? 1 : a - b;
      };
    }
    return function (a, b) {
      return (sevRank[R.status[a]] - sevRank[R.status[b]]) || (ratio[b] - ratio[a]) || (u(b) - u(a)) || a - b;
    };
  }

  function refresh() {
    filtered = [];
    for (let i = 0; i < N; i++) if (matches(i)) filtered.push(i);
    const cmp = sortKey();
    filtered.sort(function (a, b) {
      const r = cmp(a, b);
      return Number.isNaN(r) ? 0 : r;
    });
    renderPage();
  }

  function pager(node) {
    clear(node);
    const pages = Math.max(1, Math.ceil(filtered.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    const prev = el("button", { type: "button", class: "plain", text: "‹ previous" });
    const next = el("button", { type: "button", class: "plain", text: "next ›" });
    prev.disabled = state.page === 0;
    next.disabled = state.page >= pages - 1;
    prev.addEventListener("click", function () { state.page--; renderPage(); });
    next.addEventListener("click", function () { state.page++; renderPage(); });
    const from = filtered.length ? state.page * PAGE + 1 : 0;
    const to = Math.min(filtered.length, (state.page + 1) * PAGE);
    node.append(el("span", { class: "match-count", text: filtered.length + " of " + N + " results match" }),
      prev, el("span", { class: "muted", text: from + "–" + to + " (page " + (state.page + 1) + " of " + pages + ")" }), next);
  }

  function renderPage() {
    pager(ui.pagerTop); pager(ui.pagerBottom);
    const t = clear(ui.table);
    t.append(el("thead", null, el("tr", null,
      ["status", "backend/implementation @ device", "dtype", "case", "reduction", "check"].map(function (h) { return el("th", { text: h }); }),
      el("th", { class: "num", text: "max ulp" }), el("th", { class: "num", text: "allowance" }), el("th", { text: "message" }))));
    const body = el("tbody");
    const slice = filtered.slice(state.page * PAGE, (state.page + 1) * PAGE);
    if (!slice.length) body.append(el("tr", null, el("td", { colspan: 9, class: "muted", text: "No result matches these filters." })));
    slice.forEach(function (i) {
      const s = statusOf(i);
      const d = detailOf(i);
      const r = ratio[i];
      const bar = r > 0 ? el("span", { class: "ratio" + (r > 1 ? " over" : ""), style: "width:" + Math.min(4, 0.3 + Math.log10(1 + r) * 1.5).toFixed(2) + "rem", title: "ulp / allowance = " + fmt(r) }) : null;
      const tr = el("tr", { class: "row", "data-index": i, tabindex: 0 },
        el("td", { class: "status s-" + s, text: s }),
        el("td", { text: rowName(R.row[i]) }),
        el("td", { text: D.dtypes[R.dtype[i]] }),
        el("td", { class: "mono case-name", text: D.cases[R.case[i]], title: D.cases[R.case[i]] }),
        el("td", { text: D.reductions[R.red[i]] }),
        el("td", { text: D.checks[R.check[i]] }),
        el("td", { class: "num" }, fmt(R.ulp[i]), bar),
        el("td", { class: "num", text: fmt(R.allow[i]) }),
        el("td", { class: "msg", text: messageOf(i, d), title: messageOf(i, d) }));
      function toggle() {
        if (state.open.has(i)) state.open.delete(i); else state.open.add(i);
        renderPage();
      }
      tr.addEventListener("click", toggle);
      tr.addEventListener("keydown", function (ev) { if (ev.key === "Enter") toggle(); });
      body.append(tr);
      if (state.open.has(i)) body.append(el("tr", { class: "detail" }, el("td", { colspan: 9 }, detailView(i, d))));
    });
    t.append(body);
  }

  function messageOf(i, d) {
    if (d && textOf(i, d)) return textOf(i, d);
    if (statusOf(i) === "pass" && R.ulp[i] !== null) {
      const mi = D.measured[R.mi[i]];
      return "max " + fmt(R.ulp[i]) + " ulp" + (mi ? " (" + mi + ")" : "");
    }
    return d ? "" : "(details not embedded; see report.json)";
  }

  function detailView(i, d) {
    const box = el("div", { class: "detail-view" });
    const meta = D.case_meta[R.case[i]] || {};
    const kv = el("dl", { class: "kv" });
    function add(k, v) { if (v !== null && v !== undefined && v !== "") kv.append(el("dt", { text: k }), el("dd", null, v)); }
    add("message", d && textOf(i, d) ? el("span", { style: "white-space:pre-wrap", text: textOf(i, d) }) : messageOf(i, d));
    add("case", el("span", null, el("code", { text: D.cases[R.case[i]] }), meta.description ? " — " + meta.description : ""));
    add("source", (d && d.src) || meta.source);
    if (meta.shape) add("input shape", "[" + meta.shape.join(", ") + "]");
    add("max ulp", R.ulp[i] === null ? null : fmt(R.ulp[i], 4));
    add("allowance at the worst element", R.allow[i] === null ? null : fmt(R.allow[i], 4) + " ulp");
    if (d) {
      add("condition number", d.c === undefined ? null : fmt(d.c, 4));
      add("measured in", D.measured[R.mi[i]]);
      add("elements", d.el);
      add("kind", d.kd);
      add("call duration", d.t === undefined ? null : fmt(d.t * 1000, 3) + " ms");
      if (d.k && d.k.length) {
        const notes = d.k.map(function (n) { return D.notes[n]; });
        const kinds = uniq(notes.map(function (n) { return n.kind; })).join(" + ");
        const reasons = uniq(notes.map(function (n) { return n.reason; })).join(" | ");
        const up = (notes.find(function (n) { return n.upstream; }) || {}).upstream;
        const entry = notes.map(function (n) { return n.id; }).join(", ");
        const issue = up && /^https?:\/\//.test(up) ? el("a", { href: up, text: up, rel: "noreferrer" }) : up;
        add("expectation", el("span", null, (kinds || "") + ": " + (reasons || ""), issue ? el("br") : null, issue,
          entry ? el("span", { class: "muted", text: " (" + entry + ")" }) : null));
      }
    } else {
      add("details", "not embedded in this page (large report): see report.json");
    }
    box.append(kv);
    if (d && d.w) {
      const w = worstOf(d);
      const keys = ["input", "target", "weight", "pos_weight"].filter(function (k) { return w.in && w.in[k] !== null && w.in[k] !== undefined; });
      box.append(el("h4", { text: "Worst element" }), el("table", null,
        el("thead", null, el("tr", null, el("th", { text: "index" }), keys.map(function (k) { return el("th", { text: k }); }),
          el("th", { class: "num", text: "expected (exact)" }), el("th", { class: "num", text: "got" }),
          el("th", { class: "num", text: "ulp" }), el("th", { class: "num", text: "allowance" }), el("th", { class: "num", text: "cond" }))),
        el("tbody", null, el("tr", null, el("td", { class: "mono", text: "[" + (w.i || []).join(", ") + "]" }),
          keys.map(function (k) { const v = w.in[k]; return el("td", { class: "mono", text: typeof v === "string" && num(v) === null ? v : fmt(v, 17) }); }),
          el("td", { class: "num mono", text: fmt(w.e, 17) }), el("td", { class: "num mono", text: fmt(w.g, 17) }),
          el("td", { class: "num", text: fmt(w.u, 4) }), el("td", { class: "num", text: fmt(w.a, 4) }), el("td", { class: "num", text: fmt(w.c, 4) })))));
    }
    const vg = d && d.v ? arr(d.v.g) : null, ve = d && d.v ? arr(d.v.e) || [] : [];
    if (vg && vg.length) {
      const tb = el("tbody");
      vg.forEach(function (g, k) {
        const e = ve[k];
        tb.append(el("tr", null, el("td", { class: "num", text: k }), el("td", { class: "num mono", text: fmt(e, 8) }),
          el("td", { class: "num mono" + (differs(num(g), num(e), D.measured[R.mi[i]] || D.dtypes[R.dtype[i]]) ? " mark" : ""), text: fmt(g, 8) })));
      });
      box.append(el("h4", { text: "All values" }), el("table", { class: "vals" },
        el("thead", null, el("tr", null, el("th", { text: "element" }), el("th", { class: "num", text: "expected" }), el("th", { class: "num", text: "got" }))), tb));
    }
    const code = el("pre", { class: "repro", text: repro(i, d) });
    const copy = el("button", { type: "button", class: "plain copy", text: "copy" });
    copy.addEventListener("click", function (ev) {
      ev.stopPropagation();
      const done = function () { copy.textContent = "copied"; };
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(code.textContent).then(done, function () { selectText(code); });
      } else selectText(code);
    });
    box.append(el("h4", null, "Reproduce", copy), code);
    box.addEventListener("click", function (ev) { ev.stopPropagation(); });
    return box;
  }

  function selectText(node) {
    const range = document.createRange();
    range.selectNodeContents(node);
    const sel = window.getSelection();
    sel.removeAllRanges(); sel.addRange(range);
  }

  // largest finite value and subnormal spacing per format: a result that overflowed or
  // underflowed exactly as correct rounding would is not marked
  const LIMITS = { float16: [65504, Math.pow(2, -24)], bfloat16: [3.3895313892515355e38, Math.pow(2, -133)],
    float32: [3.4028234663852886e38, Math.pow(2, -149)], float64: [Number.MAX_VALUE, Number.MIN_VALUE] };
  function differs(g, e, dtype) {
    if (g === null || e === null) return g !== e;
    if (Number.isNaN(g) || Number.isNaN(e)) return Number.isNaN(g) !== Number.isNaN(e);
    const lim = LIMITS[dtype] || LIMITS.float64;
    if (!Number.isFinite(g) && Number.isFinite(e)) return !(Math.abs(e) > lim[0] && (g > 0) === (e > 0));
    if (!Number.isFinite(g) || !Number.isFinite(e)) return g !== e;
    if (g === e || Math.abs(g - e) <= lim[1]) return false;
    if ((g < 0) !== (e < 0) && g !== 0 && e !== 0) return true;
    return Math.abs(g - e) > 0.01 * Math.max(Math.abs(e), Math.abs(g));
  }

  // ------------------------------------------------------ reproductions ----
  function isScalar(v) { return typeof v === "number" || v === "nan" || v === "inf" || v === "-inf"; }
  function pyNum(v) {
    if (v === "nan") return "np.nan";
    if (v === "inf") return "np.inf";
    if (v === "-inf") return "-np.inf";
    let s = String(v);
    if (/^-?\d+$/.test(s)) s += ".0";
    return s;
  }
  function pyArr(v) { return v === null || v === undefined ? "None" : "np.array([" + pyNum(v) + "])"; }
  function pyStr(s) { return JSON.stringify(String(s)); }
  function shq(s) {
    s = String(s);
    return /^[A-Za-z0-9_.\/:=@+,-]+$/.test(s) ? s : "'" + s.replace(/'/g, "'\\''") + "'";
  }

  function repro(i, d) {
    if (d && d.rp) return d.rp;
    const row = D.rows[R.row[i]];
    const backend = row[0], impl = row[1], device = row[2];
    const dtype = D.dtypes[R.dtype[i]], check = D.checks[R.check[i]], red = D.reductions[R.red[i]];
    const caseName = D.cases[R.case[i]];
    const origin = D.origins[backend] || "";
    const plugin = origin.indexOf("--plugin ") === 0 ? origin.slice(9) : null;
    const w = worstOf(d);
    if (w && w.in && isScalar(w.in.input) && isScalar(w.in.target) && NUMERIC.indexOf(check) >= 0) {
      const grad = check.indexOf("grad.") === 0 ? check.slice(5) : null;
      const r = grad && red !== "none" ? "sum" : red;
      const lines = [
        "# " + backend + "/" + impl + " on " + device + ", " + dtype + ": the worst element of " + check +
          " in case " + JSON.stringify(caseName) + " (reduction " + red + ")",
      ];
      if (grad && red === "mean") lines.push("# one element with reduction 'sum': the gradient of the mean is this divided by the element count");
      lines.push(
        "import numpy as np",
        "from harness import reference",
        "from harness.protocol import Call",
        "from harness.run.registry import discover",
        "",
        "backend = next(b.backend for b in discover(" + (plugin ? "[" + pyStr(plugin) + "]" : "") + ") if b.name == " + pyStr(backend) + ")",
        "call = Call(implementation=" + pyStr(impl) + ", device=" + pyStr(device) + ", dtype=" + pyStr(dtype) + ",",
        "            input=" + pyArr(w.in.input) + ", target=" + pyArr(w.in.target) + ",",
        "            weight=" + pyArr(w.in.weight) + ", pos_weight=" + pyArr(w.in.pos_weight) + ",",
        "            reduction=" + pyStr(r) + ", grads=" + (grad ? "(" + pyStr(grad) + ",)" : "()") + ")",
        "result = backend.run(call)",
        "args = (call.input, call.target, call.weight, call.pos_weight, call.reduction)",
        grad ? "print(\"got     \", result.grads[" + pyStr(grad) + "])" : "print(\"got     \", result.value)",
        grad ? "print(\"expected\", reference.grads(*args)[" + pyStr(grad) + "])" : "print(\"expected\", reference.loss(*args))");
      return lines.join("\n");
    }
    const meta = D.case_meta[R.case[i]] || {};
    const src = (d && d.src) || meta.source || "";
    const file = src.replace(/:\d+$/, "");
    const parts = ["python", "-m", "harness", "report"];
    if (plugin) parts.push("--plugin", plugin);
    if (file && /\.ya?ml$/i.test(file)) parts.push("--cases", file);
    else if (D.run && D.run.examples) parts.push("--examples", D.run.examples, "--seed", D.run.seed);
    else if (file) parts.push("--cases", file);
    parts.push("--backend", backend, "--dtype", dtype, "--device", device, "--out", "repro");
    return "# " + (w ? "a reduced result: its worst element is a sum over many, so re-run the case"
      : "re-run the case") + "\n# then look for case " + JSON.stringify(caseName) + ", reduction " + red +
      ", check " + check + " (" + impl + ") in repro/report.html\n" + parts.map(shq).join(" ");
  }

  // ----------------------------------------------------- page wiring ----
  function wire() {
    document.querySelectorAll("#matrix button.count").forEach(function (b) {
      b.addEventListener("click", function (ev) {
        ev.stopPropagation();
        const row = D.rows[Number(b.getAttribute("data-row"))];
        setFilters({ backend: row[0], impl: row[1], device: row[2], dtype: b.getAttribute("data-dtype") }, [b.getAttribute("data-status")]);
        document.getElementById("results").scrollIntoView();
      });
    });
    document.querySelectorAll("#matrix td.cell[data-row]").forEach(function (td) {
      td.addEventListener("click", function () {
        const ri = Number(td.getAttribute("data-row"));
        const row = D.rows[ri];
        const cell = (D.matrix[String(ri)] || {})[td.getAttribute("data-dtype")] || { counts: {} };
        const sts = Object.keys(cell.counts).filter(function (s) { return s !== "pass"; });
        setFilters({ backend: row[0], impl: row[1], device: row[2], dtype: td.getAttribute("data-dtype") }, sts.length ? sts : ["pass"]);
        document.getElementById("results").scrollIntoView();
      });
    });
    document.querySelectorAll("#badges button[data-status]").forEach(function (b) {
      b.addEventListener("click", function () {
        setFilters({}, [b.getAttribute("data-status")]);
        document.getElementById("results").scrollIntoView();
      });
    });
  }

  // -------------------------------------------------------------- plots ----
  const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
    "#e377c2", "#7f7f7f", "#bcbd22", "#393b79", "#ad494a", "#637939", "#7b4173", "#3182bd", "#e6550d"];
  const plotState = { hidden: new Set(), caseIdx: null, check: null };
  const profRows = uniq(D.profiles.map(function (p) { return p.row; })).sort(function (a, b) { return a - b; });
  function colour(ri) { return PALETTE[profRows.indexOf(ri) % PALETTE.length]; }

  function buildPlots() {
    const area = document.getElementById("plot-area");
    if (!area || !D.profiles.length) return;
    clear(area);
    const caseIds = uniq(D.profiles.map(function (p) { return p.case; }));
    const caseSel = el("select", { "data-plot": "case" });
    caseIds.forEach(function (c) { caseSel.append(option(c, D.cases[c])); });
    const checkSel = el("select", { "data-plot": "check" });
    function fillChecks() {
      const cs = uniq(D.profiles.filter(function (p) { return p.case === plotState.caseIdx; }).map(function (p) { return p.check; }));
      clear(checkSel);
      cs.forEach(function (c) { checkSel.append(option(c, D.checks[c], c === plotState.check)); });
      if (cs.indexOf(plotState.check) < 0) plotState.check = cs[0];
      checkSel.value = String(plotState.check);
    }
    plotState.caseIdx = caseIds[0];
    const valueCheck = D.checks.indexOf("value");
    plotState.check = valueCheck;
    caseSel.addEventListener("change", function () { plotState.caseIdx = Number(caseSel.value); fillChecks(); drawPlots(); });
    checkSel.addEventListener("change", function () { plotState.check = Number(checkSel.value); drawPlots(); });
    fillChecks();
    const desc = el("span", { class: "muted small", id: "plot-case-desc" });
    area.append(el("div", { class: "filters" }, el("label", null, "sweep case", caseSel), el("label", null, "check", checkSel), desc));
    area.append(el("div", { class: "series-legend", id: "plot-legend" }), el("div", { class: "plots", id: "plot-panels" }));
    drawPlots();
  }

  function drawPlots() {
    const sel = D.profiles.filter(function (p) { return p.case === plotState.caseIdx && p.check === plotState.check; });
    const meta = D.case_meta[plotState.caseIdx] || {};
    document.getElementById("plot-case-desc").textContent = meta.description || "";
    const legend = clear(document.getElementById("plot-legend"));
    uniq(sel.map(function (p) { return p.row; })).sort(function (a, b) { return a - b; }).forEach(function (ri) {
      const b = el("button", { type: "button", class: plotState.hidden.has(ri) ? "off" : "", "data-series": rowName(ri) },
        el("span", { class: "line", style: "border-color:" + colour(ri) + (D.naive.indexOf(ri) >= 0 ? ";border-top-style:dashed" : "") }), rowName(ri));
      b.addEventListener("click", function () {
        if (plotState.hidden.has(ri)) plotState.hidden.delete(ri); else plotState.hidden.add(ri);
        drawPlots();
      });
      legend.append(b);
    });
    const panels = clear(document.getElementById("plot-panels"));
    uniq(sel.map(function (p) { return p.dtype; })).sort(function (a, b) { return a - b; }).forEach(function (dt) {
      panels.append(chart(D.dtypes[dt], sel.filter(function (p) { return p.dtype === dt; })));
    });
  }

  function prep(p) {
    const pts = [];
    const xs = D.arrays[p.x], allow = D.arrays[p.allow], ulp = arr(p.ulp);
    for (let k = 0; k < xs.length; k++) {
      const x = num(xs[k]);
      if (x === null || !Number.isFinite(x)) continue;
      pts.push([x, num(ulp[k]), num(allow[k])]);
    }
    pts.sort(function (a, b) { return a[0] - b[0]; });
    return pts;
  }

  function chart(dtype, profiles) {
    const W = 540, H = 290, ML = 50, MR = 12, MT = 26, MB = 36;
    const series = profiles.map(function (p) { return { row: p.row, pts: prep(p), status: D.statuses[p.status] }; });
    const visible = series.filter(function (s) { return !plotState.hidden.has(s.row); });
    let xmin = Infinity, xmax = -Infinity, ymaxData = 1;
    series.forEach(function (s) {
      s.pts.forEach(function (q) {
        xmin = Math.min(xmin, q[0]); xmax = Math.max(xmax, q[0]);
      });
    });
    visible.forEach(function (s) {
      s.pts.forEach(function (q) {
        if (q[1] !== null && Number.isFinite(q[1])) ymaxData = Math.max(ymaxData, q[1]);
        if (q[2] !== null && Number.isFinite(q[2])) ymaxData = Math.max(ymaxData, q[2]);
      });
    });
    if (!Number.isFinite(xmin)) { xmin = -1; xmax = 1; }
    if (xmin === xmax) { xmin -= 1; xmax += 1; }
    const sym = Math.max(Math.abs(xmin), Math.abs(xmax)) > 2000;
    const tx = sym ? function (x) { return Math.sign(x) * Math.log10(1 + Math.abs(x)); } : function (x) { return x; };
    const X0 = tx(xmin), X1 = tx(xmax);
    const px = function (x) { return ML + (tx(x) - X0) / (X1 - X0) * (W - ML - MR); };
    const lmin = -2, lmax = Math.max(1, Math.ceil(Math.log10(ymaxData * 1.2)));
    const top = MT + 10, bottom = H - MB;
    const py = function (u) {
      const l = Math.log10(Math.max(u, Math.pow(10, lmin)));
      return bottom - (l - lmin) / (lmax - lmin) * (bottom - top);
    };
    const s = svg("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": "ulp error against the logit, " + dtype });
    // grid and axes
    const stepY = Math.max(1, Math.ceil((lmax - lmin) / 8));
    for (let l = lmin; l <= lmax; l += stepY) {
      const y = py(Math.pow(10, l));
      s.append(svg("line", { x1: ML, x2: W - MR, y1: y, y2: y, stroke: "#e6e6ec" }));
      s.append(svg("text", { x: ML - 5, y: y + 4, "text-anchor": "end", text: l <= 0 ? String(Math.pow(10, l)) : l < 4 ? String(Math.pow(10, l)) : "1e" + l }));
    }
    s.append(svg("line", { x1: ML, x2: W - MR, y1: MT, y2: MT, stroke: "#f0c4bf", "stroke-dasharray": "2 3" }));
    s.append(svg("text", { x: ML - 5, y: MT + 4, "text-anchor": "end", text: "∞" }));
    xTicks(xmin, xmax, sym).forEach(function (x) {
      const X = px(x);
      s.append(svg("line", { x1: X, x2: X, y1: MT, y2: bottom, stroke: x === 0 ? "#c9c9d3" : "#f0f0f4" }));
      s.append(svg("text", { x: X, y: bottom + 14, "text-anchor": "middle", text: fmt(x, 3) }));
    });
    s.append(svg("rect", { x: ML, y: MT, width: W - ML - MR, height: bottom - MT, fill: "none", stroke: "#b9b9c4" }));
    s.append(svg("text", { x: (ML + W - MR) / 2, y: H - 4, "text-anchor": "middle", text: "logit x" + (sym ? " (symmetric log scale)" : "") }));
    s.append(svg("text", { x: 12, y: (MT + bottom) / 2, transform: "rotate(-90 12 " + (MT + bottom) / 2 + ")", "text-anchor": "middle", text: "ulp error (log)" }));
    // allowance lines, deduplicated
    const seen = new Set();
    visible.forEach(function (sr) {
      const key = sr.pts.map(function (q) { return q[2]; }).join(",");
      if (seen.has(key)) return;
      seen.add(key);
      s.append(svg("path", { d: pathOf(sr.pts, 2, px, py), fill: "none", stroke: "#777", "stroke-width": 1.2, "stroke-dasharray": "5 4", class: "allowance" }));
    });
    visible.forEach(function (sr) {
      const c = colour(sr.row);
      const naive = D.naive.indexOf(sr.row) >= 0;
      s.append(svg("path", { d: pathOf(sr.pts, 1, px, py), fill: "none", stroke: c, "stroke-width": 1.6, "stroke-dasharray": naive ? "6 2" : "none", class: "series", "data-series": rowName(sr.row) }));
      const marks = sr.pts.filter(function (q) { return q[1] !== null && !Number.isFinite(q[1]); });
      if (marks.length) {
        let d = "";
        marks.forEach(function (q) { const X = px(q[0]); d += "M" + (X - 2.5).toFixed(1) + " " + (MT - 2.5) + "l5 5m0 -5l-5 5"; });
        s.append(svg("path", { d: d, stroke: c, "stroke-width": 1.3, fill: "none" }));
      }
    });
    const box = el("div", { class: "plot", "data-dtype": dtype });
    const worst = series.map(function (sr) { return sr.status; }).filter(function (st) { return st !== "pass"; });
    box.append(el("h4", null, dtype, worst.length ? el("span", { class: "muted small", text: " · " + worst.length + " of " + series.length + " outside the allowance" }) : null));
    box.append(s);
    const tip = el("div", { class: "tip" });
    box.append(tip);
    const guide = svg("line", { x1: 0, x2: 0, y1: MT, y2: bottom, stroke: "#888", "stroke-width": 0.8, visibility: "hidden" });
    s.append(guide);
    const overlay = svg("rect", { x: ML, y: MT, width: W - ML - MR, height: bottom - MT, fill: "transparent" });
    s.append(overlay);
    overlay.addEventListener("mousemove", function (ev) {
      const rect = s.getBoundingClientRect();
      const mx = ev.clientX - rect.left;
      const t = X0 + (mx - ML) / (W - ML - MR) * (X1 - X0);
      const x = sym ? Math.sign(t) * (Math.pow(10, Math.abs(t)) - 1) : t;
      clear(tip);
      let shownX = null;
      visible.forEach(function (sr) {
        const q = nearest(sr.pts, x);
        if (!q) return;
        if (shownX === null) { shownX = q[0]; tip.append(el("div", null, el("b", { text: "x = " + fmt(q[0], 6) }))); }
        tip.append(el("div", null, el("span", { style: "color:" + colour(sr.row), text: "■ " }), rowName(sr.row) + ": " + fmt(q[1], 3) + " ulp (allowed " + fmt(q[2], 3) + ")"));
      });
      guide.setAttribute("x1", mx); guide.setAttribute("x2", mx); guide.setAttribute("visibility", "visible");
      tip.style.display = "block";
      tip.style.left = Math.min(mx + 14, W - 200) + "px";
      tip.style.top = "40px";
    });
    overlay.addEventListener("mouseleave", function () { tip.style.display = "none"; guide.setAttribute("visibility", "hidden"); });
    return box;
  }

  function pathOf(pts, k, px, py) {
    let d = "", pen = false;
    pts.forEach(function (q) {
      const v = q[k];
      if (v === null || !Number.isFinite(v)) { pen = false; return; }
      d += (pen ? "L" : "M") + px(q[0]).toFixed(1) + " " + py(v).toFixed(1);
      pen = true;
    });
    return d || "M0 0";
  }

  function nearest(pts, x) {
    if (!pts.length) return null;
    let lo = 0, hi = pts.length - 1;
    while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (pts[mid][0] < x) lo = mid; else hi = mid; }
    return Math.abs(pts[lo][0] - x) <= Math.abs(pts[hi][0] - x) ? pts[lo] : pts[hi];
  }

  function xTicks(a, b, sym) {
    const out = [];
    if (sym) {
      out.push(0);
      for (let p = 0; p <= 308; p++) {
        const v = Math.pow(10, p);
        if (v <= b) out.push(v);
        if (-v >= a) out.push(-v);
      }
      const step = Math.ceil(out.length / 9);
      return out.sort(function (u, v) { return u - v; }).filter(function (_, k) { return k % step === 0; });
    }
    const raw = (b - a) / 8;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map(function (m) { return m * mag; }).find(function (st) { return st >= raw; });
    for (let v = Math.ceil(a / step) * step; v <= b + 1e-9 * step; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
    return out;
  }

  // --------------------------------------------------------- edge cases ----
  function buildEdge() {
    const area = document.getElementById("edge-area");
    const E = D.edge;
    if (!area || !E.case.length) return;
    clear(area);
    const dts = uniq(E.dtype).sort(function (a, b) { return a - b; });
    const cks = uniq(E.check).sort(function (a, b) { return a - b; });
    const f32 = D.dtypes.indexOf("float32");
    const st = { dtype: dts.indexOf(f32) >= 0 ? f32 : dts[0], check: cks.indexOf(D.checks.indexOf("value")) >= 0 ? D.checks.indexOf("value") : cks[0] };
    const dSel = el("select", { "data-edge": "dtype" });
    dts.forEach(function (d) { dSel.append(option(d, D.dtypes[d], d === st.dtype)); });
    const cSel = el("select", { "data-edge": "check" });
    cks.forEach(function (c) { cSel.append(option(c, D.checks[c], c === st.check)); });
    const out = el("div");
    dSel.addEventListener("change", function () { st.dtype = Number(dSel.value); draw(); });
    cSel.addEventListener("change", function () { st.check = Number(cSel.value); draw(); });
    area.append(el("div", { class: "filters" }, el("label", null, "dtype", dSel), el("label", null, "check", cSel)), out);
    function draw() {
      clear(out);
      const idx = [];
      for (let k = 0; k < E.case.length; k++) if (E.dtype[k] === st.dtype && E.check[k] === st.check) idx.push(k);
      const cases = uniq(idx.map(function (k) { return E.case[k]; }));
      if (!cases.length) { out.append(el("p", { class: "muted", text: "No edge-case results for this dtype and check." })); return; }
      cases.forEach(function (c) {
        const mine = idx.filter(function (k) { return E.case[k] === c; });
        const reds = uniq(mine.map(function (k) { return E.red[k]; })).sort(function (a, b) { return a - b; });
        const rows = uniq(mine.map(function (k) { return E.row[k]; })).sort(function (a, b) { return a - b; });
        const meta = D.case_meta[c] || {};
        const head = el("tr", null, el("th", { text: "backend / implementation @ device" }), reds.map(function (r) { return el("th", { text: "reduction " + D.reductions[r] }); }));
        const body = el("tbody");
        const exact = el("tr", null, el("th", { text: "exact (reference)" }));
        reds.forEach(function (r) {
          const ks = mine.filter(function (k2) { return E.red[k2] === r; });
          const k = ks.find(function (k2) { return arr(E.expected[k2]); });
          let text = "—";
          if (k !== undefined) text = listText(arr(E.expected[k]), E.elements[k]);
          else if (ks.some(function (k2) { return E.elements[k2] === 0; })) text = "[] (empty)";
          exact.append(el("td", { class: "mono", text: text }));
        });
        body.append(exact);
        rows.forEach(function (ri) {
          const tr = el("tr", null, el("td", { text: rowName(ri) }));
          reds.forEach(function (r) {
            const k = mine.find(function (k2) { return E.row[k2] === ri && E.red[k2] === r; });
            if (k === undefined) { tr.append(el("td", { class: "s-none", text: "—" })); return; }
            const s = D.statuses[E.status[k]];
            const td = el("td", { class: "mono s-" + s, title: s });
            const got = arr(E.got[k]);
            if (got) {
              const exp = arr(E.expected[k]) || [];
              if (!got.length) td.append(E.elements[k] === 0 ? "[] (empty)" : "[]");
              got.forEach(function (g, j) {
                if (j) td.append(", ");
                td.append(el("span", { class: differs(num(g), num(exp[j]), D.dtypes[st.dtype]) ? "mark" : null, text: fmt(g, 7) }));
              });
            } else td.append(E.elements[k] === 0 ? "[] (empty)" : s + (E.elements[k] ? " (" + E.elements[k] + " elements)" : ""));
            tr.append(td);
          });
          body.append(tr);
        });
        const args = meta.values ? Object.keys(meta.values).filter(function (a) { return meta.values[a] !== null && meta.values[a] !== undefined; }) : [];
        const tally = {};
        mine.forEach(function (k) { const s = D.statuses[E.status[k]]; tally[s] = (tally[s] || 0) + 1; });
        const worst = SEV.find(function (s) { return tally[s]; }) || "pass";
        const block = el("details", { class: "edge-block", open: worst !== "pass" },
          el("summary", null, el("code", { text: D.cases[c] }), " ",
            SEV.filter(function (s) { return tally[s]; }).map(function (s) { return el("span", { class: "badge s-" + s, text: s + " " + tally[s] }); }),
            meta.description ? el("span", { class: "muted small", text: " — " + meta.description }) : null),
          args.length ? el("p", { class: "mono small" }, args.map(function (a, j) {
            const v = meta.values[a];
            return (j ? "; " : "") + a + " = " + (Array.isArray(v) ? "[" + v.map(function (x) { return fmt(x, 7); }).join(", ") + "]" : fmt(v, 7));
          })) : null,
          el("table", { class: "edge" }, el("thead", null, head), body));
        out.append(block);
      });
    }
    draw();
  }

  function listText(vals, elements) {
    if (!vals.length) return elements === 0 ? "[] (empty)" : "[]";
    return vals.map(function (v) { return fmt(v, 7); }).join(", ");
  }

  buildExplorer();
  wire();
  buildPlots();
  buildEdge();
  document.documentElement.setAttribute("data-ready", "1");
})();
