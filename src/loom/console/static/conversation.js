// One conversation: its items as a timeline grouped by turn (a turn starts at each user
// message), and its metadata, editable as key/value JSON.
import { api, app, el, notice, pathId, pretty, start, when } from "./api.js";
import { renderItem } from "./items.js";

async function allItems(id) {
  const items = [];
  let after = null;
  for (;;) {
    const query = new URLSearchParams({ order: "asc", limit: "100" });
    if (after) query.set("after", after);
    const page = await api(`/conversations/${encodeURIComponent(id)}/items?${query}`);
    items.push(...page.data);
    if (!page.has_more) return items;
    after = page.last_id;
  }
}

function turns(items) {
  const groups = [];
  for (const item of items) {
    const starts = item.type === "message" && item.role === "user";
    if (starts || !groups.length) groups.push([]);
    groups[groups.length - 1].push(item);
  }
  return groups;
}

function metadataForm(id, conversation) {
  const area = el("textarea", { id: "metadata", name: "metadata", rows: "5" },
    pretty(conversation.metadata || {}));
  const saved = el("span", { class: "muted", id: "metadata-saved", role: "status" });
  return el("form", { id: "metadata-form", onsubmit: async (event) => {
    event.preventDefault();
    saved.textContent = "";
    let metadata;
    try {
      metadata = JSON.parse(area.value || "{}");
    } catch (error) {
      notice(`Metadata is not valid JSON: ${error.message}`);
      return;
    }
    try {
      const updated = await api(`/conversations/${encodeURIComponent(id)}`,
        { method: "POST", body: { metadata } });
      area.value = pretty(updated.metadata || {});
      notice("");
      saved.textContent = "Saved.";
    } catch (error) {
      notice(error.message);
    }
  } }, el("label", { for: "metadata" }, "Metadata (JSON object of strings)"), area,
  el("div", { class: "row" }, el("button", { type: "submit" }, "Save metadata"), saved));
}

start(async () => {
  const id = pathId();
  document.querySelector("h1").textContent = `Conversation ${id}`;
  const [conversation, items] = await Promise.all([
    api(`/conversations/${encodeURIComponent(id)}`), allItems(id)]);
  app().replaceChildren(
    el("p", { class: "muted" }, `created ${when(conversation.created_at)}`),
    metadataForm(id, conversation),
    el("h2", {}, "Timeline"),
    el("section", { id: "timeline" }, items.length ? turns(items).map((group, n) =>
      el("section", { class: "turn", "aria-label": `Turn ${n + 1}` },
        el("div", { class: "muted" }, `Turn ${n + 1}`), group.map(renderItem)))
      : el("p", { class: "muted" }, "No items.")));
});
