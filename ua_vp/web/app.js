// ua-vp dashboard: vanilla JS over the JSON ops API. No build step, nothing from elsewhere.
// Untrusted text (objectives, payloads, errors) only ever goes in via textContent.
"use strict";

const API = "/api/v1";
const TOKEN_KEY = "ua-vp-token";
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const STATUSES = ["queued", "running", "completed", "failed", "cancelled"];
const PAGE_SIZE = 50;

// ---------------------------------------------------------------------------
// DOM helpers
// ---------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function pill(status) {
  return h("span", { class: `pill ${status}`, "data-status": status }, status);
}

function ago(iso) {
  if (!iso) return "–";
  const s = (Date.now() - Date.parse(iso)) / 1000;
  if (s < 1) return "just now";
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(iso).toLocaleString();
}

function seconds(v) {
  if (v === null || v === undefined) return "–";
  if (v < 1) return `${Math.round(v * 1000)} ms`;
  if (v < 120) return `${v.toFixed(v < 10 ? 2 : 1)} s`;
  if (v < 7200) return `${(v / 60).toFixed(1)} min`;
  return `${(v / 3600).toFixed(1)} h`;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

function setLive(state, text) {
  const el = document.getElementById("live");
  el.className = `live ${state}`;
  el.textContent = text;
}

const main = () => document.getElementById("main");

// ---------------------------------------------------------------------------
// The API: same origin, JSON bodies as application/json, the token from sessionStorage
// ---------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `HTTP ${status}`);
    this.status = status;
    this.code = err.code || `http_${status}`;
    this.details = err.details || {};
  }
}

let asking = null;

function askToken(reason) {
  // One dialog however many requests were refused at once.
  if (asking) return asking;
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  document.getElementById("token-reason").textContent = reason || "";
  input.value = "";
  asking = new Promise((resolve) => {
    const form = document.getElementById("token-form");
    const done = (event) => {
      event.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      form.removeEventListener("submit", done);
      dialog.close();
      asking = null;
      resolve(token);
    };
    form.addEventListener("submit", done);
    // Escape would leave the page without data: keep the dialog until a token is given.
    dialog.addEventListener("cancel", (e) => e.preventDefault(), { once: true });
  });
  dialog.showModal();
  input.focus();
  return asking;
}

function authHeaders(extra) {
  const headers = { Accept: "application/json", ...(extra || {}) };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.Authorization = `Bearer ${token}`;
  return headers;
}

