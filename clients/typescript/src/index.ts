/**
 * @talentshare/sdk: typed clients for talentshare's public services
 * (OrderService, ReservationService, MyPageService) and its error details.
 *
 * This module is the transport-free core: it imports neither Node's nor the
 * browser's networking. Use `@talentshare/sdk/node` (gRPC over HTTP/2) or
 * `@talentshare/sdk/web` (gRPC-Web over fetch) for `createClients`; both
 * re-export everything here.
 */
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import type { Client, Interceptor, Transport } from "@connectrpc/connect";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  PreconditionFailureSchema,
  RetryInfoSchema,
} from "./gen-google/google/rpc/error_details_pb.js";
import type { ErrorReason } from "./gen/talentshare/common/v1/errors_pb.js";
import { MyPageService } from "./gen/talentshare/mypage/v1/mypage_pb.js";
import { OrderService } from "./gen/talentshare/order/v1/order_pb.js";
import { ReservationService } from "./gen/talentshare/reservation/v1/reservation_pb.js";

export * from "./gen/talentshare/common/v1/errors_pb.js";
export * from "./gen/talentshare/common/v1/types_pb.js";
export * from "./gen/talentshare/mypage/v1/mypage_pb.js";
export * from "./gen/talentshare/order/v1/order_pb.js";
export * from "./gen/talentshare/reservation/v1/reservation_pb.js";
/** The google.rpc error-detail messages (ErrorInfo, BadRequest, ...) and their schemas. */
export * as rpc from "./gen-google/google/rpc/error_details_pb.js";
export { Code, ConnectError } from "@connectrpc/connect";
export type { CallOptions, Client, Interceptor, Transport } from "@connectrpc/connect";
export { timestampDate, timestampFromDate, timestampFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
export type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";

/** How calls travel: gRPC over HTTP/2 (Node only) or gRPC-Web over HTTP/1.1 or 2. */
export type TransportKind = "grpc" | "grpc-web";

/**
 * The end user's token, sent as `authorization: Bearer <token>` on every call:
 * a string, or a function called before each call (return a fresh token there
 * to refresh it; `undefined` sends no header).
 */
export type TokenSource = string | (() => string | undefined | Promise<string | undefined>);

/** Where each service answers, when they are not all behind one address. */
export interface ServiceUrls {
  order: string;
  reservation: string;
  mypage: string;
}

/** Options common to every `createClients`. */
export interface ClientsOptions {
  /**
   * One base URL for all three services (a gateway, e.g. "https://api.example.com"),
   * or one per service (`talentshare up` serves each on its own port).
   */
  baseUrl: string | ServiceUrls;
  /** The bearer token; omit it to call without one (every call is then UNAUTHENTICATED). */
  token?: TokenSource;
  /** More interceptors, run after the one that adds the token. */
  interceptors?: Interceptor[];
}

/** The typed clients `createClients` returns. */
export interface Clients {
  orders: Client<typeof OrderService>;
  reservations: Client<typeof ReservationService>;
  myPage: Client<typeof MyPageService>;
}

/** An interceptor that adds `authorization: Bearer <token>` to every call. */
export function bearerToken(token: TokenSource): Interceptor {
  return (next) => async (req) => {
    const value = typeof token === "function" ? await token() : token;
    if (value) {
      req.header.set("authorization", `Bearer ${value}`);
    }
    return await next(req);
  };
}

/**
 * Builds the clients on transports made by `makeTransport` (one per distinct base
 * URL). `@talentshare/sdk/node` and `@talentshare/sdk/web` call this with their
 * transport; call it yourself for a transport of your own.
 */
export function createClientsWith(
  options: ClientsOptions,
  makeTransport: (baseUrl: string, interceptors: Interceptor[]) => Transport,
): Clients {
  const urls: ServiceUrls =
    typeof options.baseUrl === "string"
      ? { order: options.baseUrl, reservation: options.baseUrl, mypage: options.baseUrl }
      : options.baseUrl;
  const interceptors = [
    ...(options.token === undefined ? [] : [bearerToken(options.token)]),
    ...(options.interceptors ?? []),
  ];
  const transports = new Map<string, Transport>();
  const transportFor = (baseUrl: string): Transport => {
    let transport = transports.get(baseUrl);
    if (transport === undefined) {
      transport = makeTransport(baseUrl, interceptors);
      transports.set(baseUrl, transport);
    }
    return transport;
  };
  return {
    orders: createClient(OrderService, transportFor(urls.order)),
    reservations: createClient(ReservationService, transportFor(urls.reservation)),
    myPage: createClient(MyPageService, transportFor(urls.mypage)),
  };
}

/** A reason talentshare documents (talentshare.common.v1.ErrorReason without its prefix). */
export type KnownErrorReason = Exclude<keyof typeof ErrorReason, "UNSPECIFIED">;

/** One offending request field (google.rpc.BadRequest.FieldViolation). */
export interface FieldViolation {
  field: string;
  description: string;
}

/** One state that blocked the call (google.rpc.PreconditionFailure.Violation). */
export interface PreconditionViolation {
  type: string;
  subject: string;
  description: string;
}

/** What a failed call says, read from its status and its google.rpc details. */
export interface ErrorDetails {
  /** The gRPC status code. */
  code: Code;
  /** The status message, for people (it may change: branch on `reason`). */
  message: string;
  /** google.rpc.ErrorInfo.reason, e.g. "ORDER_ALREADY_ENDED"; undefined without ErrorInfo. */
  reason: KnownErrorReason | (string & {}) | undefined;
  /** google.rpc.ErrorInfo.domain ("talentshare"); undefined without ErrorInfo. */
  domain: string | undefined;
  /** google.rpc.ErrorInfo.metadata (ids and states the reason names). */
  metadata: Record<string, string>;
  /** google.rpc.BadRequest field violations (INVALID_ARGUMENT). */
  fieldViolations: FieldViolation[];
  /** google.rpc.PreconditionFailure violations (FAILED_PRECONDITION). */
  preconditionViolations: PreconditionViolation[];
  /** google.rpc.RetryInfo.retry_delay in milliseconds, when sending the call again may help. */
  retryDelayMs: number | undefined;
}

/**
 * Reads the machine-readable details of a failed call (see
 * talentshare/common/v1/errors.proto). Anything that is not a ConnectError
 * reads as an error without details.
 */
export function errorDetails(err: unknown): ErrorDetails {
  const error = ConnectError.from(err);
  const [info] = error.findDetails(ErrorInfoSchema);
  const fieldViolations = error
    .findDetails(BadRequestSchema)
    .flatMap((d) => d.fieldViolations.map((v) => ({ field: v.field, description: v.description })));
  const preconditionViolations = error
    .findDetails(PreconditionFailureSchema)
    .flatMap((d) => d.violations.map((v) => ({ type: v.type, subject: v.subject, description: v.description })));
  const [retry] = error.findDetails(RetryInfoSchema);
  const delay = retry?.retryDelay;
  return {
    code: error.code,
    message: error.rawMessage,
    reason: info?.reason,
    domain: info?.domain,
    metadata: { ...(info?.metadata ?? {}) },
    fieldViolations,
    preconditionViolations,
    retryDelayMs: delay === undefined ? undefined : Number(delay.seconds) * 1000 + Math.round(delay.nanos / 1e6),
  };
}
