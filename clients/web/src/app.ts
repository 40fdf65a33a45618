/**
 * The talentshare page: book a session (OrderService.PlaceOrder) and follow my page
 * live (MyPageService.WatchMyPage), both over gRPC-Web through @talentshare/sdk/web.
 *
 * The URL fragment can fill the connection and connect at once:
 * `#token=<jwt>&order=http://127.0.0.1:50051&mypage=http://127.0.0.1:50054`.
 */
import {
  Code,
  OrderStatus,
  PaymentStatus,
  ReservationStatus,
  createClients,
  errorDetails,
  timestampDate,
  timestampFromDate,
} from "@talentshare/sdk/web";
import type { Clients, MyPageEntry, Timestamp } from "@talentshare/sdk/web";

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`#${id} missing`);
  return el as T;
};

const tokenInput = $<HTMLInputElement>("token");
const orderUrlInput = $<HTMLInputElement>("order-url");
const myPageUrlInput = $<HTMLInputElement>("mypage-url");
const bookButton = $<HTMLButtonElement>("book");
const streamStatus = $("stream-status");
const bookingResult = $("booking-result");
const rows = $<HTMLTableSectionElement>("mypage-rows");
const empty = $("empty");

/** Minor units per major unit (ISO 4217): KRW and JPY have none. */
const MINOR_PER_MAJOR: Record<string, number> = { KRW: 1, JPY: 1, USD: 100, EUR: 100, GBP: 100 };

let clients: Clients | undefined;
let watch: AbortController | undefined;
const entries = new Map<string, MyPageEntry>();

/** "PAID" for OrderStatus.PAID; "—" for UNSPECIFIED; the number for a value this page does not know. */
function label(names: Record<number, string>, value: number): string {
  if (value === 0) return "—";
  return names[value] ?? String(value);
}

function time(ts: Timestamp | undefined): string {
  return ts === undefined ? "" : timestampDate(ts).toLocaleString();
}

function money(minor: bigint, currency: string): string {
  const per = MINOR_PER_MAJOR[currency] ?? 1;
  const major = Number(minor) / per;
  return `${major.toLocaleString(undefined, { minimumFractionDigits: per === 1 ? 0 : 2 })} ${currency}`;
}

function setStatus(el: HTMLElement, text: string, kind: "ok" | "error" | "" = ""): void {
  el.textContent = text;
  el.className = kind;
}

function cell(row: HTMLTableRowElement, field: string, text: string, isStatus = false): void {
  const td = document.createElement("td");
  td.dataset.field = field;
  if (isStatus) {
    const span = document.createElement("span");
    span.className = "status";
    span.dataset.value = text;
    span.textContent = text;
    td.append(span);
  } else {
    td.textContent = text;
  }
  row.append(td);
}

function render(): void {
  const sorted = [...entries.values()].sort((a, b) => (a.orderId < b.orderId ? 1 : -1)); // newest first (UUID v7)
  rows.replaceChildren(
    ...sorted.map((e) => {
      const row = document.createElement("tr");
      row.dataset.orderId = e.orderId;
      const id = document.createElement("td");
      id.dataset.field = "order-id";
      const code = document.createElement("code");
      code.textContent = e.orderId.slice(-12);
      code.title = e.orderId;
      id.append(code);
      row.append(id);
      cell(row, "talent", e.talentId);
      cell(row, "session", `${time(e.sessionStartTime)} · ${e.sessionMinutes} min`);
      cell(row, "amount", e.currency ? money(e.amountMinor, e.currency) : "");
      cell(row, "order-status", label(OrderStatus, e.orderStatus), true);
      cell(row, "payment-status", label(PaymentStatus, e.paymentStatus), true);
      cell(row, "reservation-status", label(ReservationStatus, e.reservationStatus), true);
      cell(row, "updated", time(e.updateTime));
      return row;
    }),
  );
  empty.hidden = entries.size > 0;
}

/**
 * Watches my page until aborted, reconnecting after a failure: it resumes from the
 * last resume token received, so a reconnection brings only what changed meanwhile.
 */
