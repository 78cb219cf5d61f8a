// Test support: a real `warden serve` in a temporary data directory, tokens signed with its
// secret, and a TCP proxy that can swallow replies and cut connections.

import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtempSync, existsSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, "../../..");
export const SECRET = "js-client-tests-secret";

/** The server binary: $WARDEN_BIN, else target/debug/warden under $CARGO_TARGET_DIR or the repo. */
export function wardenBin() {
  if (process.env.WARDEN_BIN) return process.env.WARDEN_BIN;
  const target = process.env.CARGO_TARGET_DIR ?? path.join(repoRoot, "target");
  const bin = path.join(target, "debug", "warden");
  if (!existsSync(bin)) {
    throw new Error(`no server binary at ${bin}: run cargo build (or set WARDEN_BIN)`);
  }
  return bin;
}

const tempDirs = [];
process.on("exit", () => {
  // Kept when WARDEN_KEEP_TEMP is set, e.g. to look at the screenshots.
  if (!process.env.WARDEN_KEEP_TEMP) for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
});

/** A temporary directory, removed when the test process ends (unless WARDEN_KEEP_TEMP is set). */
export function tempDir(prefix = "warden-js-") {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  tempDirs.push(dir);
  return dir;
}

/** An HS256 JWT as the server mints them (claims sub, role, iat, exp). */
export function token(player, role = "player", ttlSecs = 3600) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString("base64url");
  const iat = Math.floor(Date.now() / 1000);
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64({ sub: player, role, exp: iat + ttlSecs, iat })}`;
  const sig = createHmac("sha256", SECRET).update(body).digest("base64url");
  return `${body}.${sig}`;
}

/**
 * Starts `warden serve` and waits until it says where it listens. The admin listener is off
 * unless `admin` is an address (e.g. 127.0.0.1:0).
 * @returns {Promise<{url: string, addr: string, admin: string|null, dataDir: string, stop: () => Promise<void>, log: () => string}>}
 */
export async function startServer({ dataDir = tempDir(), listen = "127.0.0.1:0", admin = "off", extraArgs = [] } = {}) {
  const args = ["serve", "--data-dir", dataDir, "--listen", listen, ...extraArgs];
  args.push("--admin-listen", admin);
  const child = spawn(wardenBin(), args, {
    env: { ...process.env, WARDEN_SECRET: SECRET, RUST_LOG: "warden=info" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  const onData = (d) => {
    log += d.toString();
  };
  child.stdout.on("data", onData);
  child.stderr.on("data", onData);
  const exited = new Promise((r) => child.on("exit", r));
  const deadline = Date.now() + 20_000;
  let addr = null;
  let adminAddr = null;
  while (Date.now() < deadline) {
    addr ??= log.match(/ws:\/\/([0-9.]+:[0-9]+)\/v1/)?.[1] ?? null;
    adminAddr ??= log.match(/admin http:\/\/([0-9.]+:[0-9]+)\//)?.[1] ?? null;
    if (addr && (admin === "off" || adminAddr)) break;
    if (child.exitCode !== null) throw new Error(`warden exited early:\n${log}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  if (!addr) {
    child.kill("SIGKILL");
    throw new Error(`warden did not report its address:\n${log}`);
  }
  return {
    url: `ws://${addr}/v1`,
    addr,
    admin: adminAddr ? `http://${adminAddr}` : null,
    dataDir,
    log: () => log,
    /** SIGTERM and wait for the exit (graceful shutdown: sessions closed with 1001). */
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
    },
  };
}

/**
 * A TCP proxy to `target` ("host:port"). While `hold` is on, bytes from the server are
 * swallowed (the client never sees a reply); `cut()` destroys every proxied connection.
 */
export async function startProxy(target) {
  const [host, port] = target.split(":");
  const pairs = new Set();
  const proxy = {
    hold: false,
    url: null,
    cut() {
      for (const [a, b] of pairs) {
        a.destroy();
        b.destroy();
      }
      pairs.clear();
    },
    close() {
      proxy.cut();
      server.close();
    },
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(port), host);
    const pair = [client, upstream];
    pairs.add(pair);
    client.on("data", (d) => upstream.write(d));
    upstream.on("data", (d) => {
      if (!proxy.hold) client.write(d);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
      pairs.delete(pair);
    };
    client.on("close", end);
    upstream.on("close", end);
    client.on("error", end);
    upstream.on("error", end);
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  proxy.url = `ws://127.0.0.1:${server.address().port}/v1`;
  return proxy;
}

/** Polls `check` until it returns a truthy value; fails after `ms`. */
export async function waitFor(what, check, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
