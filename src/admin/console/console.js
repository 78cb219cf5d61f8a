// The console: sign in with a token, follow an owner's resources live (changed cells marked),
// scrub one resource through its versions with `state_at`, compare the owner and spectator views,
// and chart the server's load from the admin listener's /metrics.

import { WardenClient } from "/assets/warden-client.js";
import { claims, el, fmt, followNewTokens, gameUrl, tokenFromFragment, withToken } from "/assets/common.js";

const TOKEN_KEY = "warden.console.token";
const $ = (id) => document.getElementById(id);

/** Fields of the spectator view (docs/protocol.md §4): the rest is the owner's only. */
const SPECTATOR_HIDES = ["regen_milli", "lock_reason", "lock_expires_at"];

const state = {
  client: null,
  sub: null,
  owner: null,
  /** id → the latest view */
  resources: new Map(),
  selected: null,
  /** the selected resource's audit trail */
  trail: [],
  /** a state_at request in flight is superseded by a newer one */
  stateSeq: 0,
};

async function start() {
  $("game-url").value = await gameUrl();
  followNewTokens();
  const token = tokenFromFragment(TOKEN_KEY);
  $("sign-in-form").addEventListener("submit", (e) => {
    e.preventDefault();
    signIn($("token").value.trim(), $("game-url").value.trim());
  });
  $("sign-out").addEventListener("click", signOut);
  $("owner-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const owner = $("owner").value.trim();
    if (owner) follow(owner);
  });
  $("slider").addEventListener("input", () => showVersion(Number($("slider").value)));
  $("prev").addEventListener("click", () => step(-1));
  $("next").addEventListener("click", () => step(1));
  $("live").addEventListener("click", () => step(Infinity));
  $("at-form").addEventListener("submit", (e) => {
    e.preventDefault();
    showAt();
  });
  if (token) {
    $("token").value = token;
    signIn(token, $("game-url").value);
  }
  chart.start();
}

async function signIn(token, url) {
  const err = $("sign-in-error");
  err.hidden = true;
  const c = claims(token);
  if (!c) return showError("That does not look like a token (three base64url parts).");
  if (c.exp && c.exp * 1000 < Date.now()) return showError("This token has expired: mint a new one.");
  $("sign-in-button").disabled = true;
  const client = new WardenClient(url, token);
  try {
    await client.ready();
  } catch {
    client.close();
    $("sign-in-button").disabled = false;
    return showError(`Could not connect to ${url} with this token (refused, or the server is down).`);
  }
  $("sign-in-button").disabled = false;
  sessionStorage.setItem(TOKEN_KEY, token);
  state.client = client;
  state.token = token;
  client.on("close", () => setStatus("reconnecting…", "warn"));
  client.on("open", () => setStatus("live", "ok"));
  setStatus("live", "ok");
  $("principal").textContent = `${client.welcome.player} · ${client.welcome.role}`;
  $("who").hidden = false;
  $("sign-in").hidden = true;
  $("app").hidden = false;
  follow(client.welcome.role === "service" ? (state.owner ?? client.welcome.player) : client.welcome.player);

  function showError(text) {
    err.textContent = text;
    err.hidden = false;
  }
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  state.client?.close();
  location.reload();
}

function setStatus(text, kind) {
  const s = $("status");
  s.textContent = text;
  s.className = `status ${kind}`;
}

/** Shows `owner`'s resources, live. */
async function follow(owner) {
  await state.sub?.close();
  state.owner = owner;
  state.resources.clear();
  $("resources").tBodies[0].replaceChildren();
  $("owner-name").textContent = owner;
  $("owner").value = owner;
  $("watch-link").href = withToken(`/watch?owner=${encodeURIComponent(owner)}`, state.token);
  closeDetail();
  state.loaded = false;
  state.sub = await state.client.subscribe({ owner }, (r) => onResource(r));
  state.loaded = true;
  refreshEmpty();
}

/** A resource's name: its wallet name, or its type for one created before wallets had names. */
const nameOf = (r) => r.name ?? r.resource_type;

