/**
 * The talentshare story through @talentshare/sdk/node against the real
 * `talentshare up`: place -> PAID/REQUESTED on a live WatchMyPage stream ->
 * the manager confirms -> CONFIRMED -> cancel -> CANCELLED, and the error details
 * a client branches on (INVALID_FIELDS, ORDER_ALREADY_ENDED, TOKEN_MISSING).
 *
 * Each step is its own subtest, so a step that fails (say, a server without the
 * WatchMyPage markers yet) is reported by name while the rest of the story runs.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, test } from "node:test";
import {
  Code,
  ConnectError,
  OrderStatus,
  PaymentStatus,
  ReservationStatus,
  createClients,
  errorDetails,
  timestampFromMs,
} from "@talentshare/sdk/node";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Clients, MyPageEntry, PlaceOrderRequestSchema, WatchMyPageResponse } from "@talentshare/sdk/node";
import { startSystem, waitFor } from "./harness.js";
import type { System } from "./harness.js";

const CUSTOMER = "ts-alice";
const TALENT = "ts-coach";
const MANAGER = "ts-manager";

/** Follows a WatchMyPage stream: every message in order, and the latest entry per order. */
class Watcher {
  readonly messages: WatchMyPageResponse[] = [];
  readonly entries = new Map<string, MyPageEntry>();
  error: unknown;
  private readonly abort = new AbortController();
  readonly done: Promise<void>;

  constructor(clients: Clients) {
    const stream = clients.myPage.watchMyPage(
      { sendSnapshotEnd: true, heartbeatInterval: { seconds: 1n } },
      { signal: this.abort.signal },
    );
    this.done = (async () => {
      try {
        for await (const message of stream) {
          this.messages.push(message);
          if (message.entry) this.entries.set(message.entry.orderId, message.entry);
        }
      } catch (err) {
        if (!this.abort.signal.aborted) this.error = err;
      }
    })();
  }

  /** Waits until the entry of `orderId` satisfies `ok`, failing early if the stream broke. */
  async entry(orderId: string, what: string, ok: (e: MyPageEntry) => boolean): Promise<MyPageEntry> {
    return await waitFor(`my page stream: ${what}`, () => {
      if (this.error !== undefined) throw new Error(`stream failed: ${String(this.error)}`);
      const entry = this.entries.get(orderId);
      return entry && ok(entry) ? entry : undefined;
    });
  }

  close(): Promise<void> {
    this.abort.abort();
    return this.done;
  }
}

function placeRequest(card: string, overrides: Partial<MessageInitShape<typeof PlaceOrderRequestSchema>> = {}) {
  return {
    requestId: randomUUID(),
    customerId: CUSTOMER,
    talentId: TALENT,
    sessionStartTime: timestampFromMs(Date.now() + 30 * 24 * 3600 * 1000),
    sessionMinutes: 60,
    amountMinor: 42000n,
    currency: "KRW",
    cardNumber: card,
    ...overrides,
  } satisfies MessageInitShape<typeof PlaceOrderRequestSchema>;
}

/** Runs `fn`, which must fail, and returns its ConnectError. */
async function failure(fn: () => Promise<unknown>): Promise<ConnectError> {
  try {
    await fn();
  } catch (err) {
    assert.ok(err instanceof ConnectError, `expected a ConnectError, got ${String(err)}`);
    return err;
  }
  assert.fail("the call succeeded");
}

