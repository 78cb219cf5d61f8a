// Integers above 2^53 against a real `warden serve`: amounts the wire carries as unsigned 64-bit
// integers arrive exactly as a BigInt and are sent exactly from one, while times and small
// amounts stay plain numbers; a number above 2^53 (which JavaScript cannot hold exactly) is
// refused before it is sent, instead of going out as a float the server refuses.

import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, decodeMessage, encodeMessage } from "../src/index.js";
import { startServer, token } from "./support.js";

test("amounts above 2^53 travel exactly as BigInt; a number there is refused before sending", async (t) => {
  const server = await startServer();
  t.after(() => server.stop());
  const service = await connect(server.url, token("backend", "service"));
  t.after(() => service.close());

  const start = 2n ** 60n;
  const created = await service.create("gems", {
    owner: "alice",
    params: { initial_amount: start, max_amount: 2n ** 62n, regen_milli: 0 },
  });
  assert.equal(created.resource.amount, start);
  assert.equal(created.resource.max_amount, 2n ** 62n);
  assert.equal(typeof created.resource.amount_at, "number", "times stay numbers");
  assert.equal(typeof created.version, "number");

  const step = 2n ** 55n + 1n;
  const added = await service.add(created.resource_id, step, { reason: "hoard" });
  assert.equal(added.resource.amount, start + step, "exact, not rounded to a float");
  assert.equal((await service.get(created.resource_id)).amount, start + step);
  const history = await service.history(created.resource_id);
  assert.equal(history.at(-1).amount, step);

  await assert.rejects(service.add(created.resource_id, 2 ** 55), (e) => {
    assert.equal(e.code, "bad_message");
    assert.match(e.message, /BigInt/);
    return true;
  });
  // Amounts a number holds exactly stay numbers.
  const gold = await service.create("gold", { owner: "bob" });
  assert.equal(typeof gold.resource.amount, "number");
  assert.equal(gold.resource.amount, 1000);
});

test("the codec writes numbers as the integers they are and reads back numbers where exact", () => {
  const at = 1_767_225_600_000; // above 2^32: must go out as an integer, not a float
  const bytes = encodeMessage({ type: "state_at", req: 1, resource_id: "x", at });
  const back = decodeMessage(bytes);
  assert.equal(back.at, at);
  assert.equal(typeof back.at, "number");
  assert.ok(!bytes.includes(0xcb), "no float64 in the frame");
  assert.equal(decodeMessage(encodeMessage({ n: 2n ** 63n })).n, 2n ** 63n);
});
