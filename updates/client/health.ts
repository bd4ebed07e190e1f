// diagd's GET /health.json (port 7733): the unit's verdict on itself. A
// probe is bounded (router7 allows 2 s) and never throws: a unit that does
// not answer in time, or answers something that is not a health report, is
// `undefined`, which is what safe-update's waits poll for. diagd needs no
// password, and is sent none. `probeUnitHealth` asks without a target (no
// credentials, no features asked), for a unit whose update API is down;
// over HTTPS (port 7734) to a unit with a pinned certificate.
import { parseHealthReport, type HealthReport } from "../../lib/wire/health.js";
import { smallExchange, type UnitContext } from "./context.js";
import { silentLogger } from "../../lib/log.js";
import { endpointPorts, type UnitEndpoint } from "./endpoint.js";
import { nodeHttpTransport, type Transport } from "./transport.js";

export async function probeHealth(
  unit: UnitContext,
  timeoutMs = 2000,
  /** Told why a probe came back empty (the survey shows a changed certificate as such). */
  onError?: (error: unknown) => void,
): Promise<HealthReport | undefined> {
  try {
    const reply = await smallExchange(unit, {
      method: "GET",
      path: "/health.json",
      step: "GET /health.json",
      port: unit.ports.diagd,
      timeoutMs,
      headers: { accept: "application/json" },
      authorize: false,
    });
    if (reply.status !== 200) return undefined;
    return parseHealthReport(JSON.parse(reply.body));
  } catch (error) {
    onError?.(error);
    return undefined;
  }
}

export async function probeUnitHealth(
  endpoint: Pick<UnitEndpoint, "host" | "diagdPort" | "tls">,
  options: { transport?: Transport; timeoutMs?: number; onError?: (error: unknown) => void } = {},
): Promise<HealthReport | undefined> {
  const { ports, tls } = endpointPorts(endpoint);
  const diagd = ports.diagd;
  const unit: UnitContext = {
    host: endpoint.host,
    ports: { update: diagd, diagd, backupd: diagd },
    transport: options.transport ?? nodeHttpTransport(),
    tls,
    authorization: "",
    secrets: [],
    log: silentLogger(),
    requestTimeoutMs: options.timeoutMs ?? 2000,
    idleTimeoutMs: options.timeoutMs ?? 2000,
  };
  return probeHealth(unit, options.timeoutMs, options.onError);
}