/** Who issued an event: `alice (player)`, `backend (service)`, `server` (a lock expiry). */
function issuer(by, role) {
  if (by === undefined || by === null) return "";
  if (role === "server" && by === "server") return "server";
  if (!role || role === "unknown") return String(by);
  return `${by} (${role})`;
}

const COLUMNS = [
  ["name", nameOf, "name"],
  ["resource_type", (r) => r.resource_type],
  ["amount", (r) => fmt.int(r.amount), "num amount"],
  ["max_amount", (r) => fmt.int(r.max_amount), "num"],
  ["regen_milli", (r) => fmt.rate(r.regen_milli), "num"],
  ["locked", (r) => (r.locked ? (r.lock_reason ? `Locked: ${r.lock_reason}` : "Locked") : "—"), "lock"],
  ["version", (r) => String(r.version), "num"],
  ["updated_at", (r) => fmt.time(r.updated_at), "time"],
  ["id", (r) => fmt.short(r.id), "id"],
];

function onResource(r) {
  const before = state.resources.get(r.id);
  state.resources.set(r.id, r);
  const body = $("resources").tBodies[0];
  let row = body.querySelector(`tr[data-id="${r.id}"]`);
  const fresh = !row;
  if (fresh) {
    row = el("tr", { "data-id": r.id, tabindex: "0", onclick: () => select(r.id) });
    row.addEventListener("keydown", (e) => e.key === "Enter" && select(r.id));
    for (const [key, , cls] of COLUMNS) row.append(el("td", { "data-field": key, class: cls ?? "" }));
    body.append(row);
  }
  for (const [key, render] of COLUMNS) {
    const cell = row.querySelector(`td[data-field="${key}"]`);
    const text = render(r);
    const changed = before && key !== "updated_at" && key !== "version" && cell.textContent !== text;
    cell.textContent = text;
    if (key === "amount") cell.append(bar(r));
    if (key === "id") cell.title = r.id;
    if (changed) mark(cell);
  }
  if (fresh && state.loaded) mark(row);
  row.classList.toggle("locked", !!r.locked);
  refreshEmpty();
  if (state.selected === r.id) onSelectedChanged(r);
}

function bar(r) {
  const pct = r.max_amount ? Math.min(100, (Number(r.amount) / Number(r.max_amount)) * 100) : 0;
  return el("span", { class: "bar" }, el("span", { style: `width:${pct.toFixed(1)}%` }));
}

/** Marks a cell that just changed; the mark fades after a few seconds. */
function mark(node) {
  node.classList.remove("changed");
  void node.offsetWidth; // restart the animation
  node.classList.add("changed");
  clearTimeout(node._unmark);
  node._unmark = setTimeout(() => node.classList.remove("changed"), 4000);
}

function refreshEmpty() {
  $("no-resources").hidden = state.resources.size > 0;
}

// ---- one resource through time ----

async function select(id) {
  state.selected = id;
  for (const tr of $("resources").tBodies[0].rows) tr.classList.toggle("selected", tr.dataset.id === id);
  const r = state.resources.get(id);
  $("detail").hidden = false;
  $("detail-title").textContent = `${nameOf(r)} of ${r.owner}`;
  $("detail-id").textContent = id;
  $("slider").max = String(r.version);
  $("slider").value = String(r.version);
  await loadTrail();
  showVersion(r.version);
}

function closeDetail() {
  state.selected = null;
  state.trail = [];
  $("detail").hidden = true;
}