async function api(path, options = {}) {
  for (;;) {
    const init = { method: options.method || "GET", headers: authHeaders(), credentials: "same-origin", cache: "no-store" };
    if (options.body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    let response;
    try {
      response = await fetch(API + path, init);
    } catch (err) {
      setLive("bad", "server unreachable");
      throw new ApiError(0, { error: { code: "unreachable", message: "the server did not answer; is `ua-vp serve` running?" } });
    }
    if (response.status === 401) {
      const had = sessionStorage.getItem(TOKEN_KEY);
      sessionStorage.removeItem(TOKEN_KEY);
      await askToken(had ? "401: that token was refused. Try again." : "");
      continue;
    }
    let body = null;
    try {
      body = await response.json();
    } catch (err) {
      body = null;
    }
    if (!response.ok) throw new ApiError(response.status, body);
    setLive("ok", "live");
    return body;
  }
}

let profilesCache = null;

async function profiles() {
  if (!profilesCache) profilesCache = api("/ops/vp/profiles").then((b) => b.profiles);
  return profilesCache;
}

// A poller that stops while the tab is hidden and never overlaps itself.
function every(ms, fn) {
  let timer = null;
  let stopped = false;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try {
        await fn();
      } catch (err) {
        if (!(err instanceof ApiError) || err.status !== 0) console.warn(err.message);
      }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function errorBanner(err) {
  return h("div", { class: "banner error", role: "alert" }, h("strong", {}, err.code || "error"), ": ", err.message);
}

// ---------------------------------------------------------------------------
// Missions list
// ---------------------------------------------------------------------------

function readQuery() {
  const q = new URLSearchParams(location.search);
  return { status: q.get("status") || "all", vp_id: q.get("vp_id") || "", q: q.get("q") || "", before: q.get("before") || "" };
}

function writeQuery(state) {
  const q = new URLSearchParams();
  for (const k of ["status", "vp_id", "q", "before"]) if (state[k] && state[k] !== "all") q.set(k, state[k]);
  history.replaceState(null, "", q.toString() ? `?${q}` : location.pathname);
}

async function pageMissions() {
  const state = readQuery();
  const trail = []; // cursors of the pages before this one, for "Newer"
  const statusSel = h("select", { id: "f-status", "aria-label": "Status" },
    h("option", { value: "all" }, "all statuses"), STATUSES.map((s) => h("option", { value: s }, s)));
  statusSel.value = state.status;
  const vpSel = h("select", { id: "f-vp", "aria-label": "vp_id" }, h("option", { value: "" }, "all profiles"));
  const search = h("input", { id: "f-q", type: "search", placeholder: "vpm_… (id or its beginning)", value: state.q, "aria-label": "Search by id" });
  const body = h("tbody", { id: "missions-body" });
  const banner = h("div", { class: "banner error", id: "list-error", role: "alert" });
  const newer = h("button", { id: "newer", type: "button" }, "← Newer");
  const older = h("button", { id: "older", type: "button" }, "Older →");
  const info = h("span", { class: "sub", id: "page-info" });
  main().replaceChildren(
    h("h1", {}, "Missions", h("span", { class: "sub", id: "list-live" }, "")),
    h("div", { class: "toolbar" },
      h("div", {}, h("label", { for: "f-status" }, "Status"), statusSel),
      h("div", {}, h("label", { for: "f-vp" }, "Profile"), vpSel),
      h("div", { class: "grow" }, h("label", { for: "f-q" }, "Search by id"), search),
      h("div", {}, h("a", { href: "/dispatch" }, h("button", { class: "primary", type: "button" }, "New mission")))),
    banner,
    h("div", { class: "card table-wrap" },
      h("table", { class: "stack" },
        h("thead", {}, h("tr", {}, ["Mission", "Status", "Profile", "Objective", "Attempt", "Created"].map((c) => h("th", {}, c)))),
        body),
      h("div", { class: "pager" }, newer, info, older)));

  profiles().then((list) => {
    for (const p of list) vpSel.append(h("option", { value: p.vp_id }, p.vp_id));
    vpSel.value = state.vp_id;
  }).catch(() => {});

  const seen = new Map();
  let lastIds = [];
  const load = async () => {
    const q = new URLSearchParams({ limit: String(PAGE_SIZE), status: state.status });
    if (state.vp_id) q.set("vp_id", state.vp_id);
    if (state.q) q.set("q", state.q);
    if (state.before) q.set("before", state.before);
    let found;
    try {
      found = (await api(`/ops/vp/missions/?${q}`)).missions;
      banner.textContent = "";
    } catch (err) {
      banner.replaceChildren(h("strong", {}, err.code), ": ", err.message);
      return;
    }
    const rows = found.map((m) => {
      const previous = seen.get(m.mission_id);
      const changed = previous !== undefined && previous !== m.status;
      const fresh = seen.size > 0 && previous === undefined;
      seen.set(m.mission_id, m.status);
      return h("tr", { class: changed || fresh ? "fresh" : null, "data-mission-id": m.mission_id },
        h("td", { class: "id", "data-label": "Mission" }, h("a", { href: `/missions/${encodeURIComponent(m.mission_id)}` }, m.mission_id)),
        h("td", { "data-label": "Status" }, pill(m.status)),
        h("td", { class: "nowrap", "data-label": "Profile" }, m.vp_id),
        h("td", { class: "objective", "data-label": "Objective", title: m.objective }, m.objective),
        h("td", { class: "num", "data-label": "Attempt" }, `${m.attempt}/${m.max_attempts}`),
        h("td", { class: "nowrap", "data-label": "Created", title: `${m.created_at} · lane ${m.lane}` }, ago(m.created_at)));
    });
    body.replaceChildren(...(rows.length ? rows : [h("tr", {}, h("td", { colspan: "6", class: "empty" }, state.q || state.status !== "all" || state.vp_id ? "No mission matches." : "No missions yet. Dispatch one."))]));
    lastIds = found.map((m) => m.mission_id);
    older.disabled = found.length < PAGE_SIZE;
    newer.disabled = !state.before;
    info.textContent = found.length ? `${trail.length * PAGE_SIZE + 1}–${trail.length * PAGE_SIZE + found.length}` : "";
    document.getElementById("list-live").textContent = state.before ? "older page (refreshing)" : "live";
  };

  const restart = () => {
    seen.clear();
    writeQuery(state);
    load();
  };
  statusSel.addEventListener("change", () => { state.status = statusSel.value; state.before = ""; trail.length = 0; restart(); });
  vpSel.addEventListener("change", () => { state.vp_id = vpSel.value; state.before = ""; trail.length = 0; restart(); });
  let typing = null;
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { state.q = search.value.trim(); state.before = ""; trail.length = 0; restart(); }, 250);
  });
  older.addEventListener("click", () => {
    if (!lastIds.length) return;
    trail.push(state.before);
    state.before = lastIds[lastIds.length - 1];
    restart();
  });
  newer.addEventListener("click", () => { state.before = trail.pop() || ""; restart(); });
  every(2000, load);
}

