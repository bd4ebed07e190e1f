// How a unit service goes on the network: the request guard and the
// connection caps on, then one listening socket per address of the unit's
// listen config (lan0 and loopback by default), all serving the same app.
// fastify listens on one address; the others get plain node:http servers
// handing every request to the app's own handler (`app.routing`), closed
// with the app. With the unit's certificate (unit-tls.ts), every address
// also gets a node:https server on the service's TLS port, handed to the
// same handler the same way: one app, so one request guard and one set of
// routes whether a request came in clear or over TLS.
import http from "node:http";
import https from "node:https";
import { networkInterfaces } from "node:os";
import type { FastifyInstance } from "fastify";
import { Rtr7Error, describeError } from "../../lib/errors.js";
import type { Logger } from "../../lib/log.js";
import type { ServiceConfig } from "../unit.js";
import { capConnections, defaultConnectionCaps, type ConnectionCaps } from "./connection-caps.js";
import { installRequestGuard } from "./request-guard.js";
import { localSourcePolicy } from "./sources.js";

export interface UnitListen {
  addresses: string[];
  allowSources: string[];
  names: string[];
}

/** The service's listen config: the unit's (init reads listen.json), else its one address. */
export function listenOf(config: Pick<ServiceConfig, "address" | "listen">): UnitListen {
  return config.listen ?? { addresses: config.address ? [config.address] : [], allowSources: [], names: [] };
}

/** The names a Host header may carry: the unit's hostname (and .local), listen.json's, and its addresses. */
export function unitHostNames(hostname: string, listen: UnitListen): () => ReadonlySet<string> {
  let cached: { at: number; names: Set<string> } | undefined;
  return () => {
    const now = Date.now();
    if (cached !== undefined && now - cached.at < 2000) return cached.names;
    const names = new Set(
      [hostname, `${hostname}.local`, "localhost", ...listen.names, ...listen.addresses]
        .filter((name): name is string => typeof name === "string")
        .map((name) => name.toLowerCase()),
    );
    for (const entries of Object.values(networkInterfaces()))
      for (const entry of entries ?? []) names.add(entry.address.toLowerCase());
    cached = { at: now, names };
    return names;
  };
}

/** Puts the request guard on a service's app; call before the app is ready. */
export function guardUnitApp(
  app: FastifyInstance,
  config: Pick<ServiceConfig, "hostname" | "address" | "listen">,
  log: Logger,
): void {
  const listen = listenOf(config);
  installRequestGuard(app, {
    sources: localSourcePolicy(listen.allowSources),
    hostNames: unitHostNames(config.hostname, listen),
    log,
  });
}

/** The service's HTTPS port and the unit's certificate, for listenUnitApp. */
export interface TlsListen {
  port: number;
  key: string;
  cert: string;
}

/**
 * Listens on every address of the service's listen config, with the
 * connection caps; with `tls`, on its TLS port as well.
 */
export async function listenUnitApp(
  app: FastifyInstance,
  config: Pick<ServiceConfig, "address" | "listen">,
  port: number,
  what: string,
  log: Logger,
  caps: ConnectionCaps = defaultConnectionCaps,
  tls?: TlsListen,
): Promise<void> {
  const [first = "0.0.0.0", ...others] = listenOf(config).addresses;
  const listenError = (address: string, error: unknown, on = port): Rtr7Error =>
    new Rtr7Error("RTR7_ERR_LISTEN", `${what}: listen on tcp ${address}:${on}: ${describeError(error)}`, {
      cause: error,
    });
  const extras: (http.Server | https.Server)[] = [];
  app.addHook("onClose", async () => {
    await Promise.all(
      extras.map(
        (server) =>
          new Promise<void>((resolve) => {
            server.close(() => resolve());
            server.closeAllConnections();
          }),
      ),
    );
  });
  capConnections(app.server, caps, log);
  try {
    await app.listen({ host: first, port });
  } catch (error) {
    throw listenError(first, error);
  }
  const plain = others.map((address) => ({ address, port, tls: undefined }));
  const secure =
    tls === undefined ? [] : [first, ...others].map((address) => ({ address, port: tls.port, tls }));
  for (const { address, port: extraPort, tls: credentials } of [...plain, ...secure]) {
    const handler: http.RequestListener = (request, response) => app.routing(request, response);
    const server = credentials
      ? https.createServer({ key: credentials.key, cert: credentials.cert }, handler)
      : http.createServer(handler);
    server.keepAliveTimeout = app.server.keepAliveTimeout;
    // An upload's "Expect: 100-continue" is the app's to answer, as on its own server.
    server.on("checkContinue", (request, response) => app.server.emit("checkContinue", request, response));
    capConnections(server, caps, log);
    extras.push(server);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(extraPort, address, () => {
          server.off("error", reject);
          resolve();
        });
      });
    } catch (error) {
      await app.close();
      throw listenError(address, error, extraPort);
    }
  }
  const tlsText = tls === undefined ? "" : `, https on ${tls.port}`;
  log.info(
    { event: "listening", addresses: [first, ...others], port, tlsPort: tls?.port },
    `${what} listening on ${[first, ...others].map((address) => `${address}:${port}`).join(", ")}${tlsText}`,
  );
}