async function loadTrail() {
  const id = state.selected;
  const body = $("trail").tBodies[0];
  try {
    state.trail = await state.client.fullHistory(id);
  } catch (e) {
    state.trail = [];
    body.replaceChildren(el("tr", {}, el("td", { colspan: "8", class: "muted", text: `History not shown: ${e.code} (only the owner and services may read it).` })));
    return;
  }
  if (state.selected !== id) return;
  body.replaceChildren(
    ...state.trail.map((e) =>
      el(
        "tr",
        { "data-version": String(e.version), onclick: () => showVersion(e.version) },
        el("td", { class: "num", text: String(e.version) }),
        el("td", { text: e.event_type.replace(/^Resource/, "") }),
        el("td", { class: "time", text: fmt.time(e.at) }),
        el("td", { class: "id", title: e.command_id, text: fmt.short(e.command_id) }),
        el("td", { class: "num", text: e.amount === undefined ? "" : fmt.int(e.amount) }),
        el("td", { class: "num", text: e.balance === undefined ? "" : fmt.int(e.balance) }),
        el("td", { text: e.reason ?? "" }),
        el("td", {
          "data-field": "by",
          class: `by ${e.by_role ?? ""}`,
          title: e.by_role === "unknown" ? "recorded before events named their issuer's role" : null,
          text: issuer(e.by, e.by_role),
        }),
      ),
    ),
  );
}

/** A live update of the selected resource: extend the slider, follow it if at the latest. */
async function onSelectedChanged(r) {
  const slider = $("slider");
  const atLatest = Number(slider.value) === Number(slider.max);
  slider.max = String(r.version);
  await loadTrail();
  if (atLatest) showVersion(r.version);
}

function step(delta) {
  const slider = $("slider");
  const v = delta === Infinity ? Number(slider.max) : Number(slider.value) + delta;
  showVersion(Math.max(1, Math.min(Number(slider.max), v)));
}

/** Shows the state right after `version`, rebuilt by the server from the log. */
async function showVersion(version) {
  $("slider").value = String(version);
  const event = state.trail.find((e) => e.version === version);
  $("slider-label").replaceChildren(
    el("b", { text: `Version ${version}` }),
    ` of ${$("slider").max}`,
    event ? ` · ${event.event_type.replace(/^Resource/, "")} · ${fmt.time(event.at)}` : "",
    event?.by !== undefined ? ` · by ${issuer(event.by, event.by_role)}` : "",
  );
  for (const tr of $("trail").tBodies[0].rows) tr.classList.toggle("selected", Number(tr.dataset.version) === version);
  const seq = ++state.stateSeq;
  try {
    const { resource } = await state.client.stateAt(state.selected, { version });
    if (seq === state.stateSeq) renderViews(resource);
  } catch (e) {
    if (seq === state.stateSeq) renderViews(null, e);
  }
}

async function showAt() {
  const value = $("at-time").value;
  if (!value || !state.selected) return;
  const at = new Date(value).getTime();
  const seq = ++state.stateSeq;
  try {
    const { version, resource } = await state.client.stateAt(state.selected, { at });
    if (seq !== state.stateSeq) return;
    $("slider").value = String(version);
    $("slider-label").replaceChildren(el("b", { text: `At ${fmt.time(at)}` }), ` · version ${version}, regeneration counted up to then`);
    renderViews(resource);
    $("at-result").textContent = "";
  } catch (e) {
    $("at-result").textContent = e.code === "before_creation" ? "it did not exist yet" : e.message;
  }
}

const VIEW_FIELDS = [
  ["amount", "Amount", (r) => fmt.int(r.amount)],
  ["amount_at", "Counted at", (r) => fmt.time(r.amount_at)],
  ["max_amount", "Max", (r) => fmt.int(r.max_amount)],
  ["regen_milli", "Regen / s", (r) => fmt.rate(r.regen_milli)],
  ["locked", "Locked", (r) => (r.locked ? "yes" : "no")],
  ["lock_reason", "Lock reason", (r) => r.lock_reason ?? "—"],
  ["lock_expires_at", "Lock until", (r) => fmt.time(r.lock_expires_at)],
  ["version", "Version", (r) => String(r.version)],
];