// ---------------------------------------------------------------------------
// One mission
// ---------------------------------------------------------------------------

function summary(payload) {
  if (payload && payload.kind === "output" && typeof payload.line === "string") return `${payload.stream || "out"}: ${payload.line}`;
  if (payload && payload.error && payload.error.code) return `${payload.error.code}: ${payload.error.message || ""}`;
  const text = JSON.stringify(payload);
  return text === "{}" ? "" : text.length > 400 ? `${text.slice(0, 400)}…` : text;
}

function eventItem(e, isNew) {
  return h("li", { class: isNew ? "new" : null, "data-event": e.event_type },
    h("span", { class: "t", title: e.created_at }, new Date(e.created_at).toLocaleTimeString()),
    h("span", { class: "e" }, e.event_type.replace("vp.mission.", "")),
    h("span", { class: "p" }, summary(e.payload)));
}

// Server-Sent Events read with fetch, so the bearer header goes along (EventSource cannot send one).
async function followEvents(missionId, onEvent, signal) {
  let last = 0;
  let fallback = false;
  while (!signal.aborted) {
    if (fallback) {
      const batch = (await api(`/ops/vp/missions/${encodeURIComponent(missionId)}/events?after_id=${last}`)).events;
      for (const e of batch) { last = Math.max(last, e.id); if (onEvent(e)) return; }
      await new Promise((r) => setTimeout(r, 1500));
      continue;
    }
    const headers = authHeaders({ Accept: "text/event-stream" });
    if (last) headers["Last-Event-ID"] = String(last);
    let response;
    try {
      response = await fetch(`${API}/ops/vp/missions/${encodeURIComponent(missionId)}/events?after_id=${last}`, { headers, signal, credentials: "same-origin", cache: "no-store" });
    } catch (err) {
      if (signal.aborted) return;
      await new Promise((r) => setTimeout(r, 2000));
      continue;
    }
    if (response.status === 401) { sessionStorage.removeItem(TOKEN_KEY); await askToken("401: the event stream needs a valid token."); continue; }
    if (!response.ok || !response.body) { fallback = true; continue; } // e.g. 429: too many streams, poll instead
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let ended = false;
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (err) {
        break;
      }
      if (chunk.done) break;
      buffer += chunk.value;
      // Litestar ends lines with CRLF; a CR at the very end may be half of one.
      let text = buffer.endsWith("\r") ? buffer.slice(0, -1) : buffer;
      const carry = buffer.endsWith("\r") ? "\r" : "";
      text = text.replace(/\r\n|\r/g, "\n");
      const blocks = text.split("\n\n");
      buffer = blocks.pop() + carry;
      for (const block of blocks) {
        let data = "";
        let id = null;
        for (const line of block.split("\n")) {
          if (line.startsWith("data:")) data += line.slice(5).trimStart();
          else if (line.startsWith("id:")) id = parseInt(line.slice(3).trim(), 10);
        }
        if (!data) continue;
        if (id !== null) last = Math.max(last, id);
        if (onEvent(JSON.parse(data))) { ended = true; }
      }
      if (ended) { reader.cancel().catch(() => {}); return; }
    }
    await new Promise((r) => setTimeout(r, 1000)); // the stream ended early: resume after `last`
  }
}

