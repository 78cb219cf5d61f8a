// The JS client against a real `warden serve`: the seed scenario, a command retried across a
// dropped connection that applies once, and a subscription that survives a server restart with
// no gap and no repeat.

import { test } from "node:test";
import net from "node:net";
import assert from "node:assert/strict";
import { connect, ErrorCode, WardenError, newCommandId } from "../src/index.js";
import { startServer, startProxy, token, waitFor } from "./support.js";

const FIXED = { initial_amount: 1000, max_amount: 5000, regen_milli: 0 };

test("the seed scenario runs through the client as the seed says", async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  // A service creates player123's gold without regeneration, so the amounts are exact.
  const service = await connect(server.url, token("backend", "service"));
  const player = await connect(server.url, token("player123"));
  t.after(() => {
    service.close();
    player.close();
  });
  assert.equal(player.welcome.player, "player123");
  assert.equal(player.welcome.role, "player");

  const created = await service.create("gold", { owner: "player123", params: FIXED });
  const id = created.resource_id;
  assert.equal(created.resource.amount, 1000);
  assert.equal((await player.allocate(id, 200, { reason: "Purchase item" })).resource.amount, 800);
  assert.equal((await player.add(id, 500, { reason: "Quest reward" })).resource.amount, 1300);
  const locked = await player.lock(id, "Maintenance", 60_000);
  assert.equal(locked.resource.locked, true);
  assert.equal(locked.resource.lock_reason, "Maintenance");

  await assert.rejects(player.allocate(id, 100), (e) => {
    assert.ok(e instanceof WardenError);
    assert.equal(e.code, ErrorCode.Locked);
    return true;
  });
  assert.equal((await player.unlock(id)).resource.locked, false);
  const last = await player.allocate(id, 100);
  assert.equal(last.resource.amount, 1200);
  assert.equal(last.version, 6);

  const views = await waitFor("the read model at version 6", async () => {
    const list = await player.list();
    return list[0]?.version === 6 ? list : null;
  });
  assert.deepEqual(
    views.map((v) => [v.owner, v.resource_type, v.amount, v.max_amount, v.locked, v.version]),
    [["player123", "gold", 1200, 5000, false, 6]],
  );
  const trail = await player.fullHistory(id);
  assert.deepEqual(
    trail.map((e) => e.event_type),
    ["ResourceCreated", "ResourceAllocated", "ResourceAdded", "ResourceLocked", "ResourceUnlocked", "ResourceAllocated"],
  );
  // Time travel: the state right after the add, with the lock not yet taken.
  const at3 = await player.stateAt(id, { version: 3 });
  assert.equal(at3.version, 3);
  assert.equal(at3.resource.amount, 1300);
  assert.equal(at3.resource.locked, false);
  const now = await player.stateAt(id, { at: Date.now() + 1000 });
  assert.equal(now.version, 6);
  assert.equal(now.resource.amount, 1200);
  await assert.rejects(player.stateAt(id, { at: created.resource.updated_at - 1 }), { code: "before_creation" });

  // Errors carry the protocol's codes.
  const spectator = await connect(server.url, token("viewer", "spectator"));
  t.after(() => spectator.close());
  await assert.rejects(spectator.allocate(id, 1), { code: ErrorCode.Forbidden });
  await assert.rejects(player.allocate(id, 0), { code: "invalid_amount" });
  await assert.rejects(player.get(newCommandId()), { code: ErrorCode.NotFound });
});

test("a command whose reply was lost is resent with its command id and applies once", async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const proxy = await startProxy(server.addr);
  t.after(() => proxy.close());
  const service = await connect(server.url, token("backend", "service"));
  t.after(() => service.close());
  const { resource_id: id } = await service.create("gold", { owner: "alice", params: FIXED });

  const alice = await connect(proxy.url, token("alice"), { requestTimeoutMs: 60_000 });
  t.after(() => alice.close());
  // Given the server's replies are swallowed on the way back,
  proxy.hold = true;
  const pending = alice.allocate(id, 300, { reason: "sword" });
  // when the server has applied the allocate (seen by another client) and the connection drops,
  await waitFor("the allocate to be applied", async () => (await service.get(id)).version === 2);
  proxy.hold = false;
  proxy.cut();
  // then the client reconnects, resends the same command id, and gets the first outcome.
  const applied = await pending;
  assert.equal(alice.connections, 2, "the reply came over a second connection");
  assert.equal(applied.duplicate, true);
  assert.equal(applied.version, 2);
  assert.equal(applied.resource.amount, 700);
  const now = await service.get(id);
  assert.equal(now.amount, 700, "applied once, not twice");
  assert.equal(now.version, 2);
  const trail = await service.fullHistory(id);
  assert.equal(trail.filter((e) => e.event_type === "ResourceAllocated").length, 1);
});

