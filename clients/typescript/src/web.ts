/**
 * @talentshare/sdk/web: clients for browsers, gRPC-Web over fetch. Imports no
 * Node module, so it bundles for the browser as it is.
 */
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { createClientsWith } from "./index.js";
import type { Clients, ClientsOptions } from "./index.js";

export * from "./index.js";

/** Options of the browser `createClients`. */
export interface WebClientsOptions extends ClientsOptions {
  /** Browsers cannot speak plain gRPC; "grpc-web" is the only (and default) choice. */
  transport?: "grpc-web";
}

/**
 * Typed clients for OrderService, ReservationService and MyPageService over
 * gRPC-Web; each call carries the bearer token. The services must allow the
 * page's origin (CORS).
 *
 * @example
 * const { myPage } = createClients({ baseUrl: "https://api.example.com", token: () => session.token });
 */
export function createClients(options: WebClientsOptions): Clients {
  if (options.transport !== undefined && options.transport !== "grpc-web") {
    throw new Error(`@talentshare/sdk/web speaks only "grpc-web", not ${JSON.stringify(options.transport)}`);
  }
  return createClientsWith(options, (baseUrl, interceptors) => createGrpcWebTransport({ baseUrl, interceptors }));
}