async function pageMission(missionId) {
  const path = `/ops/vp/missions/${encodeURIComponent(missionId)}`;
  main().replaceChildren(h("h1", {}, "Mission ", h("code", {}, missionId)), h("p", { class: "sub" }, "Loading…"));
  let mission;
  try {
    mission = (await api(path)).mission;
  } catch (err) {
    main().replaceChildren(h("h1", {}, "Mission ", h("code", {}, missionId)), errorBanner(err), h("a", { href: "/" }, "← All missions"));
    return;
  }
  const head = h("h1", {});
  const facts = h("div", { class: "card" });
  const outcome = h("div", { id: "outcome" });
  const controls = h("div", { id: "controls" });
  const eventsList = h("ol", { class: "events", id: "events" });
  const eventsNote = h("span", { class: "sub", id: "events-state" }, "following…");
  main().replaceChildren(
    h("p", {}, h("a", { href: "/" }, "← All missions")),
    head, controls, outcome,
    h("div", { class: "card" }, h("h2", {}, "Events ", eventsNote), eventsList),
    h("div", { class: "grid" }, facts,
      h("div", { class: "stack-col" },
        h("div", { class: "card" }, h("h2", {}, "Objective"), h("p", { class: "objective-text", id: "objective" }, mission.objective)),
        h("div", { class: "card" }, h("h2", {}, "Constraints"), h("pre", {}, JSON.stringify(mission.constraints, null, 2))),
        h("div", { class: "card" }, h("h2", {}, "Budget"), h("pre", {}, JSON.stringify(mission.budget, null, 2))))));

  const render = (m) => {
    mission = m;
    head.replaceChildren("Mission ", h("code", { class: "mono" }, m.mission_id), h("span", { id: "mission-status" }, pill(m.status)));
    facts.replaceChildren(h("h2", {}, "Envelope"), h("dl", { class: "kv" }, [
      ["Profile", m.vp_id], ["Type", m.mission_type], ["Status", m.status], ["Attempt", `${m.attempt} of ${m.max_attempts}`],
      ["Lane", m.lane], ["Priority", m.priority], ["Worker", m.worker_id || "–"], ["Created", when(m.created_at)],
      ["Started", when(m.started_at)], ["Finished", when(m.finished_at)],
      ["Cancel asked", m.cancel_requested_at ? when(m.cancel_requested_at) : "–"],
      ["Idempotency key", m.idempotency_key || "–"],
    ].map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]).flat()));
    const parts = [];
    if (m.error) {
      parts.push(h("div", { class: "card" }, h("h2", {}, "Error"),
        h("div", { class: "error-box", id: "mission-error" }, h("div", { class: "code" }, m.error.code || "error"), h("div", {}, m.error.message || ""))));
    }
    if (m.result) {
      const artifacts = Array.isArray(m.result.artifacts) ? m.result.artifacts : [];
      parts.push(h("div", { class: "card" }, h("h2", {}, "Result"),
        h("div", { class: "result-box", id: "mission-result" }, m.result.summary || ""),
        h("h2", { style: null }, "Artifacts"),
        artifacts.length ? h("ul", { class: "artifacts", id: "artifacts" }, artifacts.map((a) => h("li", {}, a))) : h("p", { class: "sub" }, "none"),
        h("details", {}, h("summary", {}, "Raw result"), h("pre", {}, JSON.stringify(m.result, null, 2)))));
    }
    outcome.replaceChildren(...parts);
    renderControls();
  };

  // Redrawn only when what they offer changes: a re-render on every event used to replace the
  // button under the user's pointer and close a confirm step they had opened.
  let shownControls = null;
  const renderControls = (again = false) => {
    const state = TERMINAL.has(mission.status) ? "ended" : mission.cancel_requested_at ? "asked" : "open";
    if (state === shownControls && !again) return;
    shownControls = state;
    if (state === "ended") { controls.replaceChildren(); return; }
    if (state === "asked") { controls.replaceChildren(h("p", { class: "banner ok" }, "Cancel requested; the worker is stopping it.")); return; }
    const ask = h("button", { class: "danger", id: "cancel", type: "button" }, "Cancel mission…");
    ask.addEventListener("click", () => {
      const yes = h("button", { class: "danger solid", id: "cancel-confirm", type: "button" }, "Yes, cancel it");
      const no = h("button", { type: "button", id: "cancel-keep" }, "Keep it running");
      const note = h("span", { class: "field-error", id: "cancel-error" });
      yes.addEventListener("click", async () => {
        yes.disabled = true;
        try {
          const answer = await api(`${path}/cancel`, { method: "POST" });
          render(answer.mission);
        } catch (err) {
          note.textContent = `${err.code}: ${err.message}`;
          yes.disabled = false;
        }
      });
      no.addEventListener("click", () => renderControls(true));
      controls.replaceChildren(h("div", { class: "confirm card" }, h("span", {}, mission.status === "running" ? "Stop this mission? Its agent process will be killed." : "Cancel this queued mission?"), yes, no, note));
    });
    controls.replaceChildren(h("div", { class: "actions", style: null }, ask));
  };

  render(mission);
  const stop = new AbortController();
  const ids = new Set();
  const openedAt = Date.now(); // events replayed on opening are not "new"
  followEvents(missionId, (e) => {
    if (ids.has(e.id)) return false;
    ids.add(e.id);
    eventsList.append(eventItem(e, Date.parse(e.created_at) > openedAt));
    eventsList.scrollTop = eventsList.scrollHeight;
    if (["vp.mission.completed", "vp.mission.failed", "vp.mission.cancelled"].includes(e.event_type)) {
      eventsNote.textContent = "ended";
      api(path).then((b) => render(b.mission)).catch(() => {});
      return true;
    }
    if (e.event_type === "vp.mission.started" || e.event_type === "vp.mission.retried" || e.event_type === "vp.mission.cancel_requested") {
      api(path).then((b) => render(b.mission)).catch(() => {});
    }
    return false;
  }, stop.signal).catch((err) => { eventsNote.textContent = `stopped: ${err.message}`; });
}

