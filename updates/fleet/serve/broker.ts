// The embedded MQTT broker of `rtr7 fleet serve` (issue 15) for a small
// fleet: aedes 1.x on node:tls, so a fleet needs no broker of its own. TLS
// only: there is no plain MQTT listener, since units log in with a
// password. Who may do what is the rule of lib/wire/jobs.ts, the one
// mosquitto-config.ts writes for an external broker:
//   - login: the server's user (`rtr7-server`, client id `rtr7-server` or
//     `rtr7-server-*`) or an enrolled unit, whose user name is its hostname
//     and whose client id must be that name too, so one unit cannot take
//     over another's session. A wrong user or password gets CONNACK 4 (bad
//     user name or password), a client id that is not the user name CONNACK
//     2 (identifier rejected); both are logged with the peer's address,
//     never the password.
//   - publish: the server anything; a unit only what unitMayPublish allows
//     (its own status, state and job updates). A refused publish is logged
//     and dropped, and aedes closes the unit's connection with no PUBACK
//     (MQTT-3.3.5-2 lets a broker either acknowledge or close; aedes closes):
//     the unit's client sees its socket close, its will fires, and it
//     reconnects with its backoff. mosquitto acknowledges and drops instead.
//   - subscribe: the server anything; a unit only its own jobs/next, with no
//     wildcard. A refused filter gets SUBACK 0x80 (failure) and the
//     connection stays up.
// Retained messages, wills and sessions live in aedes' in-memory
// persistence: a broker restart loses the retained state and jobs/next,
// which units re-publish (status, state) and the server re-publishes (the
// current jobs, from its job store) when they reconnect.
import tls from "node:tls";
import { Aedes, type AuthenticateError, type Client } from "aedes";
import { Rtr7Error, describeError } from "../../../lib/errors.js";
import type { Logger } from "../../../lib/log.js";
import { unitMayPublish, unitMaySubscribe } from "../../../lib/wire/jobs.js";
import { isServerName, serverUsername, type UnitCredentials } from "./unit-credentials.js";

export interface EmbeddedBrokerOptions {
  /** The address to listen on (e.g. "0.0.0.0", "127.0.0.1"). */
  host: string;
  /** 0 picks a free port. */
  port: number;
  tls: { key: string; cert: string };
  credentials: UnitCredentials;
  log: Logger;
  /** Connections at once, TLS handshakes included; more are refused at accept. Default 20,000. */
  maxConnections?: number;
  /** How long a peer may take from TCP accept to CONNECT (ms). Default 30 s. */
  connectTimeoutMs?: number;
}

export interface EmbeddedBroker {
  /** mqtts://host:port */
  url: string;
  port: number;
  /** The aedes instance, for the server's own in-process use and tests. */
  aedes: Aedes;
  close(): Promise<void>;
}

const authError = (returnCode: 2 | 4 | 5, message: string): AuthenticateError =>
  Object.assign(new Error(message), { returnCode });

function peerOf(client: Client | null): string {
  const socket = client?.conn as { remoteAddress?: string; remotePort?: number } | undefined;
  if (!socket?.remoteAddress) return "unknown";
  return socket.remoteAddress.includes(":")
    ? `[${socket.remoteAddress}]:${socket.remotePort}`
    : `${socket.remoteAddress}:${socket.remotePort}`;
}

