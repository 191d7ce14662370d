// Playground: build a Responses request (model, instructions, a function tool, an MCP
// server), stream it, render the events live, answer MCP approvals and function calls in
// the page, continue the thread, and show the same request as `openai` SDK Python code.
import { api, app, el, notice, start, stream } from "./api.js";
import { renderItem } from "./items.js";

let previousId = null;
let busy = false;

function field(id, label, control) {
  return el("div", { class: "field" }, el("label", { for: id }, label), control);
}

function form(models) {
  return el("form", { id: "settings", onsubmit: (e) => e.preventDefault() },
    field("model", "Model", el("select", { id: "model", name: "model" },
      models.map((m) => el("option", { value: m.id }, m.id)))),
    field("instructions", "Instructions", el("textarea", { id: "instructions", rows: "3" })),
    el("fieldset", {}, el("legend", {}, "Function tool (optional)"),
      field("fn-name", "Name", el("input", { id: "fn-name", placeholder: "get_weather" })),
      field("fn-desc", "Description", el("input", { id: "fn-desc" })),
      field("fn-params", "Parameters (JSON schema)", el("textarea", { id: "fn-params", rows: "4" },
        '{"type": "object", "properties": {}}'))),
    el("fieldset", {}, el("legend", {}, "MCP server (optional)"),
      field("mcp-url", "Server URL", el("input", { id: "mcp-url", type: "url",
        placeholder: "the MCP server's Streamable HTTP or SSE URL" })),
      field("mcp-label", "Label", el("input", { id: "mcp-label", value: "tools" })),
      field("mcp-approval", "Approval", el("select", { id: "mcp-approval" },
        el("option", { value: "never" }, "never ask"),
        el("option", { value: "always" }, "always ask")))),
    el("fieldset", {}, el("legend", {}, "File search (optional)"),
      field("fs-stores", "Vector store ids (comma separated)", el("input", { id: "fs-stores",
        placeholder: "vs_…" }))));
}

function value(id) {
  return document.getElementById(id).value.trim();
}

function tools() {
  const out = [];
  if (value("fn-name")) {
    let parameters;
    try {
      parameters = JSON.parse(value("fn-params") || "{}");
    } catch (error) {
      throw new Error(`Function parameters are not valid JSON: ${error.message}`);
    }
    out.push({ type: "function", name: value("fn-name"),
      description: value("fn-desc") || undefined, parameters });
  }
  if (value("mcp-url")) {
    out.push({ type: "mcp", server_url: value("mcp-url"),
      server_label: value("mcp-label") || "tools", require_approval: value("mcp-approval") });
  }
  if (value("fs-stores")) {
    out.push({ type: "file_search",
      vector_store_ids: value("fs-stores").split(",").map((v) => v.trim()).filter(Boolean) });
  }
  return out;
}

function request(input) {
  const body = { model: value("model"), input };
  if (value("instructions")) body.instructions = value("instructions");
  const list = tools();
  if (list.length) body.tools = list;
  if (list.some((t) => t.type === "file_search")) body.include = ["file_search_call.results"];
  if (previousId) body.previous_response_id = previousId;
  return body;
}

// A JSON value as a Python literal, for the SDK code view.
function py(v, pad = "") {
  const inner = `${pad}    `;
  if (v === null || v === undefined) return "None";
  if (v === true) return "True";
  if (v === false) return "False";
  if (typeof v === "number" || typeof v === "string") return JSON.stringify(v);
  if (Array.isArray(v)) {
    return v.length ? `[\n${v.map((x) => inner + py(x, inner)).join(",\n")},\n${pad}]` : "[]";
  }
  const keys = Object.keys(v).filter((k) => v[k] !== undefined);
  return keys.length ? `{\n${keys.map((k) => `${inner}${JSON.stringify(k)}: ${py(v[k], inner)}`)
    .join(",\n")},\n${pad}}` : "{}";
}

function sdkCode(body) {
  const args = Object.entries(body).map(([k, v]) => `    ${k}=${py(v, "    ")},`).join("\n");
  return `from openai import OpenAI\n\nclient = OpenAI(base_url="${location.origin}/v1", `
    + `api_key="YOUR_LOOM_KEY")\n\nstream = client.responses.create(\n${args}\n    stream=True,\n)\n`
    + `for event in stream:\n    print(event.type)\n`;
}