test("a subscription survives a server restart with every version once, in order", async (t) => {
  const first = await startServer();
  const service = await connect(first.url, token("backend", "service"));
  const { resource_id: id } = await service.create("gold", { owner: "bob", params: FIXED });
  service.close();

  // The subscriber reconnects slowly, so changes land while it is away.
  const bob = await connect(first.url, token("bob"), { reconnectMinMs: 4000, reconnectMaxMs: 4000 });
  t.after(() => bob.close());
  const seen = [];
  await bob.subscribe({ resourceId: id }, (r, { baseVersion, version }) => {
    seen.push({ version, baseVersion, amount: r.amount });
  });
  const writer1 = await connect(first.url, token("backend", "service"));
  for (let i = 0; i < 3; i++) await writer1.add(id, 10);
  await waitFor("versions 2..4", () => seen.at(-1)?.version === 4);
  writer1.close();

  // The server stops (closing sessions with 1001) and comes back on the same port and data.
  await first.stop();
  const second = await startServer({ dataDir: first.dataDir, listen: first.addr });
  t.after(() => second.stop());
  const writer2 = await connect(second.url, token("backend", "service"));
  t.after(() => writer2.close());
  for (let i = 0; i < 3; i++) await writer2.add(id, 10);
  assert.equal(bob.connections, 1, "the subscriber is still away while the writes land");
  await waitFor("the subscriber to come back", () => bob.connections === 2);
  for (let i = 0; i < 2; i++) await writer2.add(id, 10);
  await waitFor("version 9", () => seen.at(-1)?.version === 9);
  await new Promise((r) => setTimeout(r, 200));

  assert.deepEqual(
    seen.map((s) => s.version),
    [1, 2, 3, 4, 5, 6, 7, 8, 9],
    "every version once, in order",
  );
  assert.deepEqual(
    seen.map((s) => s.amount),
    [1000, 1010, 1020, 1030, 1040, 1050, 1060, 1070, 1080],
  );
  for (let i = 1; i < seen.length; i++) {
    assert.equal(seen[i].baseVersion, seen[i - 1].version, `no gap before version ${seen[i].version}`);
  }
});

test("a refused token fails connect() with a WardenError", async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  // Under Node the HTTP status is known (a browser only sees a close with 1006: code `closed`).
  await assert.rejects(connect(server.url, "not-a-token"), (e) => e instanceof WardenError && e.code === ErrorCode.Unauthorized);
  const forged = token("alice").slice(0, -4) + "AAAA";
  await assert.rejects(connect(server.url, forged), { code: ErrorCode.Unauthorized });
  await assert.rejects(connect(server.url.replace("/v1", "/v9"), token("alice")), { code: ErrorCode.NotFound });
});

// Guards against connect() giving up at once while the server is still starting (a deploy, a
// restart): it keeps trying for connectTimeoutMs, and an unreachable server is reported after it.
test("connect() waits for a server that is not up yet, and gives up after connectTimeoutMs", async (t) => {
  const port = await new Promise((resolve) => {
    const probe = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
  const url = `ws://127.0.0.1:${port}/v1`;
  const started = Date.now();
  await assert.rejects(connect(url, token("alice"), { connectTimeoutMs: 500, reconnectMaxMs: 100 }), {
    code: "closed",
  });
  assert.ok(Date.now() - started >= 500, "kept trying for the whole window");

  const connecting = connect(url, token("alice"), { connectTimeoutMs: 20_000, reconnectMaxMs: 200 });
  await new Promise((r) => setTimeout(r, 700));
  const server = await startServer({ listen: `127.0.0.1:${port}` });
  t.after(() => server.stop());
  const client = await connecting;
  t.after(() => client.close());
  assert.equal(client.welcome.player, "alice");
});
