// The package as a user installs it: `npm pack`, then the tarball installed into a fresh project
// (its dependencies from the registry), running the README's example against a real server.
// Guards against a package that only works inside this repository (a linked folder has no
// dependencies of its own: ERR_MODULE_NOT_FOUND for @msgpack/msgpack) and a README example that
// no longer runs.

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { startServer, tempDir, token } from "./support.js";

const clientDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

test("the packed tarball installs into a fresh project and runs the README examples", async () => {
  const server = await startServer();
  try {
    const project = tempDir("warden-js-package-");
    execFileSync("npm", ["pack", "--silent", "--pack-destination", project], { cwd: clientDir });
    const tarball = readdirSync(project).find((f) => f.endsWith(".tgz"));
    assert.ok(tarball, "npm pack wrote a tarball");
    writeFileSync(path.join(project, "package.json"), JSON.stringify({ name: "try-warden", private: true, type: "module" }));
    execFileSync("npm", ["install", "--silent", "--no-audit", "--no-fund", `./${tarball}`], { cwd: project });

    const readme = readFileSync(path.join(clientDir, "README.md"), "utf8");
    const example = readme.match(/## Example\n+```js\n([\s\S]*?)```/)?.[1];
    assert.ok(example, "the README has an example");
    assert.ok(example.includes("ws://127.0.0.1:7350/v1"), "the example targets the default port");
    writeFileSync(path.join(project, "example.js"), example.replaceAll("ws://127.0.0.1:7350/v1", server.url));
    const out = execFileSync(process.execPath, ["example.js"], {
      cwd: project,
      env: { ...process.env, WARDEN_TOKEN: token("alice") },
      encoding: "utf8",
      timeout: 30_000,
    });
    assert.match(out, /^v\d+: 800$/m, "the subscription saw the purchase");
    assert.match(out, /^insufficient$/m, "the refused allocate names its code");
    assert.match(out, /amount: 1000/, "stateAt gave the state right after creation");

    // The wallets example, as another player (whose wallets do not exist yet).
    const wallets = readme.match(/## Wallets by name\n[\s\S]*?```js\n([\s\S]*?)```/)?.[1];
    assert.ok(wallets, "the README has a wallets example");
    writeFileSync(path.join(project, "wallets.js"), wallets.replaceAll("ws://127.0.0.1:7350/v1", server.url));
    const said = execFileSync(process.execPath, ["wallets.js"], {
      cwd: project,
      env: { ...process.env, WARDEN_TOKEN: token("dana") },
      encoding: "utf8",
      timeout: 30_000,
    });
    assert.match(said, /^false\ntrue$/m, "created, then found");
    assert.match(said, /^wood:camp-3 v2: 40$/m, "the wallet subscription saw the add");
    assert.match(said, /^1 ResourceCreated by dana \(player\)$/m, "history names the issuer");
    assert.match(said, /^2 ResourceAllocated by dana \(player\)$/m);
  } finally {
    await server.stop();
  }
});