describe("the talentshare story through @talentshare/sdk/node (gRPC over HTTP/2)", () => {
  let system: System;
  let alice: Clients;
  let manager: Clients;
  let watcher: Watcher;
  let orderId = "";

  before(async () => {
    system = await startSystem({ prefix: "t-ts" });
    const baseUrl = { order: system.urls.order, reservation: system.urls.reservation, mypage: system.urls.mypage };
    // Minted once `up` serves, so they are signed with the key it verifies with.
    const aliceToken = await system.token("--customer", CUSTOMER);
    const managerToken = await system.token("--manager", MANAGER, "--talent", TALENT);
    // A token function, as a client that refreshes its token would pass.
    alice = createClients({ baseUrl, token: () => aliceToken, transport: "grpc" });
    manager = createClients({ baseUrl, token: managerToken });
    watcher = new Watcher(alice);
  });

  after(async () => {
    await watcher?.close();
    await system?.stop();
  });

  test("an empty page: the stream's snapshot ends at once (send_snapshot_end)", async () => {
    const first = await waitFor("the first WatchMyPage message", () => watcher.messages[0], 10_000);
    assert.equal(first.snapshotEnd, true, "the first message of an empty page is the snapshot-end marker");
    assert.equal(first.entry, undefined, "a marker has no entry");
  });

  test("PlaceOrder with a good card: PAID at once", async () => {
    const { order } = await alice.orders.placeOrder(placeRequest("4242 4242 4242 4242"));
    assert.ok(order);
    assert.equal(order.status, OrderStatus.PAID);
    assert.equal(order.cardLast4, "4242");
    orderId = order.orderId;
  });

  test("my page streams the order PAID and its booking REQUESTED", async () => {
    assert.ok(orderId, "needs the placed order");
    const entry = await watcher.entry(
      orderId,
      "PAID and REQUESTED",
      (e) => e.orderStatus === OrderStatus.PAID && e.reservationStatus === ReservationStatus.REQUESTED,
    );
    assert.equal(entry.paymentStatus, PaymentStatus.APPROVED);
    assert.ok(entry.reservationId);
  });

  test("the manager finds the booking among the talent's REQUESTED ones and confirms it", async () => {
    assert.ok(orderId, "needs the placed order");
    const reservation = await waitFor("the booking in ListReservations", async () => {
      const { reservations } = await manager.reservations.listReservations({
        talentId: TALENT,
        status: ReservationStatus.REQUESTED,
      });
      return reservations.find((r) => r.orderId === orderId);
    });
    const { reservation: confirmed } = await manager.reservations.confirmReservation({
      reservationId: reservation.reservationId,
      managerId: MANAGER,
    });
    assert.equal(confirmed?.status, ReservationStatus.CONFIRMED);
  });

  test("my page streams CONFIRMED", async () => {
    await watcher.entry(orderId, "CONFIRMED", (e) => e.reservationStatus === ReservationStatus.CONFIRMED);
  });

  test("CancelOrder refunds; my page streams CANCELLED", async () => {
    const { order } = await alice.orders.cancelOrder({ orderId, reason: "ts story" });
    assert.equal(order?.status, OrderStatus.CANCELLED);
    assert.equal(order?.refunded, true);
    const entry = await watcher.entry(
      orderId,
      "CANCELLED",
      (e) => e.orderStatus === OrderStatus.CANCELLED && e.reservationStatus === ReservationStatus.CANCELLED,
    );
    assert.equal(entry.paymentStatus, PaymentStatus.REFUNDED);
  });

  test("resuming WatchMyPage from the last resume_token sends only what changed since", async () => {
    assert.ok(orderId, "needs the placed order");
    const place = async () => {
      const { order } = await alice.orders.placeOrder(placeRequest("4242 4242 4242 4242"));
      assert.ok(order);
      return order.orderId;
    };
    // A second order while watching: the stream's position moves past the first's changes.
    const second = await place();
    await watcher.entry(second, "REQUESTED", (e) => e.reservationStatus === ReservationStatus.REQUESTED);
    const last = [...watcher.messages].reverse().find((m) => m.resumeToken !== "");
    assert.ok(last, "the stream's messages carry resume tokens");
    await watcher.close();
    // Away: a third order is placed and booked.
    const third = await place();
    await waitFor("the third order booked", async () => {
      const { entries } = await alice.myPage.getMyPage({});
      return entries.find((e) => e.orderId === third && e.reservationStatus === ReservationStatus.REQUESTED);
    });
    const seen: string[] = [];
    try {
      for await (const m of alice.myPage.watchMyPage({ sendSnapshotEnd: true, resumeToken: last.resumeToken })) {
        if (m.entry !== undefined) seen.push(m.entry.orderId);
        if (m.snapshotEnd) break;
      }
    } finally {
      watcher = new Watcher(alice);
    }
    assert.ok(seen.includes(third), "what changed while away is sent");
    assert.ok(!seen.includes(orderId), "the first order, unchanged since the token, is not sent again");
  });

  test("a bad request: INVALID_ARGUMENT, reason INVALID_FIELDS, the field named", async () => {
    const err = await failure(() => alice.orders.placeOrder(placeRequest("4242 4242 4242 4242", { currency: "XXX" })));
    assert.equal(err.code, Code.InvalidArgument);
    const details = errorDetails(err);
    assert.equal(details.code, Code.InvalidArgument);
    assert.equal(details.reason, "INVALID_FIELDS", `details: ${JSON.stringify(details)}`);
    assert.equal(details.domain, "talentshare");
    assert.ok(
      details.fieldViolations.some((v) => v.field === "currency" && v.description.length > 0),
      `a violation for currency in ${JSON.stringify(details.fieldViolations)}`,
    );
  });

  test("cancelling a declined order: FAILED_PRECONDITION, reason ORDER_ALREADY_ENDED", async () => {
    const { order } = await alice.orders.placeOrder(placeRequest("4000000000000002"));
    assert.equal(order?.status, OrderStatus.PAYMENT_DECLINED);
    assert.equal(order?.declineReason, "DECLINE_REASON_CARD_DECLINED");
    const declinedId = order?.orderId ?? "";
    const err = await failure(() => alice.orders.cancelOrder({ orderId: declinedId }));
    assert.equal(err.code, Code.FailedPrecondition);
    const details = errorDetails(err);
    assert.equal(details.reason, "ORDER_ALREADY_ENDED", `details: ${JSON.stringify(details)}`);
    assert.equal(details.domain, "talentshare");
    assert.equal(details.metadata["order_id"], declinedId);
    assert.ok(details.metadata["order_status"], "metadata names the order's status");
    assert.deepEqual(
      details.preconditionViolations.map((v) => [v.type, v.subject]),
      [["STATE", `orders/${declinedId}`]],
    );
    assert.equal(details.retryDelayMs, undefined, "no RetryInfo: retrying cannot help");
  });

  test("no token: UNAUTHENTICATED, reason TOKEN_MISSING", async () => {
    const anonymous = createClients({ baseUrl: system.urls.order });
    const err = await failure(() => anonymous.orders.getOrder({ orderId }));
    assert.equal(err.code, Code.Unauthenticated);
    assert.equal(errorDetails(err).reason, "TOKEN_MISSING", `details: ${JSON.stringify(errorDetails(err))}`);
  });

  test("a quiet stream sends heartbeats (heartbeat_interval 1s)", async () => {
    const seen = watcher.messages.length;
    await waitFor("a heartbeat", () => watcher.messages.slice(seen).some((m) => m.heartbeat && !m.entry), 5_000);
  });

  test("the same clients over gRPC-Web (HTTP/1.1) from Node: my page and error details", async () => {
    const token = await system.token("--customer", CUSTOMER);
    const web = createClients({
      baseUrl: { order: system.urls.order, reservation: system.urls.reservation, mypage: system.urls.mypage },
      token,
      transport: "grpc-web",
    });
    const { entry } = await web.myPage.getMyPageEntry({ orderId });
    assert.equal(entry?.orderStatus, OrderStatus.CANCELLED);
    const err = await failure(() => web.orders.placeOrder(placeRequest("4242 4242 4242 4242", { currency: "XXX" })));
    assert.equal(err.code, Code.InvalidArgument);
    assert.equal(errorDetails(err).reason, "INVALID_FIELDS", `details: ${JSON.stringify(errorDetails(err))}`);
  });

  test("errorDetails of something that is not a ConnectError", () => {
    const details = errorDetails(new Error("boom"));
    assert.equal(details.reason, undefined);
    assert.deepEqual(details.fieldViolations, []);
    assert.equal(typeof details.code, "number");
  });
});
