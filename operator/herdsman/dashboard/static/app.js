// Herdsman dashboard: renders what /api returns and follows /api/stream (server-sent events).
// Figures arrive as plotly figure JSON built by the server; this file only places them.
"use strict";

const state = { config: { actions: "off" }, rollouts: new Map(), route: [], refresh: null };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const ref = (ns, name) => `${ns}/${name}`;
const fmt = (value, digits = 4) =>
  value === null || value === undefined ? "–" : String(Number(Number(value).toPrecision(digits)));
const time = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "");

async function getJSON(url) {
  const answer = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await answer.json();
  if (!answer.ok) throw new Error(body.error || answer.statusText);
  return body;
}

// --- list --------------------------------------------------------------------------------------

function weightsText(w) {
  const parts = [`stable ${w.stable}`, `canary ${w.canary}`];
  if (w.baseline) parts.push(`baseline ${w.baseline}`);
  return parts.join(" · ");
}

function costText(cost) {
  const spent = Object.entries(cost || {}).filter(([, v]) => v > 0);
  return spent.length ? spent.map(([role, v]) => `${role} ${fmt(v, 3)} pod·s`).join(", ") : "–";
}

function row(r) {
  return el(
    "tr",
    { dataset: { ref: ref(r.namespace, r.name) }, class: `phase-${r.phase}` },
    el("td", {}, r.namespace),
    el("td", {}, el("a", { href: `#/rollout/${r.namespace}/${r.name}` }, r.name)),
    el("td", {}, r.strategy),
    el("td", { class: "phase" }, el("span", { class: `badge ${r.phase}` }, r.phase)),
    el("td", { class: "step" }, r.step || "–"),
    el(
      "td",
      {
        class: "weights",
        dataset: { stable: r.weights.stable, canary: r.weights.canary, baseline: r.weights.baseline },
      },
      weightsText(r.weights),
    ),
    el("td", {}, r.revision ?? "–"),
    el("td", { class: "cost" }, costText(r.cost)),
    el("td", { class: "message" }, r.message),
  );
}

function renderList() {
  const body = el("tbody");
  for (const key of [...state.rollouts.keys()].sort()) body.append(row(state.rollouts.get(key)));
  const table = el(
    "table",
    { id: "rollouts" },
    el(
      "thead",
      {},
      el("tr", {}, ["namespace", "rollout", "strategy", "phase", "step", "traffic %", "rev", "cost", "message"].map((h) => el("th", {}, h))),
    ),
    body,
  );
  const empty = state.rollouts.size ? null : el("p", { class: "empty" }, "No rollouts yet.");
  return el("section", { id: "list" }, el("h1", {}, "Rollouts"), table, empty);
}

function updateRow(summary) {
  state.rollouts.set(ref(summary.namespace, summary.name), summary);
  const existing = document.querySelector(`#rollouts tr[data-ref="${CSS.escape(ref(summary.namespace, summary.name))}"]`);
  if (existing) existing.replaceWith(row(summary));
  else if (state.route[0] === "") show();
}

// --- one rollout -------------------------------------------------------------------------------

function plot(id, figure) {
  const div = el("div", { class: "plot", id });
  requestAnimationFrame(() =>
    Plotly.react(div, figure.data, figure.layout, { displayModeBar: false, responsive: true }),
  );
  return div;
}

function actionButtons(ns, name, summary) {
  if (state.config.actions === "off") return el("p", { class: "hint" }, "Actions are off in this dashboard.");
  const buttons = [
    ["promote", "Promote", !summary.paused && summary.phase !== "Progressing"],
    ["abort", "Abort", summary.phase === "Healthy"],
    ["retry", "Retry", !summary.aborted],
    ["undo", "Undo", false],
  ];
  return el(
    "div",
    { class: "actions" },
    buttons.map(([action, label, disabled]) =>
      el("button", { type: "button", dataset: { action }, disabled, onclick: () => act(ns, name, action) }, label),
    ),
  );
}

async function act(ns, name, action) {
  const headers = { "Content-Type": "application/json", "X-Herdsman-Action": "1" };
  if (state.config.actions === "token") {
    const token = sessionStorage.getItem("herdsman-token");
    if (!token) return notice("error", "Paste your bearer token first: actions run as you.");
    headers.Authorization = `Bearer ${token}`;
  }
  const answer = await fetch(`/api/rollouts/${ns}/${name}/${action}`, { method: "POST", headers, body: "{}" });
  const body = await answer.json().catch(() => ({}));
  notice(answer.ok ? "ok" : "error", body.message || body.error || answer.statusText);
}

function notice(kind, text) {
  const box = document.getElementById("notice");
  box.className = kind;
  box.textContent = text;
  box.hidden = false;
}

function stepsList(steps) {
  if (!steps.length) return el("p", { class: "hint" }, "No steps: a new revision takes all traffic at once.");
  return el(
    "ol",
    { class: "steps" },
    steps.map((s) => el("li", { class: s.state, dataset: { state: s.state } }, el("span", {}, s.text), s.at ? el("time", {}, time(s.at)) : null)),
  );
}