// ---------------------------------------------------------------------------
// Dispatch
// ---------------------------------------------------------------------------

const FIELDS = ["vp_id", "mission_type", "objective", "constraints", "budget", "priority"];

async function pageDispatch() {
  const errs = Object.fromEntries(FIELDS.map((f) => [f, h("p", { class: "field-error", id: `err-${f}`, role: "alert" })]));
  const vp = h("select", { id: "vp_id", name: "vp_id", required: true });
  const type = h("select", { id: "mission_type", name: "mission_type" });
  const objective = h("textarea", { id: "objective", name: "objective", class: "objective", required: true, placeholder: "What should the agent do?" });
  const constraints = h("textarea", { id: "constraints", name: "constraints", spellcheck: "false" }, "{}");
  const budget = h("textarea", { id: "budget", name: "budget", spellcheck: "false" }, "{}");
  const priority = h("input", { id: "priority", name: "priority", type: "number", min: "0", max: "1000", placeholder: "100" });
  const banner = h("div", { class: "banner", id: "dispatch-banner", role: "status" });
  const submit = h("button", { class: "primary", type: "submit", id: "dispatch-submit" }, "Dispatch");
  const field = (name, label, input, hint) => h("div", { class: "field" }, h("label", { for: name }, label), input, hint ? h("div", { class: "hint" }, hint) : null, errs[name]);
  const form = h("form", { id: "dispatch-form", class: "card", novalidate: true },
    h("div", { class: "grid" }, field("vp_id", "Profile (vp_id)", vp), field("mission_type", "Mission type", type)),
    field("objective", "Objective", objective),
    h("div", { class: "grid" },
      field("constraints", "Constraints (JSON object)", constraints, "e.g. {\"repo_path\": \"~/src/app\"}"),
      field("budget", "Budget (JSON object)", budget, "max_seconds, max_tokens, max_output_bytes")),
    h("div", { class: "grid" }, field("priority", "Priority (0 runs first)", priority)),
    h("div", { class: "actions" }, submit));
  main().replaceChildren(h("h1", {}, "Dispatch a mission"), banner, form);

  let list = [];
  try {
    list = await profiles();
  } catch (err) {
    banner.className = "banner error";
    banner.replaceChildren(errorBanner(err));
  }
  for (const p of list) vp.append(h("option", { value: p.vp_id }, `${p.vp_id} · ${p.name}`));
  const fillTypes = () => {
    const p = list.find((x) => x.vp_id === vp.value);
    type.replaceChildren(...((p && p.mission_types) || ["task"]).map((t) => h("option", { value: t }, t)));
  };
  vp.addEventListener("change", fillTypes);
  fillTypes();

  const clear = () => {
    for (const f of FIELDS) { errs[f].textContent = ""; document.getElementById(f).classList.remove("invalid"); }
    banner.className = "banner";
    banner.textContent = "";
  };
  const mark = (name, message, code) => {
    errs[name].replaceChildren(message, code ? h("span", { class: "code-tag", title: "error code" }, code) : "");
    document.getElementById(name).classList.add("invalid");
  };
  const parseObject = (name, el) => {
    const text = el.value.trim();
    if (!text) return {};
    try {
      return JSON.parse(text);
    } catch (err) {
      mark(name, `not JSON: ${err.message}`);
      return undefined;
    }
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear();
    const c = parseObject("constraints", constraints);
    const b = parseObject("budget", budget);
    if (c === undefined || b === undefined) return;
    const body = { vp_id: vp.value, mission_type: type.value || null, objective: objective.value, constraints: c, budget: b };
    if (priority.value !== "") body.priority = Number(priority.value);
    submit.disabled = true;
    try {
      const answer = await api("/ops/vp/missions/dispatch", { method: "POST", body });
      const id = answer.mission.mission_id;
      banner.className = "banner ok";
      banner.replaceChildren("Mission ", h("a", { href: `/missions/${encodeURIComponent(id)}`, id: "dispatched-link" }, id), answer.created ? ` queued on lane ${answer.lane}.` : " already existed (same idempotency key).");
      objective.value = "";
    } catch (err) {
      // The API names the field in details.field (or inside the message): show its words there.
      const named = String(err.details.field || err.details.fields?.[0] || "");
      const target = FIELDS.find((f) => named === f || named.endsWith(`.${f}`) || named.startsWith(`${f}.`) || named.includes(`$.${f}`))
        || FIELDS.find((f) => err.message.includes(`\`${f}\``) || err.message.includes(`$.${f}`) || err.message.startsWith(`invalid request: ${f}`))
        || (err.code === "guard_violation" ? "constraints" : err.code === "unknown_vp_id" || err.code === "vp_id_disabled" ? "vp_id" : null);
      if (target) mark(target, err.message, err.code);
      else { banner.className = "banner error"; banner.replaceChildren(h("strong", {}, err.code), ": ", err.message); }
    } finally {
      submit.disabled = false;
    }
  });
}

