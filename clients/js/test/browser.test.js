// The console and the spectator page in headless Chromium, driven over WebDriver, against a real
// `warden serve`: sign in; a resource created by another client appears; its amount changes live;
// the time slider shows the state at version 2; the table names each wallet and the audit trail
// names who issued each event; the spectator page never shows a lock's reason or
// the regeneration rate. Screenshots go to the test's temp dir (kept with WARDEN_KEEP_TEMP=1), and
// to $WARDEN_CONSOLE_SCREENSHOT when set, which is how docs/img/console.png is made.

import { test } from "node:test";
import assert from "node:assert/strict";
import { copyFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Builder, By, Key, until } from "selenium-webdriver";
import chrome from "selenium-webdriver/chrome.js";
import { connect } from "../src/index.js";
import { startServer, tempDir, token, waitFor } from "./support.js";

const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
const CHROMEDRIVER = process.env.CHROMEDRIVER_BIN ?? "/usr/bin/chromedriver";

async function browser(dir) {
  const options = new chrome.Options()
    .setChromeBinaryPath(CHROMIUM)
    .addArguments(
      "--headless=new",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-dev-shm-usage",
      "--window-size=1400,1080",
      `--user-data-dir=${path.join(dir, "chromium-profile")}`,
    );
  return new Builder()
    .forBrowser("chrome")
    .setChromeOptions(options)
    .setChromeService(new chrome.ServiceBuilder(CHROMEDRIVER))
    .build();
}

async function screenshot(driver, dir, name) {
  const file = path.join(dir, name);
  writeFileSync(file, await driver.takeScreenshot(), "base64");
  return file;
}

/** Waits until the element's text satisfies `ok`, and returns the text. */
async function textOf(driver, locator, ok, what) {
  let last = "";
  try {
    await driver.wait(async () => {
      try {
        const found = await driver.findElements(locator);
        if (found.length === 0) return false;
        last = await found[0].getText();
        return ok(last);
      } catch {
        return false; // re-rendered between finding and reading: look again
      }
    }, 10_000);
  } catch {
    assert.fail(`${what}: last saw ${JSON.stringify(last)}`);
  }
  return last;
}

