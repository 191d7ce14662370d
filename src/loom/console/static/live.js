// Live view: polls Loom's public /metrics every 2 s and shows turns in flight, requests per
// second and the mean time to first token per poll over the last 5 minutes. The Prometheus
// text is parsed here (no library); the history lives in this tab's memory only.
import { app, el, notice, start } from "./api.js";

const POLL_MS = 2000;
const HISTORY_MS = 5 * 60 * 1000;
const SELF_ROUTE = "/metrics"; // this page's own polls are not traffic
const history = []; // {at, rps, ttftMs (null: no first token in the interval)}
let last = null; // the previous poll's totals

// `name{label="v",...} value` lines -> [{name, labels, value}]; `#` lines are skipped.
export function parseMetrics(text) {
  const samples = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const match = line.match(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/);
    if (!match) continue;
    const labels = {};
    for (const [, key, value] of (match[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[key] = value.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    samples.push({ name: match[1], labels, value: Number(match[3]) });
  }
  return samples;
}

function total(samples, name, keep = () => true) {
  return samples.filter((s) => s.name === name && keep(s.labels))
    .reduce((sum, s) => sum + s.value, 0);
}

function totals(samples) {
  return {
    at: performance.now(),
    inFlight: total(samples, "loom_turns_in_flight"),
    requests: total(samples, "loom_http_requests_total", (l) => l.route !== SELF_ROUTE),
    ttftSum: total(samples, "loom_time_to_first_token_seconds_sum"),
    ttftCount: total(samples, "loom_time_to_first_token_seconds_count"),
  };
}

const ms = (seconds) => (seconds * 1000).toFixed(1);

function sparkline(points) {
  const width = 600, height = 60;
  const values = points.map((p) => p.ttftMs).filter((v) => v !== null);
  const top = Math.max(...values, 1);
  const x = (p) => (width * (p.at - (performance.now() - HISTORY_MS))) / HISTORY_MS;
  const y = (v) => height - 2 - ((height - 4) * v) / top;
  const dots = points.filter((p) => p.ttftMs !== null)
    .map((p) => `${x(p).toFixed(1)},${y(p.ttftMs).toFixed(1)}`).join(" ");
  // Parsed as HTML, an <svg> element takes the SVG namespace by itself; only numbers go in.
  const box = document.createElement("template");
  box.innerHTML = `<svg id="ttft-sparkline" viewBox="0 0 ${width} ${height}" role="img"
    aria-label="Mean time to first token per poll, last 5 minutes, peak ${top.toFixed(1)} ms">
    <polyline points="${dots}"></polyline></svg>`;
  return box.content.firstElementChild;
}

function render(now) {
  const recent = history.filter((p) => p.ttftMs !== null);
  const latest = recent.length ? recent[recent.length - 1].ttftMs.toFixed(1) : "–";
  const latestRps = history.length ? history[history.length - 1].rps.toFixed(2) : "–";
  const figure = (id, label, value, unit) => el("div", { class: "figure" },
    el("div", { class: "muted" }, label),
    el("div", {}, el("strong", { id }, value), unit ? ` ${unit}` : ""));
  app().replaceChildren(
    el("div", { class: "figures" },
      figure("in-flight", "Turns in flight", String(now.inFlight)),
      figure("rps", "Requests per second", latestRps),
      figure("ttft", "Time to first token (latest)", latest, "ms")),
    el("h2", {}, "Time to first token, last 5 minutes (mean per poll)"),
    sparkline(history),
    el("dl", { class: "kv" },
      el("dt", {}, "Requests counted (without /metrics)"), el("dd", { id: "requests-total" }, String(now.requests)),
      el("dt", {}, "First tokens counted"), el("dd", { id: "ttft-count" }, String(now.ttftCount)),
      el("dt", {}, "Mean time to first token, all time"),
      el("dd", { id: "ttft-mean" }, now.ttftCount ? `${ms(now.ttftSum / now.ttftCount)} ms` : "–")),
    el("p", { class: "muted" }, `Polling /metrics every ${POLL_MS / 1000} s; ${history.length} polls kept.`));
}

async function poll() {
  const res = await fetch("/metrics", { headers: { Accept: "text/plain" } });
  if (!res.ok) throw new Error(`/metrics: ${res.status} ${res.statusText}`);
  const now = totals(parseMetrics(await res.text()));
  if (last) {
    const seconds = (now.at - last.at) / 1000;
    const count = now.ttftCount - last.ttftCount;
    history.push({
      at: now.at,
      rps: Math.max(0, now.requests - last.requests) / seconds,
      ttftMs: count > 0 ? (1000 * (now.ttftSum - last.ttftSum)) / count : null,
    });
    while (history.length && history[0].at < now.at - HISTORY_MS) history.shift();
  }
  last = now;
  render(now);
}

start(async () => {
  await poll();
  setInterval(() => poll().then(() => notice(""), (error) => notice(error.message)), POLL_MS);
});
