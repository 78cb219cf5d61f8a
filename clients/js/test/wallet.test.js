// Wallets addressed by name (`client.wallet(owner, name)`) against a real `warden serve`: two
// clients creating one wallet at once meet at one resource (one of them told it exists); allocate,
// add, lock and unlock by name, with every request naming the wallet, never an id; a command whose
// reply was lost resent with its command id; history and state_at naming who issued each event;
// and a wallet subscription resuming across a dropped connection with no gap.

import { test } from "node:test";
import assert from "node:assert/strict";
import { decode } from "@msgpack/msgpack";
import { WebSocket as NodeWebSocket } from "ws";
import { connect, ErrorCode, Wallet, newCommandId } from "../src/index.js";
import { startServer, startProxy, token, waitFor } from "./support.js";

const FIXED = { initial_amount: 1000, max_amount: 5000, regen_milli: 0 };

/** A WebSocket class that keeps every request the client sends, decoded, in `sent`. */
function recordingWebSocket() {
  const sent = [];
  class Recording extends NodeWebSocket {
    send(data, ...rest) {
      sent.push(decode(new Uint8Array(data)));
      return super.send(data, ...rest);
    }
  }
  return { sent, WebSocket: Recording };
}

test("two clients creating one wallet at once get the same resource, one of them told it exists", async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const alice = await connect(server.url, token("alice"));
  const service = await connect(server.url, token("backend", "service"));
  t.after(() => {
    alice.close();
    service.close();
  });

  // Alice and a service both create alice's gold at the same moment.
  const [mine, theirs] = await Promise.all([alice.create("gold"), service.create("gold", { owner: "alice" })]);
  assert.equal(mine.resource_id, theirs.resource_id, "one wallet, one id");
  assert.deepEqual(
    [mine.existing, theirs.existing].sort(),
    [false, true],
    "exactly one of the two creates made it; the other found it",
  );
  for (const applied of [mine, theirs]) {
    assert.equal(applied.duplicate, false, "two command ids: not a duplicate");
    assert.equal(applied.version, 1);
    assert.equal(applied.resource.name, "gold");
    assert.equal(applied.resource.owner, "alice");
    assert.equal(applied.resource.resource_type, "gold");
  }
  const trail = await alice.fullHistory(mine.resource_id);
  assert.deepEqual(trail.map((e) => e.event_type), ["ResourceCreated"], "created once");

  // The same through a handle, by name: found again, and the wallet is the one created.
  const gold = alice.wallet("alice", "gold");
  assert.ok(gold instanceof Wallet);
  assert.equal(gold.resourceType, "gold");
  const again = await gold.create();
  assert.equal(again.existing, true);
  assert.equal(again.resource_id, mine.resource_id);
  assert.equal((await gold.get()).id, mine.resource_id);
  // Resending one create's command id is still a duplicate (its first outcome), not `existing`.
  const commandId = newCommandId();
  const wood = alice.wallet("alice", "wood:camp-3");
  const first = await wood.create({ commandId });
  const resent = await wood.create({ commandId });
  assert.deepEqual([first.existing, first.duplicate], [false, false]);
  assert.deepEqual([resent.existing, resent.duplicate], [false, true]);
  assert.equal(resent.resource_id, first.resource_id);
  assert.equal(first.resource.name, "wood:camp-3");
  assert.equal(first.resource.resource_type, "wood");

  // A type held many times needs a `<type>:<label>` name; each label is another wallet.
  await assert.rejects(alice.create("wood"), { code: ErrorCode.InvalidParams });
  const other = await alice.create("wood", { name: "wood:camp-4" });
  assert.notEqual(other.resource_id, first.resource_id);
  // A type held once is named as the type.
  await assert.rejects(alice.create("gold", { name: "gold:spare" }), { code: ErrorCode.InvalidParams });
  const names = (await alice.list()).map((r) => r.name).sort();
  assert.deepEqual(names, ["gold", "wood:camp-3", "wood:camp-4"]);
  // Another owner's wallet is theirs to create (or a service's).
  await assert.rejects(alice.wallet("bob", "gold").create(), { code: ErrorCode.Forbidden });
});