test("the console: sign in, live resources, and the time slider", async (t) => {
  const dir = tempDir("warden-console-");
  const server = await startServer({ admin: "127.0.0.1:0" });
  t.after(() => server.stop());
  const driver = await browser(dir);
  t.after(() => driver.quit());
  const service = await connect(server.url, token("backend", "service"));
  const player = await connect(server.url, token("alice"));
  t.after(() => {
    service.close();
    player.close();
  });
  // alice already has some wood; the gold comes later, from another client.
  const { resource_id: woodId } = await service.create("wood", {
    owner: "alice",
    name: "wood:camp-3",
    params: { initial_amount: 2400, max_amount: 10000, regen_milli: 0 },
  });

  // Sign in by pasting a token.
  await driver.get(`${server.admin}/`);
  const tokenBox = await driver.wait(until.elementLocated(By.id("token")), 10_000);
  await tokenBox.sendKeys(token("alice"));
  await driver.findElement(By.id("sign-in-button")).click();
  await textOf(driver, By.id("principal"), (s) => s.includes("alice"), "signed in as alice");
  await textOf(driver, By.id("status"), (s) => s === "live", "connected");
  await textOf(driver, By.css("#resources tbody"), (s) => s.includes("wood"), "alice's wood listed");
  // Each row names its wallet (wood is held many times: its name has a label).
  const nameOf = (id) => By.css(`#resources tr[data-id="${id}"] td[data-field="name"]`);
  await textOf(driver, nameOf(woodId), (s) => s === "wood:camp-3", "the wood wallet's name");

  // A resource created by another client appears.
  const created = await service.create("gold", {
    owner: "alice",
    params: { initial_amount: 1000, max_amount: 5000, regen_milli: 500 },
  });
  const id = created.resource_id;
  const amountCell = By.css(`#resources tr[data-id="${id}"] td[data-field="amount"]`);
  await textOf(driver, amountCell, (s) => s.startsWith("1,000"), "the new gold row");
  await textOf(driver, nameOf(id), (s) => s === "gold", "the gold wallet's name");

  // Its amount changes live when a command lands, and the cell is marked as changed.
  // (gold regenerates at 0.5/s: each expected amount is the one the server reported)
  const fmt = (applied) => applied.resource.amount.toLocaleString("en-US");
  // alice spends it herself, by name; the rest is the service's.
  const v2 = fmt(await player.wallet("alice", "gold").allocate(200, "Purchase item")); // 800, or a bit more
  await textOf(driver, amountCell, (s) => s.startsWith(v2), "the amount after the allocate");
  const cls = await driver.findElement(amountCell).getAttribute("class");
  assert.match(cls, /changed/, "the changed cell is marked");
  const v3 = fmt(await service.add(id, 500, { reason: "Quest reward" }));
  await service.lock(id, "Maintenance window", 3_600_000);
  await textOf(driver, amountCell, (s) => s.startsWith(v3), "the amount after the add");

  // Open its audit trail; the slider starts at the latest version (4, locked).
  await driver.findElement(By.css(`#resources tr[data-id="${id}"]`)).click();
  await textOf(driver, By.css("#trail tbody"), (s) => s.includes("Locked"), "the audit trail");
  await textOf(driver, By.css('#owner-view dd[data-field="lock_reason"]'), (s) => s === "Maintenance window", "the lock at version 4");
  // The audit trail names who issued each event.
  const byAt = (v) => By.css(`#trail tr[data-version="${v}"] td[data-field="by"]`);
  await textOf(driver, byAt(1), (s) => s === "backend (service)", "created by the service");
  await textOf(driver, byAt(2), (s) => s === "alice (player)", "the allocate by alice");
  await textOf(driver, byAt(4), (s) => s === "backend (service)", "the lock by the service");

  // The time slider at version 2 shows the state right after the allocate.
  const slider = driver.findElement(By.id("slider"));
  await slider.sendKeys(Key.HOME, Key.ARROW_RIGHT);
  await textOf(driver, By.id("slider-label"), (s) => s.startsWith("Version 2 of 4") && s.endsWith("by alice (player)"), "the slider label");
  await textOf(driver, By.css('#owner-view dd[data-field="amount"]'), (s) => s === v2, "the amount at version 2");
  await textOf(driver, By.css('#owner-view dd[data-field="locked"]'), (s) => s === "no", "not locked at version 2");
  await textOf(driver, By.css('#owner-view dd[data-field="regen_milli"]'), (s) => s === "0.5", "the regeneration rate");
  await textOf(driver, By.css('#spectator-view dd[data-field="regen_milli"]'), (s) => s === "hidden", "hidden from spectators");
  await textOf(driver, By.css('#spectator-view dd[data-field="amount"]'), (s) => s === v2, "the spectator's amount");

  // Back to the lock, for the picture: both views side by side.
  await slider.sendKeys(Key.END);
  await textOf(driver, By.css('#spectator-view dd[data-field="lock_reason"]'), (s) => s === "hidden", "the lock reason hidden");
  await textOf(driver, By.css('#owner-view dd[data-field="lock_reason"]'), (s) => s === "Maintenance window", "the lock reason for the owner");
  // Some traffic elsewhere, so the load chart has something to show.
  const { resource_id: bobs } = await service.create("wood", { owner: "bob", name: "wood:pile" });
  for (let i = 0; i < 30; i++) {
    await Promise.all(Array.from({ length: 1 + (i % 7) * 3 }, () => service.add(bobs, 1)));
    await new Promise((r) => setTimeout(r, 250));
  }
  // One more change while the slider is at the latest version: the slider follows it.
  const v5 = fmt(await service.add(id, 100, { reason: "Daily bonus" }));
  await textOf(driver, By.id("slider-label"), (s) => s.startsWith("Version 5 of 5"), "the slider following live");
  await textOf(driver, By.css('#owner-view dd[data-field="amount"]'), (s) => s === v5, "the latest amount");
  // For the picture: one step back, to the lock (the owner sees its reason, a spectator not).
  await slider.sendKeys(Key.ARROW_LEFT);
  await textOf(driver, By.id("slider-label"), (s) => s.startsWith("Version 4 of 5"), "back to version 4");
  await textOf(driver, By.css('#owner-view dd[data-field="amount"]'), (s) => s === v3, "the amount at version 4");
  await driver.executeScript("document.activeElement.blur()");
  const shot = await screenshot(driver, dir, "console.png");
  if (process.env.WARDEN_CONSOLE_SCREENSHOT) copyFileSync(shot, process.env.WARDEN_CONSOLE_SCREENSHOT);
  t.diagnostic(`screenshot: ${shot}`);

  // The spectator page link carries the token (in its fragment), so it opens signed in.
  const watchHref = await driver.findElement(By.id("watch-link")).getAttribute("href");
  assert.match(watchHref, /\/watch\?owner=alice#token=/);
  // A new #token= opened in this tab switches identity without a manual reload.
  await driver.get(`${server.admin}/#token=${token("bob")}`);
  await textOf(driver, By.id("principal"), (s) => s.includes("bob"), "signed in as bob after a new #token=");
  await textOf(driver, By.css("#resources tbody"), (s) => s.includes("wood:pile"), "bob's wood listed");
});

test("the spectator page never shows a lock's reason or the regeneration rate", async (t) => {
  const dir = tempDir("warden-watch-");
  const server = await startServer({ admin: "127.0.0.1:0" });
  t.after(() => server.stop());
  const driver = await browser(dir);
  t.after(() => driver.quit());
  const service = await connect(server.url, token("backend", "service"));
  t.after(() => service.close());
  const { resource_id: id } = await service.create("gold", {
    owner: "carol",
    params: { initial_amount: 1000, max_amount: 5000, regen_milli: 1234 },
  });

  await driver.get(`${server.admin}/watch?owner=carol#token=${token("viewer", "spectator")}`);
  const card = By.css(`.watch-card[data-id="${id}"]`);
  await textOf(driver, card, (s) => s.includes("1,000"), "carol's gold on the spectator page");
  // The token left the address bar.
  assert.ok(!(await driver.getCurrentUrl()).includes("token="), "the token is taken out of the URL");

  await service.lock(id, "Secret raid plan", 3_600_000);
  await service.allocate(id, 1, { reason: "x" }).catch(() => {}); // refused while locked
  // (gold regenerates here, so the amount is whatever the add left: 1,250 and a little more)
  const { resource } = await service.add(id, 250, { reason: "Hidden quest" });
  const amount = resource.amount.toLocaleString("en-US");
  const text = await textOf(driver, card, (s) => s.includes(amount) && /locked/i.test(s), "the lock and the new amount live");
  const html = await driver.getPageSource();
  for (const secret of ["Secret raid plan", "1.234", "1,234", "Hidden quest"]) {
    assert.ok(!html.includes(secret), `the spectator page shows ${JSON.stringify(secret)}`);
  }
  assert.ok(!/regen/i.test(text), "no regeneration shown");
  t.diagnostic(`screenshot: ${await screenshot(driver, dir, "watch.png")}`);
});
