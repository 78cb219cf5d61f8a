// What the console and the spectator page share: the token (from the URL fragment, which never
// reaches a server log, or pasted), the game server's address, and formatting.

/** Reads `#token=…` from the URL, keeps it for this tab, and takes it out of the address bar. */
export function tokenFromFragment(storageKey) {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (token) {
    sessionStorage.setItem(storageKey, token);
    history.replaceState(null, "", location.pathname + location.search);
    return token;
  }
  return sessionStorage.getItem(storageKey);
}

/**
 * A new `#token=…` opened in this tab (pasted into the address bar, or a link followed) switches
 * to that identity: the page starts again with it, instead of keeping the old one until a reload.
 */
export function followNewTokens() {
  window.addEventListener("hashchange", () => {
    if (new URLSearchParams(location.hash.slice(1)).get("token")) location.reload();
  });
}

/** `href` with `token` in its fragment (which a browser never sends to a server). */
export function withToken(href, token) {
  return token ? `${href}#token=${encodeURIComponent(token)}` : href;
}

/** The claims of a JWT (unverified: only to show who is signed in and warn of expiry). */
export function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part));
  } catch {
    return null;
  }
}

/** The game server's WebSocket URL, as this admin listener knows it. */
export async function gameUrl() {
  try {
    const config = await (await fetch("/console/config.json")).json();
    const host = config.game_host ?? location.hostname;
    const h = host.includes(":") ? `[${host}]` : host;
    return `ws://${h}:${config.game_port}/v1`;
  } catch {
    return `ws://${location.hostname}:7350/v1`;
  }
}

export const fmt = {
  int: (n) => (n === undefined || n === null ? "—" : Number(n).toLocaleString("en-US")),
  time: (ms) => {
    if (ms === undefined || ms === null) return "—";
    const d = new Date(Number(ms));
    const p = (x, n = 2) => String(x).padStart(n, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
  },
  clock: (ms) => {
    const d = new Date(Number(ms));
    const p = (x) => String(x).padStart(2, "0");
    return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  },
  rate: (milli) => (milli === undefined || milli === null ? "—" : `${(Number(milli) / 1000).toLocaleString("en-US")}`),
  short: (id) => String(id).slice(0, 8) + "…" + String(id).slice(-4),
};

/** An element with attributes and children. */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}