// ---------------------------------------------------------------------------
// Workers
// ---------------------------------------------------------------------------

async function pageWorkers() {
  const body = h("tbody", { id: "sessions-body" });
  const banner = h("div", { class: "banner error", role: "alert" });
  const counts = h("div", { class: "tiles", id: "session-tiles" });
  main().replaceChildren(h("h1", {}, "Workers"), banner, counts,
    h("div", { class: "card table-wrap" }, h("table", { class: "stack" },
      h("thead", {}, h("tr", {}, ["Worker", "Status", "Profile", "Host", "PID", "Sandbox", "Lane", "Active", "Started", "Last seen"].map((c) => h("th", {}, c)))),
      body)));
  every(3000, async () => {
    let sessions;
    try {
      sessions = (await api("/ops/vp/sessions/")).sessions;
      banner.textContent = "";
    } catch (err) {
      banner.replaceChildren(h("strong", {}, err.code), ": ", err.message);
      return;
    }
    const by = {};
    for (const s of sessions) by[s.status] = (by[s.status] || 0) + 1;
    counts.replaceChildren(...["idle", "busy", "draining", "lost", "stopped"].map((k) => h("div", { class: "tile" }, h("div", { class: "k" }, k), h("div", { class: "v", "data-count": k }, String(by[k] || 0)))));
    body.replaceChildren(...(sessions.length ? sessions.map((s) => h("tr", { "data-worker-id": s.worker_id },
      h("td", { class: "mono", "data-label": "Worker" }, s.worker_id),
      h("td", { "data-label": "Status" }, pill(s.status)),
      h("td", { "data-label": "Profile" }, s.vp_id),
      h("td", { "data-label": "Host" }, s.host),
      h("td", { class: "num", "data-label": "PID" }, String(s.pid)),
      h("td", { "data-label": "Sandbox" }, s.sandbox || "–"),
      h("td", { "data-label": "Lane" }, s.lane),
      h("td", { "data-label": "Active" }, `${s.active_missions} / ${s.capacity}`,
        h("div", { class: "meter" }, h("span", { style: null, "data-fill": String(Math.min(100, Math.round((100 * s.active_missions) / Math.max(1, s.capacity)))) }))),
      h("td", { "data-label": "Started", title: s.started_at }, ago(s.started_at)),
      h("td", { "data-label": "Last seen", title: s.last_seen_at }, ago(s.last_seen_at)))) : [h("tr", {}, h("td", { colspan: "10", class: "empty" }, "No worker has registered yet. Start one with `ua-vp worker --profile <vp_id>`, or dispatch to the server's own lane."))]));
    // Widths set from script (CSP forbids inline style attributes).
    for (const span of body.querySelectorAll("[data-fill]")) span.style.width = `${span.dataset.fill}%`;
  });
}

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";