test("allocate, add, lock and unlock by wallet name, each request naming the wallet", async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const service = await connect(server.url, token("backend", "service"));
  const rec = recordingWebSocket();
  const alice = await connect(server.url, token("alice"), { WebSocket: rec.WebSocket });
  t.after(() => {
    service.close();
    alice.close();
  });
  const created = await service.wallet("alice", "gold").create({ params: FIXED });
  assert.equal(created.existing, false);
  const id = created.resource_id;

  const gold = alice.wallet("alice", "gold");
  const spent = await gold.allocate(200, "Purchase item");
  assert.equal(spent.resource_id, id);
  assert.equal(spent.resource.amount, 800);
  assert.equal((await gold.add(500, { reason: "Quest reward" })).resource.amount, 1300);
  const locked = await gold.lock("Maintenance", 60_000);
  assert.equal(locked.resource.locked, true);
  assert.equal(locked.resource.lock_reason, "Maintenance");
  await assert.rejects(gold.allocate(100), { code: ErrorCode.Locked });
  assert.equal((await gold.unlock()).resource.locked, false);
  const last = await alice.allocate({ owner: "alice", name: "gold" }, 100); // the plain form
  assert.equal(last.resource.amount, 1200);
  assert.equal(last.version, 6);
  const now = await gold.get();
  assert.deepEqual([now.id, now.name, now.amount, now.version], [id, "gold", 1200, 6]);
  const at3 = await gold.stateAt({ version: 3 });
  assert.deepEqual([at3.version, at3.resource.amount, at3.resource.locked], [3, 1300, false]);
  assert.equal((await gold.history({ afterVersion: 4, limit: 1 }))[0].event_type, "ResourceUnlocked");

  // Every request named the wallet, none its id.
  const byName = rec.sent.filter((m) => m.type !== "ping");
  assert.deepEqual(
    byName.map((m) => m.type),
    ["allocate", "add", "lock", "allocate", "unlock", "allocate", "get", "state_at", "history"],
  );
  for (const m of byName) {
    assert.deepEqual(m.wallet, { owner: "alice", name: "gold" }, `${m.type} names the wallet`);
    assert.equal(m.resource_id, undefined, `${m.type} sends no resource_id`);
  }
  assert.equal(byName[0].reason, "Purchase item");
  assert.equal(byName[2].duration_ms, 60_000);

  // A wallet nobody created is not found; a wallet is two non-empty strings.
  await assert.rejects(alice.wallet("alice", "mana").get(), { code: ErrorCode.NotFound });
  await assert.rejects(alice.wallet("alice", "mana").add(1), { code: ErrorCode.NotFound });
  assert.throws(() => alice.wallet("alice", ""), { code: ErrorCode.BadMessage });
  await assert.rejects(alice.allocate({ owner: "alice" }, 1), { code: ErrorCode.BadMessage });
  // Someone else's wallet, by name: refused as by id.
  const bob = await connect(server.url, token("bob"));
  t.after(() => bob.close());
  await assert.rejects(bob.wallet("alice", "gold").allocate(1), { code: ErrorCode.Forbidden });
});

test("a wallet command whose reply was lost is resent with its command id and applies once", async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const proxy = await startProxy(server.addr);
  t.after(() => proxy.close());
  const service = await connect(server.url, token("backend", "service"));
  t.after(() => service.close());
  const { resource_id: id } = await service.wallet("alice", "gold").create({ params: FIXED });

  const rec = recordingWebSocket();
  const alice = await connect(proxy.url, token("alice"), { requestTimeoutMs: 60_000, WebSocket: rec.WebSocket });
  t.after(() => alice.close());
  proxy.hold = true;
  const pending = alice.wallet("alice", "gold").allocate(300, "sword");
  await waitFor("the allocate to be applied", async () => (await service.get(id)).version === 2);
  proxy.hold = false;
  proxy.cut();
  const applied = await pending;
  assert.equal(alice.connections, 2, "the reply came over a second connection");
  assert.equal(applied.duplicate, true);
  assert.equal(applied.existing, false);
  assert.equal(applied.resource.amount, 700);
  const sends = rec.sent.filter((m) => m.type === "allocate");
  assert.equal(sends.length, 2, "sent twice");
  assert.equal(sends[0].command_id, sends[1].command_id, "with one command id");
  assert.notEqual(sends[0].req, sends[1].req);
  assert.deepEqual(sends[1].wallet, { owner: "alice", name: "gold" });
  assert.equal((await service.get(id)).amount, 700, "applied once");
});