function renderViews(resource, error) {
  const owner = $("owner-view");
  const spectator = $("spectator-view");
  if (!resource) {
    owner.replaceChildren(el("dd", { class: "error", text: error?.message ?? "unavailable" }));
    spectator.replaceChildren();
    return;
  }
  // The server gave this principal its view; what a spectator sees drops these fields.
  const watcherSees = { ...resource };
  for (const f of SPECTATOR_HIDES) delete watcherSees[f];
  owner.replaceChildren(
    ...VIEW_FIELDS.flatMap(([key, label, show]) => [
      el("dt", { text: label }),
      el("dd", { "data-field": key, class: key === "amount" ? "big" : "", text: show(resource) }),
    ]),
  );
  spectator.replaceChildren(
    ...VIEW_FIELDS.flatMap(([key, label, show]) => [
      el("dt", { text: label }),
      SPECTATOR_HIDES.includes(key)
        ? el("dd", { "data-field": key, class: "hidden-field", text: "hidden" })
        : el("dd", { "data-field": key, class: key === "amount" ? "big" : "", text: show(watcherSees) }),
    ]),
  );
}

// ---- the server's load, from /metrics ----

/** How often /metrics is read; the chart shows the last 60 readings. */
const POLL_MS = 500;

const chart = {
  points: [],
  last: null,
  start() {
    this.poll();
    setInterval(() => this.poll(), POLL_MS);
    window.addEventListener("resize", () => this.draw());
  },
  async poll() {
    if ($("app").hidden) return;
    let text;
    try {
      const res = await fetch("/metrics");
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      text = await res.text();
    } catch (e) {
      $("chart-note").textContent = `metrics unavailable (${e.message})`;
      $("chart-note").hidden = false;
      return;
    }
    $("chart-note").hidden = true;
    const now = Date.now();
    const commands = sumMetric(text, "warden_commands_total");
    const connections = sumMetric(text, "warden_connections_open");
    let cps = 0;
    if (this.last && commands >= this.last.commands) {
      cps = ((commands - this.last.commands) * 1000) / Math.max(1, now - this.last.at);
    }
    this.last = { at: now, commands };
    this.points.push({ cps, connections });
    if (this.points.length > 60) this.points.shift();
    $("cps").textContent = cps < 10 ? cps.toFixed(1) : Math.round(cps).toLocaleString("en-US");
    $("conns").textContent = String(connections);
    this.draw();
  },
  draw() {
    const canvas = $("chart");
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 560;
    const h = canvas.clientHeight || 140;
    canvas.width = w * ratio;
    canvas.height = h * ratio;
    const g = canvas.getContext("2d");
    g.scale(ratio, ratio);
    g.clearRect(0, 0, w, h);
    g.strokeStyle = "#e3e7ee";
    g.lineWidth = 1;
    for (let i = 1; i < 4; i++) {
      g.beginPath();
      g.moveTo(0, (h * i) / 4);
      g.lineTo(w, (h * i) / 4);
      g.stroke();
    }
    const series = (key, color, labelX) => {
      const top = Math.max(1, ...this.points.map((p) => p[key]));
      const max = top * 1.15;
      g.fillStyle = color;
      g.font = "11px system-ui, sans-serif";
      g.fillText(`max ${Math.round(top).toLocaleString("en-US")}`, labelX, 12);
      g.strokeStyle = color;
      g.lineWidth = 2;
      g.beginPath();
      this.points.forEach((p, i) => {
        // The newest reading at the right edge; the oldest kept at the left.
        const x = (i / Math.max(1, this.points.length - 1)) * w;
        const y = h - 4 - (p[key] / max) * (h - 8);
        if (i === 0) g.moveTo(x, y);
        else g.lineTo(x, y);
      });
      g.stroke();
    };
    series("cps", "#2f6fde", 4);
    series("connections", "#1f9d6b", 90);
    g.fillStyle = "#98a2b3";
    g.fillText(`last ${(60 * POLL_MS) / 1000} s`, w - 60, h - 4);
  },
};

/** The sum of every sample of `name` (all label sets) in a Prometheus text exposition. */
function sumMetric(text, name) {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith(name) && (line[name.length] === " " || line[name.length] === "{")) {
      const v = Number(line.slice(line.lastIndexOf(" ") + 1));
      if (Number.isFinite(v)) sum += v;
    }
  }
  return sum;
}

start();
