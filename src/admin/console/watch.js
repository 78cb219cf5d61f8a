// The spectator page: `/watch?owner=ID#token=…` shows an owner's resources live. It renders only
// what the spectator view holds (name, amount, max, locked), whoever's token it runs with: a lock's
// reason and the regeneration rate never appear on it.

import { WardenClient } from "/assets/warden-client.js";
import { el, fmt, followNewTokens, gameUrl, tokenFromFragment } from "/assets/common.js";

const TOKEN_KEY = "warden.watch.token";
const $ = (id) => document.getElementById(id);
const query = new URLSearchParams(location.search);
const owner = query.get("owner");
if (query.get("overlay") === "1") document.body.classList.add("overlay");

const cards = new Map();

async function start() {
  if (!owner) {
    $("title").textContent = "Add ?owner=PLAYER to the address to watch a player's resources.";
    return;
  }
  $("title").textContent = `Watching ${owner}`;
  document.title = `${owner} · Warden`;
  followNewTokens();
  const token = tokenFromFragment(TOKEN_KEY);
  if (token) return watch(token);
  $("sign-in-form").hidden = false;
  $("sign-in-form").addEventListener("submit", (e) => {
    e.preventDefault();
    watch($("token").value.trim());
  });
}

async function watch(token) {
  const client = new WardenClient(await gameUrl(), token);
  try {
    await client.ready();
  } catch {
    client.close();
    sessionStorage.removeItem(TOKEN_KEY);
    $("sign-in-form").hidden = false;
    $("sign-in-error").textContent = "Could not connect with this token.";
    $("sign-in-error").hidden = false;
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("sign-in-form").hidden = true;
  client.on("close", () => ($("status").textContent = "reconnecting…"));
  client.on("open", () => ($("status").textContent = ""));
  let loaded = false;
  await client.subscribe({ owner }, (r) => show(r, loaded));
  loaded = true;
  if (cards.size === 0) $("status").textContent = "No resources yet.";
}

function show(r, live) {
  $("status").textContent = "";
  let card = cards.get(r.id);
  if (!card) {
    card = el(
      "div",
      { class: "watch-card", "data-id": r.id },
      el("div", { class: "type" }),
      el("div", { class: "amount" }),
      el("div", { class: "meter" }, el("span")),
      el("div", { class: "max" }),
      el("span", { class: "badge", hidden: true, text: "locked" }),
    );
    cards.set(r.id, card);
    $("cards").append(card);
  }
  // Only spectator-view fields are read here, never lock_reason, lock_expires_at or regen_milli.
  const pct = r.max_amount ? Math.min(100, (Number(r.amount) / Number(r.max_amount)) * 100) : 0;
  // The wallet's name (two wood wallets are told apart by it); the type for an unnamed one.
  card.querySelector(".type").textContent = r.name ?? r.resource_type;
  card.querySelector(".amount").textContent = fmt.int(r.amount);
  card.querySelector(".meter span").style.width = `${pct.toFixed(1)}%`;
  card.querySelector(".max").textContent = `of ${fmt.int(r.max_amount)}`;
  card.querySelector(".badge").hidden = !r.locked;
  if (live) {
    card.classList.add("changed");
    clearTimeout(card._unmark);
    card._unmark = setTimeout(() => card.classList.remove("changed"), 1500);
  }
}

start();
