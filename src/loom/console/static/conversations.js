// The caller's conversations, newest first, with paging.
import { api, app, el, start, when } from "./api.js";

start(async () => {
  const params = new URLSearchParams(location.search);
  const query = new URLSearchParams({ limit: "20", order: "desc" });
  if (params.get("after")) query.set("after", params.get("after"));
  const page = await api(`/conversations?${query}`);
  const table = el("table", { id: "conversations" },
    el("thead", {}, el("tr", {}, ["ID", "Created", "Metadata"].map((h) =>
      el("th", { scope: "col" }, h)))),
    el("tbody", {}, page.data.map((c) => el("tr", { "data-id": c.id },
      el("td", {}, el("a", { href: `/console/conversations/${encodeURIComponent(c.id)}` }, c.id)),
      el("td", {}, when(c.created_at)),
      el("td", {}, el("code", {}, JSON.stringify(c.metadata || {})))))));
  app().replaceChildren(
    page.data.length ? table : el("p", { class: "muted" }, "No conversations yet."),
    el("div", { class: "pager" }, page.has_more
      ? el("a", { id: "next-page", href: `?after=${encodeURIComponent(page.last_id)}` },
        "Next page") : null));
});
