// Responses list: status, model, created, duration, tokens, tools and errors; filter by
// status and model (server-side), page with `after`.
import { api, app, el, start, when } from "./api.js";

const STATUSES = ["", "completed", "failed", "in_progress", "incomplete", "cancelled", "queued"];

// The tools the response called, from its output items (not merely the ones offered).
function tools(r) {
  const names = (r.output || []).map((i) => {
    if (i.type === "mcp_call") return `${i.server_label}.${i.name}`;
    if (i.type === "function_call" || i.type === "custom_tool_call") return i.name;
    if (i.type.endsWith("_call")) return i.type.slice(0, -5);
    return null;
  }).filter(Boolean);
  return [...new Set(names)].join(", ");
}

function duration(r) {
  const end = r.completed_at;
  return end && r.created_at ? `${(end - r.created_at).toFixed(1)} s` : "";
}

function row(r) {
  const error = r.error ? r.error.message : r.incomplete_details ? r.incomplete_details.reason : "";
  return el("tr", { "data-id": r.id },
    el("td", {}, el("a", { href: `/console/responses/${encodeURIComponent(r.id)}` }, r.id)),
    el("td", { class: `status-${r.status}` }, r.status),
    el("td", {}, r.model),
    el("td", {}, when(r.created_at)),
    el("td", {}, duration(r)),
    el("td", {}, r.usage ? String(r.usage.total_tokens) : ""),
    el("td", {}, tools(r)),
    el("td", { class: "error" }, error || ""));
}

start(async () => {
  const params = new URLSearchParams(location.search);
  const models = await api("/models").catch(() => ({ data: [] }));
  const form = el("form", { class: "filters", method: "get", action: "/console/responses" },
    el("div", { class: "field" }, el("label", { for: "f-status" }, "Status"),
      el("select", { id: "f-status", name: "status" }, STATUSES.map((s) =>
        el("option", { value: s, selected: params.get("status") === s && s !== "" },
          s || "any")))),
    el("div", { class: "field" }, el("label", { for: "f-model" }, "Model"),
      el("input", { id: "f-model", name: "model", list: "f-models",
        value: params.get("model") || "" }),
      el("datalist", { id: "f-models" }, models.data.map((m) => el("option", { value: m.id })))),
    el("button", { type: "submit" }, "Filter"));
  const query = new URLSearchParams({ limit: params.get("limit") || "20", order: "desc" });
  for (const name of ["status", "model", "after"]) {
    if (params.get(name)) query.set(name, params.get(name));
  }
  const page = await api(`/responses?${query}`);
  const table = el("table", { id: "responses" },
    el("thead", {}, el("tr", {}, ["ID", "Status", "Model", "Created", "Duration", "Tokens",
      "Tools", "Error"].map((h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, page.data.map(row)));
  const next = new URLSearchParams(params);
  next.set("after", page.last_id || "");
  const pager = el("div", { class: "pager" },
    params.get("after") ? el("a", { href: "/console/responses" +
      (params.get("status") || params.get("model") ? `?${new URLSearchParams(
        [...params].filter(([k]) => k !== "after"))}` : "") }, "First page") : null,
    page.has_more ? el("a", { href: `?${next}`, id: "next-page" }, "Next page") : null);
  app().replaceChildren(form, page.data.length ? table
    : el("p", { class: "muted" }, "No responses yet. Try the Playground."), pager);
});
