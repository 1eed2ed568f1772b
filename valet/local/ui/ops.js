// valet dev's operations page: polls data.json and draws it with SVG (no library, no inline script).
const SVG = "http://www.w3.org/2000/svg";
const history = []; // {grants, decisions} totals per refresh, for the rates chart
const HISTORY = 60;

function el(name, attrs = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

function clear(svg) { while (svg.firstChild) svg.removeChild(svg.firstChild); }

function empty(svg, message) {
  svg.appendChild(el("text", { x: 160, y: 90, "text-anchor": "middle", class: "empty" }, message));
}

function bytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function bars(svg, entries, { classOf = () => "bar", format = (v) => String(v) } = {}) {
  clear(svg);
  if (!entries.length) { empty(svg, "nothing yet"); return; }
  const max = Math.max(...entries.map(([, v]) => v), 1);
  const rows = entries.slice(0, 7);
  const h = Math.min(24, 170 / rows.length);
  rows.forEach(([label, value], i) => {
    const y = 5 + i * h;
    const w = Math.max(2, (value / max) * 100);
    svg.appendChild(el("text", { x: 0, y: y + h * 0.65 }, label.length > 28 ? `${label.slice(0, 27)}…` : label));
    svg.appendChild(el("rect", { x: 165, y: y + 2, width: w, height: h - 5, class: classOf(label) }));
    svg.appendChild(el("text", { x: 169 + w, y: y + h * 0.65 }, format(value)));
  });
}

function verdicts(svg, byOutcome) {
  clear(svg);
  const entries = Object.entries(byOutcome);
  const total = entries.reduce((s, [, v]) => s + v, 0);
  if (!total) { empty(svg, "no decisions yet"); return; }
  let x = 10;
  entries.forEach(([outcome, value]) => {
    const w = (value / total) * 300;
    svg.appendChild(el("rect", { x, y: 40, width: w, height: 50, class: outcome }));
    x += w;
  });
  entries.forEach(([outcome, value], i) => {
    svg.appendChild(el("rect", { x: 10, y: 110 + i * 20, width: 12, height: 12, class: outcome }));
    svg.appendChild(el("text", { x: 28, y: 121 + i * 20 },
      `${outcome}: ${value} (${Math.round((value / total) * 100)} %)`));
  });
}

function latency(svg, grant, lag) {
  const rows = [];
  for (const [name, data, scale] of [["grant", grant, 1000], ["upload→verdict", lag, 1000]]) {
    if (!data || !data.count) continue;
    for (const p of ["p50", "p90", "p99"]) rows.push([`${name} ${p}`, Math.round(data[p] * scale * 10) / 10]);
  }
  bars(svg, rows, { format: (v) => (v >= 1000 ? `${(v / 1000).toFixed(2)} s` : `${v} ms`) });
}

function rates(svg) {
  clear(svg);
  if (history.length < 2) { empty(svg, "collecting…"); return; }
  const deltas = history.slice(1).map((h, i) => ({
    grants: h.grants - history[i].grants, decisions: h.decisions - history[i].decisions }));
  const max = Math.max(1, ...deltas.map((d) => Math.max(d.grants, d.decisions)));
  const step = 640 / (HISTORY - 1);
  for (const key of ["grants", "decisions"]) {
    const points = deltas.map((d, i) => `${10 + i * step},${140 - (d[key] / max) * 120}`).join(" ");
    svg.appendChild(el("polyline", { points, class: `line-${key}` }));
  }
  svg.appendChild(el("text", { x: 10, y: 155 }, `max ${max} per refresh · blue: grants · green: decisions`));
}

function show(data) {
  document.getElementById("grants").textContent = String(data.grants.total);
  document.getElementById("decisions").textContent = String(data.decisions.total);
  document.getElementById("accepted-bytes").textContent = bytes(data.acceptedBytes);
  document.getElementById("events").textContent =
    `${data.decisionEvents.ok || 0} / ${data.decisionEvents.failed || 0}`;
  document.getElementById("refusals").textContent =
    String(Object.values(data.refusals).reduce((s, v) => s + v, 0));
  document.getElementById("jwks").textContent = `${data.jwksFetches.ok || 0} / ${data.jwksFetches.failed || 0}`;
  document.getElementById("keys").textContent = `${data.keyRefreshes.ok || 0} / ${data.keyRefreshes.failed || 0}`;
  verdicts(document.getElementById("verdicts"), data.decisions.byOutcome);
  const reasons = Object.entries(data.decisions.byReason).filter(([reason]) => reason !== "ok");
  bars(document.getElementById("reasons"), reasons, { classOf: () => "bar error" });
  bars(document.getElementById("outcomes"), Object.entries(data.grants.byOutcome),
    { classOf: (label) => (label === "granted" ? "bar" : "bar error") });
  latency(document.getElementById("latency"), data.grantLatency, data.decisionLag);
  history.push({ grants: data.grants.total, decisions: data.decisions.total });
  if (history.length > HISTORY) history.shift();
  rates(document.getElementById("rates"));
  const status = document.getElementById("status");
  status.textContent = `updated ${new Date().toLocaleTimeString()}`;
  status.dataset.refreshes = String(Number(status.dataset.refreshes || 0) + 1);
  document.body.dataset.grants = String(data.grants.total);
  document.body.dataset.decisions = String(data.decisions.total);
}

async function refresh() {
  try {
    const response = await fetch("/api/ui/ops/data.json", { cache: "no-store" });
    if (response.ok) show(await response.json());
  } catch (error) {
    document.getElementById("status").textContent = `no data (${error})`;
  }
}

refresh();
setInterval(refresh, 2000);
