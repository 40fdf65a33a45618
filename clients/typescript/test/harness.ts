/**
 * Test support: runs the real `talentshare up` (target/debug/talentshare) on free
 * ports with its own data directory and broker exchange, mints development tokens
 * with `talentshare token`, and removes the run's broker topology afterwards. The
 * browser test in clients/web uses it too.
 */
import { execFile, spawn } from "node:child_process";
import type { ChildProcess } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import amqp from "amqplib";

const run = promisify(execFile);

/** The repository root: the nearest folder up from here with Cargo.toml and proto/. */
export const ROOT = (() => {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!(existsSync(path.join(dir, "Cargo.toml")) && existsSync(path.join(dir, "proto")))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error("repository root not found above " + fileURLToPath(import.meta.url));
    dir = up;
  }
  return dir;
})();

export const BINARY = process.env.TALENTSHARE_BIN ?? path.join(ROOT, "target", "debug", "talentshare");
const AMQP_URL = process.env.TEST_AMQP_URL ?? "amqp://guest:guest@127.0.0.1:5672/%2f";
const SERVICES = ["order", "payment", "reservation", "mypage"] as const;
type Service = (typeof SERVICES)[number];
const HEALTH_NAMES: Record<Service, string> = {
  order: "talentshare.order.v1.OrderService",
  payment: "talentshare.payment.v1.PaymentService",
  reservation: "talentshare.reservation.v1.ReservationService",
  mypage: "talentshare.mypage.v1.MyPageService",
};

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** A running `talentshare up`. */
export interface System {
  /** http://127.0.0.1:<port> of each service. */
  urls: Record<Service, string>;
  dataDir: string;
  exchange: string;
  /** A development token: `token("--customer", "ts-alice")`. */
  token(...who: string[]): Promise<string>;
  /** What the process wrote to stderr so far (RUST_LOG=warn). */
  stderr(): string;
  /** SIGINT, wait for exit 0, then remove the data directory and the broker topology. */
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Extra environment for `up` (and so for the four services). */
  env?: Record<string, string>;
  /** Exchange name prefix, to tell test runs apart on the broker. */
  prefix?: string;
}

/** Starts `talentshare up` and resolves once all four services are SERVING. */
export async function startSystem(options: StartOptions = {}): Promise<System> {
  if (!existsSync(BINARY)) {
    throw new Error(`${BINARY} not built: run cargo build --workspace --bins --locked first`);
  }
  const ports = {} as Record<Service, number>;
  for (const name of SERVICES) ports[name] = await freePort();
  const dataDir = mkdtempSync(path.join(tmpdir(), "talentshare-ts-"));
  const exchange = `${options.prefix ?? "t-ts"}-${randomUUID().replaceAll("-", "")}.events`;
  const env: NodeJS.ProcessEnv = { ...process.env, EVENTS_EXCHANGE: exchange, RUST_LOG: "warn", ...options.env };
  delete env.DATABASE_URL;
  const args = ["up", "--data-dir", dataDir, "--metrics-port", "0"];
  for (const name of SERVICES) args.push(`--${name}-port`, String(ports[name]));
  const child = spawn(BINARY, args, { env, stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const urls = {} as Record<Service, string>;
  for (const name of SERVICES) urls[name] = `http://127.0.0.1:${ports[name]}`;

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    try {
      await stopProcess(child, exited);
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
      await deleteTopology(exchange);
    }
  };

  try {
    await waitUntilServing(ports, exited, () => stderr);
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
  return {
    urls,
    dataDir,
    exchange,
    token: async (...who: string[]) =>
      (await run(BINARY, ["token", "--data-dir", dataDir, ...who], { encoding: "utf8" })).stdout.trim(),
    stderr: () => stderr,
    stop,
  };
}

async function waitUntilServing(
  ports: Record<Service, number>,
  exited: Promise<number | null>,
  stderr: () => string,
): Promise<void> {
  let exitCode: number | null | undefined;
  void exited.then((code) => {
    exitCode = code;
  });
  const deadline = Date.now() + 60_000;
  for (const name of SERVICES) {
    for (;;) {
      if (exitCode !== undefined) throw new Error(`talentshare up exited (${exitCode}) before serving:\n${stderr()}`);
      const probe = await run(BINARY, [
        "probe",
        "--addr",
        `127.0.0.1:${ports[name]}`,
        "--service",
        HEALTH_NAMES[name],
        "--timeout",
        "1s",
      ]).then(
        () => true,
        () => false,
      );
      if (probe) break;
      if (Date.now() > deadline) throw new Error(`${name} not SERVING after 60s:\n${stderr()}`);
      await sleep(200);
    }
  }
}

async function stopProcess(child: ChildProcess, exited: Promise<number | null>): Promise<void> {
  if (child.exitCode !== null) {
    if (child.exitCode !== 0) throw new Error(`talentshare up had exited with ${child.exitCode}`);
    return;
  }
  child.kill("SIGINT");
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), 30_000);
  });
  const code = await Promise.race([exited, timeout]);
  clearTimeout(timer);
  if (code === "timeout") {
    child.kill("SIGKILL");
    throw new Error("talentshare up did not stop within 30s of SIGINT");
  }
  if (code !== 0) throw new Error(`talentshare up exited with ${code}`);
}

/** Removes a run's exchanges and queues from the shared broker. */
export async function deleteTopology(exchange: string): Promise<void> {
  const connection = await amqp.connect(AMQP_URL);
  try {
    const channel = await connection.createChannel();
    for (const consumer of ["order", "reservation", "mypage"]) {
      for (const queue of [`${exchange}.${consumer}`, `${exchange}.${consumer}.dlq`]) {
        await channel.deleteQueue(queue);
      }
    }
    for (const name of [exchange, `${exchange}.dlx`]) await channel.deleteExchange(name);
    await channel.close();
  } finally {
    await connection.close();
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `fn` until it returns a truthy value (errors count as not yet). */
export async function waitFor<T>(what: string, fn: () => T | Promise<T>, timeoutMs = 30_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await fn();
      if (value) return value as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}` + (last === undefined ? "" : ` (last error: ${String(last)})`));
    }
    await sleep(100);
  }
}