async function watchMyPage(c: Clients, signal: AbortSignal): Promise<void> {
  let delayMs = 500;
  let resumeToken = "";
  while (!signal.aborted) {
    setStatus(streamStatus, "connecting…");
    try {
      const stream = c.myPage.watchMyPage(
        { sendSnapshotEnd: true, heartbeatInterval: { seconds: 15n }, resumeToken },
        { signal, onHeader: () => setStatus(streamStatus, "connected", "ok") },
      );
      let live = false;
      for await (const message of stream) {
        delayMs = 500;
        if (message.resumeToken !== "") resumeToken = message.resumeToken;
        if (message.entry !== undefined) {
          entries.set(message.entry.orderId, message.entry);
          render();
        }
        live ||= message.snapshotEnd;
        if (live) setStatus(streamStatus, `live · ${entries.size} booking(s)`, "ok");
      }
    } catch (err) {
      if (signal.aborted) return;
      const d = errorDetails(err);
      setStatus(streamStatus, `my page stream: ${Code[d.code]}${d.reason ? ` ${d.reason}` : ""}: ${d.message}`, "error");
      if (d.code === Code.InvalidArgument && d.fieldViolations.some((v) => v.field === "resume_token")) {
        resumeToken = ""; // a token this server cannot use (say, a replaced store): start afresh
        entries.clear();
        render();
        continue;
      }
      if (d.code === Code.Unauthenticated || d.code === Code.PermissionDenied || d.code === Code.InvalidArgument) {
        return; // a new token is needed: wait for the user
      }
      const wait = d.retryDelayMs ?? delayMs;
      delayMs = Math.min(delayMs * 2, 10_000);
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
}

function connect(): void {
  const token = tokenInput.value.trim();
  if (!token) {
    setStatus(streamStatus, "a token is needed", "error");
    return;
  }
  watch?.abort();
  entries.clear();
  render();
  // The token is read on every call, so pasting a fresh one into the field refreshes it.
  clients = createClients({
    baseUrl: {
      order: orderUrlInput.value.trim(),
      mypage: myPageUrlInput.value.trim(),
      reservation: orderUrlInput.value.trim(), // unused by this page
    },
    token: () => tokenInput.value.trim(),
  });
  bookButton.disabled = false;
  watch = new AbortController();
  void watchMyPage(clients, watch.signal);
}

async function book(form: HTMLFormElement): Promise<void> {
  if (clients === undefined) return;
  const data = new FormData(form);
  const text = (name: string) => String(data.get(name) ?? "").trim();
  const currency = text("currency");
  const start = new Date(text("start"));
  bookButton.disabled = true;
  setStatus(bookingResult, "booking…");
  try {
    const { order } = await clients.orders.placeOrder({
      requestId: crypto.randomUUID(),
      talentId: text("talent"),
      sessionStartTime: Number.isNaN(start.getTime()) ? undefined : timestampFromDate(start),
      sessionMinutes: Number.parseInt(text("minutes"), 10) || 0,
      amountMinor: BigInt(Math.round(Number(text("amount")) * (MINOR_PER_MAJOR[currency] ?? 1))),
      currency,
      cardNumber: text("card"),
    });
    if (order === undefined) throw new Error("PlaceOrder answered without an order");
    bookingResult.dataset.orderId = order.orderId;
    const status = label(OrderStatus, order.status);
    setStatus(
      bookingResult,
      `order ${order.orderId}: ${status}${order.declineReason ? ` (${order.declineReason})` : ""}`,
      order.status === OrderStatus.PAID ? "ok" : "error",
    );
  } catch (err) {
    delete bookingResult.dataset.orderId;
    const d = errorDetails(err);
    const fields = d.fieldViolations.map((v) => `${v.field}: ${v.description}`).join("; ");
    setStatus(bookingResult, `${Code[d.code]}${d.reason ? ` ${d.reason}` : ""}: ${fields || d.message}`, "error");
  } finally {
    bookButton.disabled = false;
  }
}

$<HTMLFormElement>("connect-form").addEventListener("submit", (event) => {
  event.preventDefault();
  connect();
});
$<HTMLFormElement>("book-form").addEventListener("submit", (event) => {
  event.preventDefault();
  void book(event.currentTarget as HTMLFormElement);
});

// A default start time a week from now, on the hour, in local time.
const nextWeek = new Date(Date.now() + 7 * 24 * 3600 * 1000);
nextWeek.setMinutes(0, 0, 0);
const pad = (n: number) => String(n).padStart(2, "0");
$<HTMLInputElement>("start").value =
  `${nextWeek.getFullYear()}-${pad(nextWeek.getMonth() + 1)}-${pad(nextWeek.getDate())}T${pad(nextWeek.getHours())}:00`;

const fragment = new URLSearchParams(location.hash.slice(1));
// Service addresses are taken from a link only together with the token it carries:
// a crafted link must not point the page at another host and wait for the user to
// paste their own token into the form.
if (fragment.get("token")) {
  if (fragment.get("order")) orderUrlInput.value = fragment.get("order") ?? "";
  if (fragment.get("mypage")) myPageUrlInput.value = fragment.get("mypage") ?? "";
  tokenInput.value = fragment.get("token") ?? "";
  // The token should not linger in the address bar or the history.
  history.replaceState(null, "", location.pathname + location.search);
  connect();
}
render();
