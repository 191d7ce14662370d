// Files and vector stores: upload a file into a new vector store, watch its ingestion
// status, and search the store with optional attribute filters, showing scored chunks.
import { api, app, el, headers, notice, start } from "./api.js";

async function upload(file) {
  const form = new FormData();
  form.append("purpose", "assistants");
  form.append("file", file);
  const res = await fetch("/v1/files", { method: "POST", headers: headers(), body: form });
  const body = await res.json();
  if (!res.ok) throw new Error(`${res.status}: ${body.error ? body.error.message : ""}`);
  return body;
}

// Ask again until no file of the store is still being ingested.
async function watch(storeId, into) {
  for (;;) {
    const files = (await api(`/vector_stores/${storeId}/files?limit=100`)).data;
    into.replaceChildren(...files.map((f) => el("li", { "data-id": f.id },
      `${f.id}: `, el("span", { class: `status-${f.status}` }, f.status),
      f.last_error ? el("span", { class: "error" }, ` ${f.last_error.message}`) : "")));
    if (!files.some((f) => f.status === "in_progress")) return;
    await new Promise((done) => { setTimeout(done, 300); });
  }
}

function results(page) {
  return el("ol", { id: "results" }, page.data.map((hit) => el("li", { class: "item",
    "data-type": "search_result" },
  el("div", { class: "item-head" }, el("strong", {}, hit.filename || hit.file_id),
    el("span", { class: "score" }, `score ${Number(hit.score).toFixed(3)}`)),
  (hit.content || []).map((c) => el("div", { class: "text" }, c.text)))));
}

start(async () => {
  const stores = (await api("/vector_stores?limit=100")).data;
  const choose = el("select", { id: "store", name: "store" },
    stores.map((s) => el("option", { value: s.id }, `${s.name || s.id} (${s.id})`)));
  const status = el("ul", { id: "ingestion" });
  const file = el("input", { id: "file", type: "file", name: "file" });
  const uploader = el("form", { id: "upload", onsubmit: async (event) => {
    event.preventDefault();
    if (!file.files.length) return notice("Choose a file first.");
    try {
      notice("");
      const made = await upload(file.files[0]);
      const store = await api("/vector_stores",
        { method: "POST", body: { name: made.filename, file_ids: [made.id] } });
      choose.prepend(el("option", { value: store.id, selected: true },
        `${store.name} (${store.id})`));
      choose.value = store.id;
      await watch(store.id, status);
    } catch (error) {
      notice(error.message);
    }
  } }, el("div", { class: "row" }, el("div", { class: "field" },
    el("label", { for: "file" }, "File to upload into a new vector store"), file),
  el("button", { type: "submit" }, "Upload")));
  const query = el("input", { id: "query", name: "query" });
  const filters = el("textarea", { id: "filters", rows: "2",
    placeholder: '{"type": "eq", "key": "lang", "value": "en"}' });
  const found = el("section", { id: "found" });
  const search = el("form", { id: "search", onsubmit: async (event) => {
    event.preventDefault();
    try {
      notice("");
      const body = { query: query.value, max_num_results: 10 };
      if (filters.value.trim()) body.filters = JSON.parse(filters.value);
      found.replaceChildren(results(await api(`/vector_stores/${choose.value}/search`,
        { method: "POST", body })));
    } catch (error) {
      notice(error.message);
    }
  } }, el("div", { class: "row" },
    el("div", { class: "field" }, el("label", { for: "store" }, "Vector store"), choose),
    el("div", { class: "field grow" }, el("label", { for: "query" }, "Search"),
      query),
    el("button", { type: "submit" }, "Search")),
  el("div", { class: "field" }, el("label", { for: "filters" }, "Filters (JSON, optional)"),
    filters));
  choose.addEventListener("change", () => watch(choose.value, status).catch((e) => notice(e.message)));
  app().replaceChildren(uploader, el("h2", {}, "Ingestion"), status, el("h2", {}, "Search"),
    search, found);
  if (choose.value) await watch(choose.value, status);
});
