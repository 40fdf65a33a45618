/**
 * @talentshare/sdk/node: clients for Node, gRPC over HTTP/2 straight to the
 * services (or gRPC-Web, for a proxy that speaks only that).
 */
import { createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { createClientsWith } from "./index.js";
import type { Clients, ClientsOptions, TransportKind } from "./index.js";

export * from "./index.js";

/** Options of the Node `createClients`. */
export interface NodeClientsOptions extends ClientsOptions {
  /** "grpc" (the default): gRPC over HTTP/2; "grpc-web": gRPC-Web over HTTP/1.1. */
  transport?: TransportKind;
}

/**
 * Typed clients for OrderService, ReservationService and MyPageService; each call
 * carries the bearer token.
 *
 * @example
 * const { orders } = createClients({ baseUrl: "http://127.0.0.1:50051", token });
 */
export function createClients(options: NodeClientsOptions): Clients {
  const kind = options.transport ?? "grpc";
  return createClientsWith(options, (baseUrl, interceptors) =>
    kind === "grpc-web"
      ? createGrpcWebTransport({ baseUrl, httpVersion: "1.1", interceptors })
      : createGrpcTransport({ baseUrl, interceptors }),
  );
}
