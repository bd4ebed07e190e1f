// Caps on the connections one of the unit's HTTP servers holds: in all
// (net.Server's maxConnections, past which the kernel's accepted socket is
// closed at once) and per source address, so one host's idle or slow
// sockets cannot use up what every other client needs. A connection that
// sends no request within `firstRequestMs` is closed: Node's own timers
// cover a request under way and a kept-alive connection between requests,
// but not one that never sends a byte. Refusals are counted and logged as
// one line a minute, not one per socket.
import type { Server, Socket } from "node:net";
import type { Logger } from "../../lib/log.js";

export interface ConnectionCaps {
  /** Connections at once, from all addresses. Default 128. */
  max: number;
  /** Connections at once from one address. Default 16. */
  perAddress: number;
  /** A connection must send its first request within this long. Default 10 s. */
  firstRequestMs?: number;
}

export const defaultConnectionCaps: ConnectionCaps = { max: 128, perAddress: 16, firstRequestMs: 10_000 };

/** Applies the caps to `server`; returns the count of connections open per address (for tests). */
export function capConnections(
  server: Server,
  caps: ConnectionCaps,
  log: Logger,
  now: () => number = Date.now,
): ReadonlyMap<string, number> {
  server.maxConnections = caps.max;
  const open = new Map<string, number>();
  const requested = new WeakSet<Socket>();
  let refused = 0;
  let lastReport = 0;
  server.on("connection", (socket: Socket) => {
    const address = socket.remoteAddress ?? "";
    const count = open.get(address) ?? 0;
    if (count >= caps.perAddress) {
      refused += 1;
      if (now() - lastReport >= 60_000) {
        log.warn(
          { peer: address, event: "connections-refused", refused },
          `${address} holds ${count} connections (at most ${caps.perAddress}); refused ${refused} connection(s) since the last report`,
        );
        refused = 0;
        lastReport = now();
      }
      socket.destroy();
      return;
    }
    open.set(address, count + 1);
    // Until its first request: a socket timeout, which Node's HTTP server
    // answers by destroying the socket; the request handler below clears it.
    if (caps.firstRequestMs !== undefined) {
      socket.setTimeout(caps.firstRequestMs);
      socket.once("timeout", () => {
        if (!requested.has(socket)) socket.destroy();
      });
    }
    socket.once("close", () => {
      const left = (open.get(address) ?? 1) - 1;
      if (left === 0) open.delete(address);
      else open.set(address, left);
    });
  });
  server.on("request", (request: { socket: Socket }) => {
    if (caps.firstRequestMs === undefined || requested.has(request.socket)) return;
    requested.add(request.socket);
    request.socket.setTimeout(0);
  });
  return open;
}