function s(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
}

function chart(points, width) {
  const W = Math.max(320, Math.round(width || 720));
  const H = 220;
  const pad = { l: 40, r: 40, t: 12, b: 26 };
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Throughput and queue depth, last hour", id: "timeline-chart" });
  const n = points.length || 1;
  // At least 4 so the four grid steps are whole numbers.
  const nice = (v) => (v <= 4 ? 4 : v <= 8 ? 8 : Math.ceil(v / 4 / 10 ** Math.floor(Math.log10(v / 4))) * 10 ** Math.floor(Math.log10(v / 4)) * 4);
  const maxT = nice(Math.max(...points.map((p) => p.finished), 0));
  const maxQ = nice(Math.max(...points.map((p) => p.queue_depth), 0));
  const iw = W - pad.l - pad.r;
  const ih = H - pad.t - pad.b;
  const bw = iw / n;
  for (let i = 0; i <= 4; i++) {
    const y = pad.t + (ih * i) / 4;
    svg.append(s("line", { x1: pad.l, x2: W - pad.r, y1: y, y2: y, stroke: "#e5e9f0" }));
    const left = s("text", { x: pad.l - 6, y: y + 4, "text-anchor": "end", "font-size": 11, fill: "#15803d" });
    left.textContent = String(Math.round(maxT * (1 - i / 4)));
    const right = s("text", { x: W - pad.r + 6, y: y + 4, "font-size": 11, fill: "#2563eb" });
    right.textContent = String(Math.round(maxQ * (1 - i / 4)));
    svg.append(left, right);
  }
  points.forEach((p, i) => {
    const hgt = (ih * p.finished) / maxT;
    const bar = s("rect", { x: pad.l + i * bw + 1, y: pad.t + ih - hgt, width: Math.max(1, bw - 2), height: hgt, fill: "#86efac", rx: 1.5 });
    const tip = s("title");
    tip.textContent = `${new Date(p.start).toLocaleTimeString()}: ${p.finished} finished, ${p.queue_depth} queued`;
    bar.append(tip);
    svg.append(bar);
  });
  const line = points.map((p, i) => `${i ? "L" : "M"}${(pad.l + i * bw + bw / 2).toFixed(1)},${(pad.t + ih - (ih * p.queue_depth) / maxQ).toFixed(1)}`).join(" ");
  if (points.length) svg.append(s("path", { d: line, fill: "none", stroke: "#2563eb", "stroke-width": 2 }));
  [0, Math.floor(n / 2), n - 1].forEach((i) => {
    if (!points[i]) return;
    const t = s("text", { x: pad.l + i * bw + bw / 2, y: H - 6, "text-anchor": "middle", "font-size": 11, fill: "#5d6b7e" });
    t.textContent = new Date(points[i].start).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    svg.append(t);
  });
  return svg;
}

