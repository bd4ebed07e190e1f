// What every part of the unit target shares about one unit: where it is
// (its address and the ports of the update API, diagd and backupd, HTTPS
// ones with the certificate's pin when it has one), the transport, the Authorization header built once from the credentials
// (kept here, never in a log or an error), the secrets to blot out of any
// text a unit sends back, and the timer settings. `smallExchange` is the
// request/answer pair of the small calls: its whole answer read as text.
import type { Logger } from "../../lib/log.js";
import { hostPort } from "./unit-errors.js";
import type { UnitPin } from "./tls-peer.js";
import { readText, type Transport, type TransportRequest } from "./transport.js";

export interface UnitContext {
  host: string;
  ports: { update: number; diagd: number; backupd: number };
  transport: Transport;
  /** The pinned certificate: every exchange goes over TLS to the ports above; absent: plain HTTP. */
  tls?: UnitPin;
  /** "Basic ..." for the update API and backupd. */
  authorization: string;
  /** The password and its header value: never shown. */
  secrets: readonly string[];
  log: Logger;
  /** Bound on a small request (features, switch, testboot, commit, reboot). */
  requestTimeoutMs: number;
  /** An upload or download that makes no progress for this long fails. */
  idleTimeoutMs: number;
}

export interface SmallReply {
  status: number;
  contentType: string | undefined;
  body: string;
}

export function where(unit: UnitContext, port = unit.ports.update): string {
  return hostPort(unit.host, port);
}

/** One small request, its whole answer read (up to 1 MiB), bounded by the request timeout. */
export async function smallExchange(
  unit: UnitContext,
  request: Omit<TransportRequest, "host" | "port"> & { port?: number; authorize?: boolean },
): Promise<SmallReply> {
  const { authorize = true, port = unit.ports.update, ...rest } = request;
  const response = await unit.transport({
    timeoutMs: unit.requestTimeoutMs,
    ...rest,
    host: unit.host,
    port,
    tls: unit.tls,
    headers: { ...(authorize ? { authorization: unit.authorization } : {}), ...rest.headers },
  });
  const contentType = response.headers["content-type"];
  return { status: response.status, contentType, body: await readText(response) };
}
