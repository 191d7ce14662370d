// One response: input and output items in order, usage, the previous_response_id chain,
// and the raw JSON, all read from /v1/responses.
import { api, app, el, notice, pathId, pretty, start, stream, when } from "./api.js";
import { renderItem } from "./items.js";

async function allInputItems(id) {
  const items = [];
  let after = null;
  for (;;) {
    const query = new URLSearchParams({ order: "asc", limit: "100" });
    if (after) query.set("after", after);
    const page = await api(`/responses/${encodeURIComponent(id)}/input_items?${query}`);
    items.push(...page.data);
    if (!page.has_more) return items;
    after = page.last_id;
  }
}

// Walk previous_response_id back to the first response (or one that is gone).
async function chain(response) {
  const links = [response.id];
  let previous = response.previous_response_id;
  while (previous && links.length < 50) {
    links.unshift(previous);
    try {
      previous = (await api(`/responses/${encodeURIComponent(previous)}`)).previous_response_id;
    } catch (_) {
      break;
    }
  }
  return links;
}

function usage(u) {
  if (!u) return el("p", { class: "muted" }, "no usage reported");
  return el("dl", { class: "kv", id: "usage" },
    el("dt", {}, "input tokens"), el("dd", {}, u.input_tokens),
    el("dt", {}, "cached"), el("dd", {}, u.input_tokens_details?.cached_tokens ?? 0),
    el("dt", {}, "output tokens"), el("dd", {}, u.output_tokens),
    el("dt", {}, "reasoning"), el("dd", {}, u.output_tokens_details?.reasoning_tokens ?? 0),
    el("dt", {}, "total"), el("dd", {}, u.total_tokens));
}

const RUNNING = ["queued", "in_progress"];

// A background response still running: follow its resumable stream, show the text as it
// comes, offer Cancel, and render the whole page again once it has ended.
function follow(id, response, render) {
  const state = el("span", { id: "live-status", class: `status-${response.status}` },
    response.status);
  const text = el("div", { class: "text", id: "live-text" });
  const cancel = el("button", { type: "button", class: "deny", id: "cancel", onclick: async () => {
    cancel.disabled = true;
    try {
      await api(`/responses/${encodeURIComponent(id)}/cancel`, { method: "POST", body: {} });
    } catch (error) {
      notice(error.message);
    }
  } }, "Cancel");
  const box = el("section", { id: "live", "aria-live": "polite" },
    el("h2", {}, "Running in the background"), el("div", { class: "row" }, state, cancel), text);
  let last = null;
  const run = async () => {
    const after = last === null ? "" : `&starting_after=${last}`;
    await stream(`/responses/${encodeURIComponent(id)}?stream=true${after}`, null, (event) => {
      last = event.sequence_number;
      if (event.response) state.textContent = event.response.status;
      if (event.type === "response.output_text.delta") text.textContent += event.delta;
    });
    render();
  };
  run().catch((error) => notice(error.message));
  return box;
}

async function render() {
  const id = pathId();
  document.querySelector("h1").textContent = `Response ${id}`;
  const response = await api(`/responses/${encodeURIComponent(id)}`);
  const [inputs, links] = await Promise.all([allInputItems(id), chain(response)]);
  const summary = el("dl", { class: "kv", id: "summary" },
    el("dt", {}, "status"), el("dd", { class: `status-${response.status}` }, response.status),
    el("dt", {}, "model"), el("dd", {}, response.model),
    el("dt", {}, "created"), el("dd", {}, when(response.created_at)),
    response.conversation ? [el("dt", {}, "conversation"), el("dd", {}, el("a", {
      href: `/console/conversations/${response.conversation.id}` }, response.conversation.id))]
      : null,
    response.instructions ? [el("dt", {}, "instructions"),
      el("dd", { class: "text" }, pretty(response.instructions))] : null,
    response.error ? [el("dt", {}, "error"), el("dd", { class: "error" },
      `${response.error.code}: ${response.error.message}`)] : null);
  const live = response.background && RUNNING.includes(response.status)
    ? follow(id, response, () => render().catch((error) => notice(error.message))) : null;
  // replaceChildren() would show a null as the text "null": leave `live` out when absent
  app().replaceChildren(
    summary,
    ...(live ? [live] : []),
    el("h2", {}, "Chain"),
    el("nav", { class: "chain", id: "chain", "aria-label": "previous_response_id chain" },
      links.map((link, i) => [i ? "→ " : "", link === id ? el("strong", {}, link)
        : el("a", { href: `/console/responses/${encodeURIComponent(link)}` }, link)])),
    el("h2", {}, "Input items"),
    el("section", { id: "input-items" }, inputs.map(renderItem)),
    el("h2", {}, "Output items"),
    el("section", { id: "output-items" }, response.output.map(renderItem)),
    el("h2", {}, "Usage"), usage(response.usage),
    el("h2", {}, "Raw JSON"),
    el("details", {}, el("summary", {}, "response"), el("pre", { id: "raw" }, pretty(response))));
}

start(render);