function answerControls(item) {
  if (item.type === "mcp_approval_request") {
    const reply = (approve) => send([{ type: "mcp_approval_response",
      approval_request_id: item.id, approve }]);
    return el("div", { class: "approval" },
      el("button", { type: "button", class: "approve", onclick: () => reply(true) }, "Approve"),
      el("button", { type: "button", class: "deny", onclick: () => reply(false) }, "Deny"));
  }
  if (item.type === "function_call") {
    const input = el("input", { id: `out-${item.call_id}`, "aria-label": `Output of ${item.name}` });
    return el("form", { class: "approval", onsubmit: (e) => {
      e.preventDefault();
      send([{ type: "function_call_output", call_id: item.call_id, output: input.value }]);
    } }, input, el("button", { type: "submit" }, "Send output"));
  }
  return null;
}

function renderLive(item) {
  const node = renderItem(item);
  const controls = answerControls(item);
  if (controls) node.append(controls);
  return node;
}

async function send(input) {
  if (busy) return;
  let body;
  try {
    body = request(input);
  } catch (error) {
    notice(error.message);
    return;
  }
  busy = true;
  notice("");
  document.querySelectorAll(".approval button").forEach((b) => { b.disabled = true; });
  document.getElementById("code").textContent = sdkCode(body);
  const transcript = document.getElementById("transcript");
  const events = document.getElementById("events");
  const turn = el("section", { class: "turn" });
  transcript.append(turn);
  if (typeof input === "string") {
    turn.append(renderItem({ type: "message", role: "user",
      content: [{ type: "input_text", text: input }] }));
  } else {
    input.forEach((i) => turn.append(renderItem(i)));
  }
  const status = el("div", { class: "muted turn-status", role: "status" }, "sending…");
  turn.append(status);
  const nodes = new Map();
  try {
    await stream("/responses", body, (event) => {
      events.append(el("div", {}, `${event.sequence_number} ${event.type}`));
      const r = event.response;
      if (event.type === "response.created") {
        turn.dataset.responseId = r.id;
        status.textContent = `${r.id}: ${r.status}`;
      } else if (event.type === "response.output_item.added") {
        const node = renderLive(event.item);
        nodes.set(event.item.id, node);
        status.before(node);
      } else if (event.type === "response.output_text.delta") {
        const node = nodes.get(event.item_id);
        if (!node) return;
        let live = node.querySelector(".live-text");
        if (!live) {
          live = el("div", { class: "text live-text" });
          node.querySelector(".item-body").append(live);
        }
        live.textContent += event.delta;
      } else if (event.type === "response.output_item.done") {
        const node = renderLive(event.item);
        const old = nodes.get(event.item.id);
        if (old) old.replaceWith(node); else status.before(node);
        nodes.set(event.item.id, node);
      } else if (["response.completed", "response.failed", "response.incomplete"]
        .includes(event.type)) {
        previousId = r.id;
        status.replaceChildren(el("a", { href: `/console/responses/${r.id}`,
          class: "response-link" }, r.id), `: ${r.status}`,
        r.error ? el("span", { class: "error" }, ` ${r.error.message}`) : "");
        turn.dataset.status = r.status;
      } else if (event.type === "error") {
        notice(`${event.code || "error"}: ${event.message}`);
      }
    });
  } catch (error) {
    notice(error.message);
    status.textContent = "failed";
  } finally {
    busy = false;
  }
}

start(async () => {
  const models = (await api("/models")).data;
  const message = el("input", { id: "message", name: "message", autocomplete: "off",
    placeholder: "Ask something and press Enter" });
  const composer = el("form", { id: "composer", class: "row", onsubmit: (e) => {
    e.preventDefault();
    if (!message.value.trim()) return;
    send(message.value.trim());
    message.value = "";
  } }, el("div", { class: "field grow" }, el("label", { for: "message" }, "Message"),
    message), el("button", { type: "submit", id: "send" }, "Send"),
  el("button", { type: "button", class: "secondary", id: "new-thread", onclick: () => {
    previousId = null;
    document.getElementById("transcript").replaceChildren();
    document.getElementById("events").replaceChildren();
  } }, "New thread"));
  app().replaceChildren(el("div", { class: "grid" },
    el("section", { "aria-label": "Request settings" }, form(models)),
    el("section", { "aria-label": "Conversation" },
      el("div", { id: "transcript", "aria-live": "polite" }), composer,
      el("details", {}, el("summary", {}, "Streamed events"), el("div", { id: "events",
        class: "events" })),
      el("details", {}, el("summary", {}, "Python SDK code"), el("pre", { id: "code" },
        "Send a message to see the equivalent openai SDK call.")))));
});