/** Starts the broker; RTR7_ERR_BROKER when it cannot listen. */
export async function startEmbeddedBroker(options: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
  const log = options.log.child({ subsystem: "broker" });
  const { credentials } = options;
  // Made (or read) before the first login, so a damaged file stops the start, not a unit's CONNECT.
  await credentials.serverCredential();
  /** Each logged-in client's user name. */
  const users = new WeakMap<Client, string>();

  const aedes = await Aedes.createBroker({
    id: "rtr7-fleet-serve",
    // MQTT 3.1's 23 characters are too few for a 63-character hostname.
    maxClientsIdLength: 64,
    connectTimeout: options.connectTimeoutMs ?? 30_000,
    authenticate(client, username, password, done) {
      const peer = peerOf(client);
      const name = username ?? "";
      const secret = password?.toString("utf8") ?? "";
      const refuse = (returnCode: 2 | 4, why: string): void => {
        log.warn({ peer, user: name, clientId: client.id, returnCode }, `login refused: ${why}`);
        done(authError(returnCode, why), false);
      };
      const check = async (): Promise<void> => {
        if (name === serverUsername) {
          if (!(await credentials.checkServer(name, secret)))
            return refuse(4, "wrong password for the server user");
          if (!isServerName(client.id))
            return refuse(2, `the server user's client id must be ${serverUsername} or ${serverUsername}-*`);
        } else {
          if (name === "" || !(await credentials.checkUnit(name, secret)))
            return refuse(4, name === "" ? "no user name" : "unknown unit or wrong password");
          if (client.id !== name) return refuse(2, "a unit's client id must be its hostname");
        }
        users.set(client, name);
        log.info({ peer, user: name }, "logged in");
        done(null, true);
      };
      check().catch((error: unknown) => {
        log.error({ peer, user: name, err: describeError(error) }, "login check failed");
        done(authError(5, "the server could not check the credential"), false);
      });
    },
    authorizePublish(client, packet, done) {
      const user = client ? users.get(client) : undefined;
      if (user === serverUsername && !packet.topic.startsWith("$SYS/")) return done(null);
      if (user !== undefined && user !== serverUsername && unitMayPublish(user, packet.topic))
        return done(null);
      log.warn(
        { peer: peerOf(client), user: user ?? null, clientId: client?.id ?? null, topic: packet.topic },
        "publish refused: dropped, and the client's connection closed",
      );
      done(new Error(`publish to ${packet.topic} refused`));
    },
    authorizeSubscribe(client, subscription, done) {
      const user = users.get(client);
      if (user === serverUsername) return done(null, subscription);
      if (user !== undefined && unitMaySubscribe(user, subscription.topic)) return done(null, subscription);
      log.warn(
        { peer: peerOf(client), user: user ?? null, clientId: client.id, filter: subscription.topic },
        "subscription refused (SUBACK 0x80)",
      );
      done(null, null);
    },
  });

  aedes.on("clientDisconnect", (client) => {
    const user = users.get(client);
    if (user !== undefined) log.debug({ peer: peerOf(client), user }, "disconnected");
  });
  aedes.on("clientError", (client, error) => {
    log.debug({ peer: peerOf(client), clientId: client.id, err: describeError(error) }, "client error");
  });
  aedes.on("connectionError", (client, error) => {
    log.debug({ peer: peerOf(client), err: describeError(error) }, "connection error");
  });

  const server = tls.createServer(
    { key: options.tls.key, cert: options.tls.cert, minVersion: "TLSv1.2" },
    (socket) => aedes.handle(socket),
  );
  server.maxConnections = options.maxConnections ?? 20_000;
  server.on("tlsClientError", (error, socket) => {
    log.debug(
      { peer: `${socket.remoteAddress ?? "unknown"}:${socket.remotePort ?? ""}`, err: describeError(error) },
      "TLS handshake failed",
    );
  });
  server.on("drop", (dropped) => {
    const data = dropped as { remoteAddress?: string; remotePort?: number } | undefined;
    log.warn(
      { peer: `${data?.remoteAddress ?? "unknown"}:${data?.remotePort ?? ""}` },
      "connection refused: too many",
    );
  });

  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(options.port, options.host, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (error) {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    throw new Rtr7Error(
      "RTR7_ERR_BROKER",
      `the embedded broker cannot listen on ${options.host}:${options.port}: ${describeError(error)}`,
      { cause: error },
    );
  }
  server.on("error", (error) => log.error({ err: describeError(error) }, "broker listener error"));
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : options.port;
  const host = options.host.includes(":") ? `[${options.host}]` : options.host;
  log.info({ port, maxConnections: server.maxConnections }, `broker listening on mqtts://${host}:${port}`);

  let closing: Promise<void> | undefined;
  return {
    url: `mqtts://${host}:${port}`,
    port,
    aedes,
    close() {
      closing ??= (async () => {
        const listenerClosed = new Promise<void>((resolve) => server.close(() => resolve()));
        await new Promise<void>((resolve) => aedes.close(() => resolve()));
        await listenerClosed;
      })();
      return closing;
    },
  };
}