test("history and state_at say who issued each event: player, service or the server", async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const service = await connect(server.url, token("backend", "service"));
  const alice = await connect(server.url, token("alice"));
  const viewer = await connect(server.url, token("viewer", "spectator"));
  t.after(() => {
    service.close();
    alice.close();
    viewer.close();
  });
  const gold = alice.wallet("alice", "gold");
  await service.wallet("alice", "gold").create({ params: FIXED });
  await gold.allocate(10, "potion");
  await service.add({ owner: "alice", name: "gold" }, 50, { reason: "refund" });
  await gold.lock("trade", 100);
  // The lock runs out; the server records its expiry (at the latest before the next command).
  await new Promise((r) => setTimeout(r, 300));
  await gold.add(1);
  const trail = await waitFor("the lock expiry in the history", async () => {
    const events = await gold.fullHistory();
    return events.some((e) => e.event_type === "ResourceLockExpired") ? events : null;
  });
  const who = (type) => trail.filter((e) => e.event_type === type).map((e) => [e.by, e.by_role]);
  assert.deepEqual(who("ResourceCreated"), [["backend", "service"]]);
  assert.deepEqual(who("ResourceAllocated"), [["alice", "player"]]);
  assert.deepEqual(who("ResourceAdded"), [
    ["backend", "service"],
    ["alice", "player"],
  ]);
  assert.deepEqual(who("ResourceLocked"), [["alice", "player"]]);
  assert.deepEqual(who("ResourceLockExpired"), [["server", "server"]]);
  for (const e of trail) assert.ok(["player", "service", "server", "unknown"].includes(e.by_role), e.event_type);
  // The same trail as the service reads it.
  assert.deepEqual(await service.fullHistory({ owner: "alice", name: "gold" }), trail);

  // state_at names the issuer of that version to the owner and services,
  const v2 = await gold.stateAt({ version: 2 });
  assert.deepEqual([v2.by, v2.by_role], ["alice", "player"]);
  const v1 = await service.stateAt(v2.resource.id, { version: 1 });
  assert.deepEqual([v1.by, v1.by_role], ["backend", "service"]);
  // not to anyone else, who may not read the history either.
  const seen = await viewer.wallet("alice", "gold").stateAt({ version: 2 });
  assert.equal(seen.resource.amount, 990);
  assert.equal(seen.by, undefined);
  assert.equal(seen.by_role, undefined);
  await assert.rejects(viewer.wallet("alice", "gold").history(), { code: ErrorCode.Forbidden });
});

test("a wallet subscription resumes across a dropped connection with every version once", async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const proxy = await startProxy(server.addr);
  t.after(() => proxy.close());
  const service = await connect(server.url, token("backend", "service"));
  t.after(() => service.close());
  const { resource_id: id } = await service.wallet("carol", "wood:north").create({ params: FIXED });
  await service.wallet("carol", "wood:south").create({ params: FIXED }); // not followed

  const rec = recordingWebSocket();
  // carol reconnects slowly, so changes land while she is away.
  const carol = await connect(proxy.url, token("carol"), { reconnectMinMs: 1500, reconnectMaxMs: 1500, WebSocket: rec.WebSocket });
  t.after(() => carol.close());
  const north = carol.wallet("carol", "wood:north");
  const seen = [];
  const sub = await north.subscribe((r, { version }) => seen.push({ id: r.id, name: r.name, version, amount: r.amount }));
  assert.equal(sub.resourceId, id, "the wallet's id, learned from the server");
  assert.deepEqual(seen, [{ id, name: "wood:north", version: 1, amount: 1000 }]);
  await north.add(10);
  await service.add({ owner: "carol", name: "wood:south" }, 10);
  await waitFor("version 2", () => seen.at(-1)?.version === 2);

  // The connection drops; changes land while carol is away.
  proxy.cut();
  for (let i = 0; i < 3; i++) await service.wallet("carol", "wood:north").add(10);
  assert.equal(carol.connections, 1, "carol is still away while the writes land");
  await waitFor("carol to come back", () => carol.connections === 2);
  await service.wallet("carol", "wood:north").add(10);
  await waitFor("version 6", () => seen.at(-1)?.version === 6);
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual(seen.map((s) => s.version), [1, 2, 3, 4, 5, 6], "every version once, in order");
  assert.ok(seen.every((s) => s.id === id && s.name === "wood:north"), "only the wallet followed");
  const subscribes = rec.sent.filter((m) => m.type === "subscribe");
  assert.equal(subscribes.length, 2);
  assert.deepEqual(subscribes[0].wallet, { owner: "carol", name: "wood:north" });
  assert.equal(subscribes[0].from_version, undefined);
  assert.deepEqual(subscribes[1].wallet, { owner: "carol", name: "wood:north" }, "resumed by name");
  assert.equal(subscribes[1].from_version, 2, "from the last version delivered");
  assert.equal(subscribes[1].resource_id, undefined);
  await sub.close();

  // From a given version, before the id is known: the changes after it, then live ones.
  const later = [];
  const resumed = await carol.subscribe({ wallet: { owner: "carol", name: "wood:north" }, fromVersion: 4 }, (r, { version }) =>
    later.push(version),
  );
  await waitFor("versions 5 and 6", () => later.length === 2);
  assert.deepEqual(later, [5, 6]);
  assert.equal(resumed.resourceId, id);
  await north.add(1);
  await waitFor("version 7", () => later.at(-1) === 7);
  await resumed.close();

  // Exactly one of resourceId, wallet and owner.
  await assert.rejects(carol.subscribe({ wallet: { owner: "carol", name: "wood:north" }, owner: "carol" }, () => {}), {
    code: ErrorCode.BadMessage,
  });
  await assert.rejects(carol.wallet("carol", "wood:nowhere").subscribe(() => {}), { code: ErrorCode.NotFound });
});