function table(headers, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))), el("tbody", {}, rows));
}

async function renderRollout(ns, name) {
  const d = await getJSON(`/api/rollouts/${ns}/${name}`);
  const s = d.summary;
  return el(
    "section",
    { id: "rollout", dataset: { ref: ref(ns, name) } },
    el("h1", {}, `${ns}/${name} `, el("span", { class: `badge ${s.phase}`, id: "phase" }, s.phase)),
    el("p", { class: "message" }, s.message),
    actionButtons(ns, name, s),
    el("div", { class: "columns" },
      el("div", {}, el("h2", {}, "Steps"), stepsList(d.steps)),
      el("div", {},
        el("h2", {}, "Traffic"),
        el("p", { id: "weights", dataset: s.weights }, weightsText(s.weights)),
        el("h2", {}, "Cost of this release"),
        el("p", { id: "cost" }, costText(s.cost)),
      ),
    ),
    el("h2", {}, "Weights per group over time"),
    plot("weights-plot", d.weights),
    el("h2", {}, "Server groups"),
    table(["group", "revision", "role", "replicas", "ready", "available"],
      d.groups.map((g) => el("tr", {}, [g.name, g.revision, g.role, g.replicas, g.ready, g.available].map((v) => el("td", {}, v))))),
    el("h2", {}, "Analysis runs"),
    d.runs.length
      ? table(["run", "phase", "score", "summary", "message"],
          d.runs.map((r) => el("tr", {},
            el("td", {}, el("a", { href: `#/run/${r.namespace}/${r.name}` }, r.name)),
            el("td", {}, el("span", { class: `badge ${r.phase}` }, r.phase)),
            el("td", {}, r.score === null || r.score === undefined ? "–" : `${fmt(r.score, 3)} (${r.classification})`),
            el("td", {}, r.summary), el("td", { class: "message" }, r.message))))
      : el("p", { class: "hint" }, "No analysis runs."),
    el("h2", {}, "Events"),
    table(["time", "reason", "message"],
      d.events.map((e) => el("tr", { class: e.type }, el("td", {}, time(e.time)), el("td", {}, e.reason), el("td", { class: "message" }, e.message)))),
  );
}

// --- the canary report -------------------------------------------------------------------------

function scoreBlock(score) {
  if (!score) return el("p", { class: "hint" }, "No judged metric: no score.");
  return el(
    "div",
    { id: "score", class: `score ${score.classification}` },
    el("div", { class: "big" }, score.score === null ? "–" : fmt(score.score, 3), el("small", {}, ` / 100 · ${score.classification}`)),
    el("p", {}, score.reason),
    el("p", { class: "hint" }, `pass ≥ ${score.pass}, marginal ≥ ${score.marginal}`),
    table(["group", "weight", "share %", "score", "passed", "failed", "excluded"],
      score.groups.map((g) => el("tr", {}, [g.name, g.weight, fmt(g.share, 3), fmt(g.score, 3), g.passed.join(", "), g.failed.join(", "), g.excluded.join(", ")].map((v) => el("td", {}, v))))),
  );
}

function numbersTable(n) {
  const rows = [
    ["baseline median (n)", `${fmt(n.baselineMedian)} (${n.baselineCount})`],
    ["canary median (n)", `${fmt(n.canaryMedian)} (${n.canaryCount})`],
    ["Mann-Whitney U", fmt(n.u, 6)],
    ["p-value", fmt(n.pValue, 3)],
    [`shift, ${Math.round((n.confidence || 0) * 100)}% interval`, `${fmt(n.shift)} [${fmt(n.shiftLower)}, ${fmt(n.shiftUpper)}]`],
    ["ratio (interval)", `${fmt(n.ratio)} [${fmt(n.ratioLower)}, ${fmt(n.ratioUpper)}]`],
    ["effect size", fmt(n.effectSize, 3)],
    ["allowed", `direction ${n.direction}, increase ×${n.allowedIncrease}, decrease ×${n.allowedDecrease}${n.critical ? ", critical" : ""}`],
  ];
  return el("table", { class: "numbers" }, el("tbody", {}, rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v)))));
}

