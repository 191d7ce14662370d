// Render one Responses/Conversations item (message, tool call, MCP step, search, reasoning)
// as a block; shared by the response, conversation and playground pages.
import { el, pretty } from "./api.js";

function textOf(part) {
  return part.text ?? part.refusal ?? part.transcript ?? "";
}

function annotations(part) {
  const list = part.annotations || [];
  if (!list.length) return null;
  return el("ul", { class: "annotations" }, list.map((a) =>
    el("li", { class: "muted" }, `${a.type}: ${a.filename || a.file_id || a.url || a.title || ""}`
      + (a.index !== undefined ? ` @${a.index}` : ""))));
}

function message(item) {
  return (item.content || []).map((part) => el("div", { class: "part", "data-part": part.type },
    typeof part === "string" ? el("div", { class: "text" }, part)
      : el("div", { class: "text" }, textOf(part)),
    typeof part === "string" ? null : annotations(part)));
}

function code(label, value) {
  if (value === undefined || value === null || value === "") return null;
  return [el("div", { class: "muted" }, label), el("pre", {}, pretty(value))];
}

const BODIES = {
  message,
  function_call: (i) => [el("div", {}, el("code", {}, i.name), ` (call ${i.call_id})`),
    code("arguments", i.arguments)],
  function_call_output: (i) => [el("div", { class: "muted" }, `output of ${i.call_id}`),
    el("pre", {}, pretty(i.output))],
  custom_tool_call: (i) => [el("div", {}, el("code", {}, i.name), ` (call ${i.call_id})`),
    code("input", i.input)],
  custom_tool_call_output: (i) => [el("div", { class: "muted" }, `output of ${i.call_id}`),
    el("pre", {}, pretty(i.output))],
  mcp_list_tools: (i) => [el("div", {}, `${i.server_label}: `,
    (i.tools || []).map((t) => t.name).join(", ") || "no tools"),
  i.error ? el("div", { class: "error" }, String(i.error)) : null],
  mcp_call: (i) => [el("div", {}, `${i.server_label} → `, el("code", {}, i.name)),
    code("arguments", i.arguments), code("output", i.output),
    i.error ? el("div", { class: "error" }, `error: ${pretty(i.error)}`) : null],
  mcp_approval_request: (i) => [el("div", {}, `${i.server_label} asks to run `,
    el("code", {}, i.name)), code("arguments", i.arguments)],
  mcp_approval_response: (i) => [el("div", {},
    i.approve ? "approved" : "denied", ` request ${i.approval_request_id}`,
    i.reason ? ` (${i.reason})` : "")],
  file_search_call: (i) => [el("div", {}, "queries: ", (i.queries || []).join(" · ")),
    el("ol", { class: "results" }, (i.results || []).map((r) => el("li", {},
      el("strong", {}, r.filename || r.file_id || ""),
      ` score ${r.score !== undefined ? Number(r.score).toFixed(3) : "?"}`,
      el("div", { class: "text muted" }, r.text || ""))))],
  reasoning: (i) => [...(i.summary || []), ...(i.content || [])].map((p) =>
    el("div", { class: "text" }, textOf(p))),
};

export function itemHead(item) {
  const who = item.type === "message" ? `${item.role} message` : item.type;
  return el("div", { class: "item-head" }, el("strong", {}, who),
    item.status ? el("span", { class: `status-${item.status}` }, item.status) : null,
    item.id ? el("span", {}, item.id) : null);
}

export function renderItem(item) {
  const body = (BODIES[item.type] || ((i) => el("pre", {}, pretty(i))))(item);
  return el("div", { class: "item", "data-type": item.type, "data-id": item.id || "" },
    itemHead(item), el("div", { class: "item-body" }, body));
}
