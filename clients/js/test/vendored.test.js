// The console serves a vendored copy of @msgpack/msgpack's browser build (it must work offline,
// with no npm at run time): it must be the very file of the version package-lock.json pins.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { repoRoot } from "./support.js";

test("the console's vendored msgpack is the locked @msgpack/msgpack build", () => {
  const require = createRequire(import.meta.url);
  const pkgDir = path.dirname(require.resolve("@msgpack/msgpack/package.json"));
  const lock = JSON.parse(readFileSync(new URL("../package-lock.json", import.meta.url)));
  const installed = JSON.parse(readFileSync(path.join(pkgDir, "package.json")));
  assert.equal(installed.version, lock.packages["node_modules/@msgpack/msgpack"].version);
  const vendored = readFileSync(path.join(repoRoot, "src/admin/console/vendor/msgpack.min.js"));
  const built = readFileSync(path.join(pkgDir, "dist.umd/msgpack.min.js"));
  assert.ok(vendored.equals(built), "src/admin/console/vendor/msgpack.min.js differs from the npm build: copy it again");
});
