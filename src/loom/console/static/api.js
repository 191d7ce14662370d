// Shared by every console page: the user's key, calls to Loom's /v1 API, small DOM helpers
// and a streaming SSE reader. Only same-origin requests are ever made.

const KEY = "loom.console.key";

export function apiKey() {
  return sessionStorage.getItem(KEY) || "";
}

export function notice(message) {
  document.getElementById("notice").textContent = message || "";
}

export function headers(extra) {
  const out = { ...extra };
  const key = apiKey();
  if (key) out.Authorization = `Bearer ${key}`;
  return out;
}

async function failure(res) {
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body && body.error) message = `${res.status}: ${body.error.message}`;
  } catch (_) { /* not JSON */ }
  if (res.status === 401) message += " Enter an API key above.";
  return new Error(message);
}

// A JSON call to the /v1 API; throws an Error carrying the API's message.
export async function api(path, { method = "GET", body } = {}) {
  const init = { method, headers: headers(body ? { "Content-Type": "application/json" } : {}) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const res = await fetch(`/v1${path}`, init);
  if (!res.ok) throw await failure(res);
  return res.json();
}

// POST a body with stream: true (or, with body null, GET the path) and call
// onEvent(event) for each SSE event as it arrives.
export async function stream(path, body, onEvent) {
  const init = body === null
    ? { headers: headers({ Accept: "text/event-stream" }) }
    : {
      method: "POST",
      headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
      body: JSON.stringify({ ...body, stream: true }),
    };
  const res = await fetch(`/v1${path}`, init);
  if (!res.ok) throw await failure(res);
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
      const data = block
        .split(/\r?\n/)
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data && data !== "[DONE]") onEvent(JSON.parse(data));
    }
  }
}

// el("div", {class: "x", onclick: f}, child, "text", ...) -> Element
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export function when(seconds) {
  return seconds ? new Date(seconds * 1000).toLocaleString() : "";
}

export function pretty(value) {
  if (typeof value === "string") {
    try { return JSON.stringify(JSON.parse(value), null, 2); } catch (_) { return value; }
  }
  return JSON.stringify(value, null, 2);
}

export function app() {
  return document.getElementById("app");
}

// The last path segment, e.g. the response id of /console/responses/resp_123.
export function pathId() {
  return decodeURIComponent(location.pathname.split("/").filter(Boolean).pop());
}

// Run a page's start function with the key form and nav wired; report failures in the page.
export function start(page) {
  const input = document.getElementById("api-key");
  input.value = apiKey();
  document.getElementById("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, input.value.trim());
    location.reload();
  });
  const section = document.body.dataset.page.replace(/^(response|conversation)$/, "$1s");
  const current = document.querySelector(`nav a[data-nav="${section}"]`);
  if (current) current.setAttribute("aria-current", "page");
  const run = async () => {
    try {
      notice("");
      await page();
    } catch (error) {
      notice(error.message);
    }
  };
  run();
}