async function renderRun(ns, name) {
  const r = await getJSON(`/api/runs/${ns}/${name}`);
  const groups = [
    r.canaryGroup && `canary ${r.canaryGroup}`,
    r.baselineGroup && `baseline ${r.baselineGroup}`,
    r.stableGroup && `stable ${r.stableGroup}`,
  ].filter(Boolean).join(" · ");
  return el(
    "section",
    { id: "report", dataset: { run: ref(ns, name) } },
    el("h1", {}, `Canary report: ${name} `, el("span", { class: `badge ${r.phase}`, id: "run-phase" }, r.phase)),
    el("p", {}, r.rollout ? el("a", { href: `#/rollout/${ns}/${r.rollout}` }, `rollout ${r.rollout}`) : null, ` · revision ${r.revision ?? "–"} · ${groups}`),
    el("p", { class: "message" }, r.message),
    scoreBlock(r.score),
    r.metrics.map((m) =>
      el(
        "section",
        { class: `metric ${m.verdict}`, dataset: { metric: m.name } },
        el("h2", {}, m.name, " ", el("span", { class: `badge ${m.verdict}`, dataset: { role: "verdict" } }, m.verdict), m.dryRun ? " (dry run)" : ""),
        el("p", { class: "reason" }, m.reason),
        m.condition ? el("p", { class: "hint" }, `condition: ${m.condition}`) : null,
        el("p", { class: "hint" }, `measurements: ${m.counts.successful} successful, ${m.counts.failed} failed, ${m.counts.inconclusive} inconclusive, ${m.counts.error} errors`),
        plot(`plot-${m.name}`, m.figure),
        el("p", { class: "hint" }, m.judged
          ? "Over time: the points the judge compared. Distribution: median, middle half and every point of each group. Shift: how far the canary sits from the baseline (Hodges–Lehmann) with its confidence interval, against no change (0) and the allowed change (dashed)."
          : "Each measurement's value, coloured by its verdict."),
        m.numbers ? numbersTable(m.numbers) : null,
      ),
    ),
  );
}

// --- routing and live updates ------------------------------------------------------------------

function route() {
  const parts = location.hash.replace(/^#\/?/, "").split("/");
  return parts[0] ? parts : [""];
}

async function show() {
  state.route = route();
  const [kind, ns, name] = state.route;
  const view = document.getElementById("view");
  const crumbs = document.getElementById("crumbs");
  crumbs.replaceChildren(kind ? el("a", { href: "#/" }, "all rollouts") : "");
  try {
    let content;
    if (kind === "rollout") content = await renderRollout(ns, name);
    else if (kind === "run") content = await renderRun(ns, name);
    else content = renderList();
    if (state.route.join("/") === route().join("/")) view.replaceChildren(content);
  } catch (err) {
    view.replaceChildren(el("p", { class: "error" }, String(err.message || err)));
  }
}

function refreshSoon() {
  // Several changes in one burst (a status write, its Event, a run update) redraw once.
  clearTimeout(state.refresh);
  state.refresh = setTimeout(show, 150);
}

async function loadList() {
  const body = await getJSON("/api/rollouts");
  state.rollouts = new Map(body.rollouts.map((r) => [ref(r.namespace, r.name), r]));
  problems(body.problems);
}

function problems(list) {
  const box = document.getElementById("problems");
  box.hidden = !list.length;
  box.textContent = list.length ? `Not watching everything: ${list.join("; ")}` : "";
}

function connect() {
  const live = document.getElementById("live");
  const source = new EventSource("/api/stream");
  source.addEventListener("open", () => { live.className = "live on"; live.textContent = "live"; });
  source.addEventListener("error", () => { live.className = "live off"; live.textContent = "reconnecting"; });
  source.addEventListener("hello", async () => { await loadList(); show(); });
  source.addEventListener("reset", async () => { await loadList(); show(); });
  source.addEventListener("problems", (e) => problems(JSON.parse(e.data).problems));
  source.addEventListener("rollout", (e) => {
    const summary = JSON.parse(e.data);
    updateRow(summary);
    const [kind, ns, name] = state.route;
    if (kind === "rollout" && ns === summary.namespace && name === summary.name) refreshSoon();
  });
  source.addEventListener("deleted", (e) => {
    const d = JSON.parse(e.data);
    state.rollouts.delete(ref(d.namespace, d.name));
    document.querySelector(`#rollouts tr[data-ref="${CSS.escape(ref(d.namespace, d.name))}"]`)?.remove();
  });
  source.addEventListener("run", (e) => {
    const run = JSON.parse(e.data);
    const [kind, ns, name] = state.route;
    if (kind === "run" && ns === run.namespace && name === run.name) refreshSoon();
    if (kind === "rollout" && ns === run.namespace && name === run.rollout) refreshSoon();
  });
  source.addEventListener("timeline", (e) => {
    const t = JSON.parse(e.data);
    const [kind, ns, name] = state.route;
    if (kind === "rollout" && ns === t.namespace && name === t.name) refreshSoon();
  });
}

function signin() {
  if (state.config.actions !== "token") return;
  const box = document.getElementById("signin");
  const input = document.getElementById("token");
  const status = document.getElementById("token-state");
  box.hidden = false;
  const mark = () => { status.textContent = sessionStorage.getItem("herdsman-token") ? "token set (this tab only)" : "no token: view only"; };
  document.getElementById("token-save").addEventListener("click", () => {
    if (input.value.trim()) sessionStorage.setItem("herdsman-token", input.value.trim());
    else sessionStorage.removeItem("herdsman-token");
    input.value = "";
    mark();
  });
  mark();
}

async function start() {
  state.config = await getJSON("/api/config");
  signin();
  window.addEventListener("hashchange", show);
  connect();
}

start();
