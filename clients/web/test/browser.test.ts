/**
 * The page in a real browser: Debian's headless Chromium (driven by playwright-core)
 * loads clients/web's build from a plain Node HTTP server, books a session over
 * gRPC-Web against the real `talentshare up` (CORS_ALLOWED_ORIGINS = the page's
 * origin), and its my page table turns PAID / REQUESTED and then, when the manager
 * confirms from this test through the Node client, CONFIRMED, live, without a
 * reload. Leaves a screenshot in target/clients/web-mypage.png.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, readFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { Server } from "node:http";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { chromium } from "playwright-core";
import type { Browser, Page } from "playwright-core";
import { ReservationStatus, createClients } from "@talentshare/sdk/node";
import { ROOT, freePort, startSystem, waitFor } from "../../typescript/dist-test/harness.js";
import type { System } from "../../typescript/dist-test/harness.js";

const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const BUILD = path.join(WEB, "build");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const SCREENSHOT = path.join(ROOT, "target", "clients", "web-mypage.png");
const CUSTOMER = "web-alice";
const TALENT = "web-coach";
const MANAGER = "web-manager";

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".map": "application/json",
};

/** Serves build/ (GET only, no directory listing) on 127.0.0.1:port. */
async function serveBuild(port: number): Promise<Server> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://localhost");
    const name = url.pathname === "/" ? "index.html" : url.pathname.slice(1);
    const file = path.join(BUILD, path.normalize(name));
    if (req.method !== "GET" || !file.startsWith(BUILD + path.sep)) {
      res.writeHead(404).end();
      return;
    }
    readFile(file).then(
      (body) => res.writeHead(200, { "content-type": TYPES[path.extname(file)] ?? "application/octet-stream" }).end(body),
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return server;
}

/** Waits until the booking result says something other than "booking…". */
async function bookingDone(page: Page): Promise<void> {
  await page
    .waitForFunction(
      () => {
        const text = document.getElementById("booking-result")?.textContent ?? "";
        return text !== "" && text !== "booking…";
      },
      null,
      { timeout: 15_000 },
    )
    .catch(() => undefined);
}

function statusCell(page: Page, orderId: string, field: string) {
  return page.locator(`tr[data-order-id="${orderId}"] td[data-field="${field}"]`);
}

/** Waits (polling the DOM, no reload) until the row of `orderId` shows `want` in `field`. */
async function rowShows(page: Page, orderId: string, field: string, want: string): Promise<void> {
  await page.waitForFunction(
    ([id, f, w]) =>
      document.querySelector(`tr[data-order-id="${id}"] td[data-field="${f}"]`)?.textContent?.trim() === w,
    [orderId, field, want] as const,
    { timeout: 30_000, polling: 100 },
  );
}

describe("the page in headless Chromium, over gRPC-Web", () => {
  let system: System;
  let server: Server;
  let browser: Browser;
  let page: Page;
  let origin = "";
  let orderId = "";
  const browserLog: string[] = [];

  before(async () => {
    assert.ok(existsSync(path.join(BUILD, "app.js")), "clients/web is built (npm run build)");
    assert.ok(existsSync(CHROMIUM), `${CHROMIUM} missing: run scripts/node-tools.sh (apt-get install chromium)`);
    const port = await freePort();
    origin = `http://127.0.0.1:${port}`;
    server = await serveBuild(port);
    system = await startSystem({ prefix: "t-web", env: { CORS_ALLOWED_ORIGINS: origin } });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
    page = await browser.newPage({ viewport: { width: 1200, height: 760 } });
    page.on("console", (m) => browserLog.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => browserLog.push(`pageerror: ${e.message}`));
  });

  after(async () => {
    await browser?.close();
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
    await system?.stop();
  });

  const log = () => `\nbrowser log:\n${browserLog.join("\n")}`;

  test("the page opens with the token from the URL fragment and watches my page", async () => {
    const token = await system.token("--customer", CUSTOMER);
    const fragment = new URLSearchParams({ token, order: system.urls.order, mypage: system.urls.mypage });
    await page.goto(`${origin}/#${fragment}`);
    await page.evaluate(() => {
      (window as unknown as { loadedOnce: boolean }).loadedOnce = true;
    });
    assert.equal(new URL(page.url()).hash, "", "the token is taken out of the address bar");
    await page
      .waitForFunction(() => /^(connected|live)/.test(document.getElementById("stream-status")?.textContent ?? ""), null, {
        timeout: 15_000,
      })
      .catch((err: unknown) => assert.fail(`stream not connected: ${String(err)}${log()}`));
  });

  test("booking through the form: PAID, and the row shows PAID / REQUESTED live", async () => {
    await page.fill("#talent", TALENT);
    await page.fill("#minutes", "60");
    await page.fill("#amount", "42000");
    await page.selectOption("#currency", "KRW");
    await page.fill("#card", "4242 4242 4242 4242");
    await page.click("#book");
    await bookingDone(page);
    const result = (await page.textContent("#booking-result")) ?? "";
    assert.match(result, /: PAID$/, `booking result: ${result}${log()}`);
    orderId = (await page.getAttribute("#booking-result", "data-order-id")) ?? "";
    assert.ok(orderId);
    await rowShows(page, orderId, "order-status", "PAID");
    await rowShows(page, orderId, "reservation-status", "REQUESTED");
    assert.equal(await statusCell(page, orderId, "talent").textContent(), TALENT);
  });

  test("the manager confirms (Node client, gRPC): the row turns CONFIRMED without a reload", async () => {
    assert.ok(orderId, "needs the booking");
    const manager = createClients({
      baseUrl: system.urls.reservation,
      token: await system.token("--manager", MANAGER, "--talent", TALENT),
    });
    const reservation = await waitFor("the booking in ListReservations", async () => {
      const { reservations } = await manager.reservations.listReservations({
        talentId: TALENT,
        status: ReservationStatus.REQUESTED,
      });
      return reservations.find((r) => r.orderId === orderId);
    });
    await manager.reservations.confirmReservation({ reservationId: reservation.reservationId, managerId: MANAGER });
    await rowShows(page, orderId, "reservation-status", "CONFIRMED");
    await rowShows(page, orderId, "payment-status", "APPROVED");
    assert.equal(
      await page.evaluate(() => (window as unknown as { loadedOnce?: boolean }).loadedOnce),
      true,
      "the same page load: the change came over the stream",
    );
    await mkdir(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
  });

  test("a bad card: the page shows INVALID_FIELDS and the field from the error details", async () => {
    await page.fill("#card", "1234");
    await page.click("#book");
    await bookingDone(page);
    const result = (await page.textContent("#booking-result")) ?? "";
    assert.match(result, /^InvalidArgument INVALID_FIELDS: .*card_number/, `booking result: ${result}${log()}`);
  });
});