async function pageStats() {
  const vpSel = h("select", { id: "m-vp", "aria-label": "Profile" }, h("option", { value: "" }, "all profiles"));
  const banner = h("div", { class: "banner error", role: "alert" });
  const tiles = h("div", { class: "tiles", id: "metric-tiles" });
  const statusBars = h("div", { class: "bars", id: "status-bars" });
  const recovery = h("dl", { class: "kv", id: "recovery" });
  const chartBox = h("div", { class: "chart", id: "chart" });
  main().replaceChildren(
    h("h1", {}, "Metrics"),
    h("div", { class: "toolbar" }, h("div", {}, h("label", { for: "m-vp" }, "Profile"), vpSel), h("div", { class: "sub" }, "Prometheus scrapes the same figures at ", h("a", { href: "/metrics" }, "/metrics"), ".")),
    banner, tiles,
    h("div", { class: "card" }, h("h2", {}, "Last hour"), chartBox,
      h("div", { class: "legend" }, h("span", {}, h("span", { class: "sw", "data-color": "#86efac" }), "finished per minute (left)"), h("span", {}, h("span", { class: "sw", "data-color": "#2563eb" }), "queue depth (right)"))),
    h("div", { class: "grid" },
      h("div", { class: "card" }, h("h2", {}, "Missions by status"), statusBars),
      h("div", { class: "card" }, h("h2", {}, "Recovery and sessions"), recovery)));
  for (const sw of main().querySelectorAll("[data-color]")) sw.style.background = sw.dataset.color;
  profiles().then((list) => { for (const p of list) vpSel.append(h("option", { value: p.vp_id }, p.vp_id)); }).catch(() => {});
  const load = async () => {
    const q = vpSel.value ? `?vp_id=${encodeURIComponent(vpSel.value)}` : "";
    let m;
    let tl;
    try {
      [m, tl] = await Promise.all([api(`/ops/metrics/vp${q}`), api(`/ops/metrics/timeline${q}`)]);
      banner.textContent = "";
    } catch (err) {
      banner.replaceChildren(h("strong", {}, err.code), ": ", err.message);
      return;
    }
    m = m.metrics;
    const lat = m.latency_seconds;
    const tile = (key, label, value, small) => h("div", { class: "tile" }, h("div", { class: "k" }, label), h("div", { class: "v", "data-metric": key }, value, small ? h("small", {}, ` ${small}`) : null));
    tiles.replaceChildren(
      tile("queue_depth", "Queue depth", String(m.queue.depth)),
      tile("oldest_queued", "Oldest queued", seconds(m.queue.oldest_queued_age_seconds)),
      tile("wait_p50", "Wait p50 / p95", seconds(lat.queue_wait.p50), `/ ${seconds(lat.queue_wait.p95)}`),
      tile("run_p50", "Run p50 / p95", seconds(lat.run_time.p50), `/ ${seconds(lat.run_time.p95)}`),
      tile("total", "Missions", String(m.missions.total)),
      tile("sessions", "Live workers", String((m.sessions.total || 0) - (m.sessions.by_status.stopped || 0) - (m.sessions.by_status.lost || 0))));
    const max = Math.max(1, ...Object.values(m.missions.by_status));
    statusBars.replaceChildren(...STATUSES.map((st) => {
      const fill = h("div", { class: "fill" });
      fill.style.width = `${(100 * m.missions.by_status[st]) / max}%`;
      fill.style.background = getComputedStyle(document.documentElement).getPropertyValue(`--${st}`);
      return h("div", { class: "bar-row" }, h("span", {}, st), h("div", { class: "track" }, fill), h("span", { class: "num", "data-status-count": st }, String(m.missions.by_status[st])));
    }));
    recovery.replaceChildren(...[
      ["Retried", m.recovery.retried], ["Failed: lease expired", m.recovery.lease_expired],
      ["Sessions", m.sessions.total], ["Lost sessions", m.sessions.by_status.lost || 0],
      ["Active missions", m.sessions.active_missions], ["Events", m.events.total],
    ].map(([k, v]) => [h("dt", {}, k), h("dd", { "data-recovery": k }, String(v))]).flat());
    chartBox.replaceChildren(chart(tl.points, chartBox.clientWidth));
  };
  vpSel.addEventListener("change", load);
  every(5000, load);
}

// ---------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  for (const a of document.querySelectorAll("[data-nav]")) if (a.dataset.nav === page || (page === "mission" && a.dataset.nav === "missions")) a.classList.add("here");
  const pages = { missions: pageMissions, mission: () => pageMission(document.body.dataset.missionId), dispatch: pageDispatch, workers: pageWorkers, stats: pageStats };
  (pages[page] || pageMissions)();
});
