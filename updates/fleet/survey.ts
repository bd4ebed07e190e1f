// Where every known unit stands: each unit discover.ts found is asked for
// diagd's /health.json (port 7733, no password), all at once but at most
// `concurrency` at a time, each bounded by a 2 s probe (router7's own limit).
// A unit is asked over HTTPS (port 7734) when its certificate is pinned, and
// a first contact pins it (updates/client/unit-connection.ts); a unit whose
// certificate changed is sent nothing and shown as such, with the command
// that accepts it on purpose.
// What answers is noted in the fleet store (store.ts), so a unit that is
// silent later is shown with when it was last seen and what it ran then.
// `rtr7 fleet ls` prints the rows; `rtr7 fleet update` takes reachableUnits
// as the units a rollout can start on.
//
// A unit that answers as another hostname (an inventory address now held by
// another unit, or two units with one name) is not counted as reachable: a
// rollout must not update a unit with another one's credentials and plan.
import { isRtr7Error } from "../../lib/errors.js";
import type { HealthReport } from "../../lib/wire/health.js";
import type { Logger } from "../../lib/log.js";
import { probeUnitHealth } from "../client/health.js";
import { PlainHttpNotice, unitConnection } from "../client/unit-connection.js";
import type { SeenUnit } from "./store.js";
import type { KnownUnit, UnitSource } from "./discover.js";

/** The part of the fleet store the survey uses. */
export interface SeenStore {
  noteSeen(hostname: string, seen: Omit<SeenUnit, "hostname" | "at"> & { at: Date }): void;
  lastSeen(): Map<string, SeenUnit>;
}

export interface FleetRow {
  hostname: string;
  address: string;
  /** The update API's port. */
  port: number;
  /** True when the unit answered /health.json as itself just now. */
  answered: boolean;
  /** From its answer; else from mDNS's TXT record or the last time it answered; "" when unknown. */
  version: string;
  slot: string;
  trial: boolean | undefined;
  /** "healthy", the unit's first_error, "no answer", or "answers as OTHER". */
  health: string;
  /** ISO 8601: now for a unit that answered, else the last time it did; undefined: never. */
  lastSeen: string | undefined;
  sources: UnitSource[];
  model: string | undefined;
  /** The unit as discovered (inventory entry and all), for a rollout. */
  unit: KnownUnit;
}

export interface SurveyOptions {
  store?: SeenStore;
  /** Default: probeUnitHealth, 2 s, over the connection unit-connection.ts picks. */
  probe?: (unit: KnownUnit) => Promise<HealthReport | undefined>;
  /** Where certificates are pinned (a first contact records one), and --insecure-http. */
  connection?: { inventoryFile: string; insecureHttp?: boolean; log?: Logger };
  now?: () => Date;
  /** How many probes run at once (default 32). */
  concurrency?: number;
  probeTimeoutMs?: number;
}

export const healthyText = "healthy";
export const noAnswerText = "no answer";

/** Probes every unit and returns one row per unit, in the units' order. */
export async function surveyUnits(units: KnownUnit[], options: SurveyOptions = {}): Promise<FleetRow[]> {
  const timeoutMs = options.probeTimeoutMs ?? 2000;
  const { connection } = options;
  const notice = new PlainHttpNotice();
  /** Units whose certificate is not the pinned one: shown as such, not as silent. */
  const certificateChanged = new Map<string, string>();
  const probe =
    options.probe ??
    (async (unit: KnownUnit) =>
      probeUnitHealth(
        connection
          ? await unitConnection({
              hostname: unit.hostname,
              address: unit.address,
              port: unit.port,
              notice,
              ...connection,
            })
          : { host: unit.address },
        {
          timeoutMs,
          onError: (error) => {
            if (isRtr7Error(error, "RTR7_ERR_UNIT_CERT_CHANGED"))
              certificateChanged.set(
                unit.hostname,
                `certificate changed (${error.code}): check it, then \`rtr7 fleet trust ${unit.hostname}\``,
              );
          },
        },
      ));
  const now = options.now ?? (() => new Date());
  const reports = await mapBounded(units, options.concurrency ?? 32, (unit) =>
    probe(unit).catch(() => undefined),
  );
  const previous = options.store?.lastSeen() ?? new Map<string, SeenUnit>();
  return units.map((unit, index) => {
    const report = reports[index];
    const answeredAsItself =
      report !== undefined && (report.hostname === "" || report.hostname === unit.hostname);
    if (report && answeredAsItself) {
      const at = now();
      options.store?.noteSeen(unit.hostname, {
        address: unit.address,
        version: report.version,
        slot: report.slot,
        trial: report.trial,
        firstError: report.first_error,
        at,
      });
      return {
        ...base(unit),
        answered: true,
        version: report.version,
        slot: report.slot,
        trial: report.trial,
        health: report.first_error === "" ? healthyText : report.first_error,
        lastSeen: at.toISOString(),
      };
    }
    const last = previous.get(unit.hostname);
    return {
      ...base(unit),
      answered: false,
      version: unit.mdns?.version ?? last?.version ?? "",
      slot: unit.mdns?.slot ?? last?.slot ?? "",
      trial: last?.trial,
      health: report
        ? `answers as ${report.hostname}`
        : (certificateChanged.get(unit.hostname) ?? noAnswerText),
      lastSeen: last?.at,
    };
  });
}

function base(
  unit: KnownUnit,
): Omit<FleetRow, "answered" | "version" | "slot" | "trial" | "health" | "lastSeen"> {
  return {
    hostname: unit.hostname,
    address: unit.address,
    port: unit.port,
    sources: unit.sources,
    model: unit.mdns?.model,
    unit,
  };
}

/** The units a rollout can start on: those that answered as themselves. */
export function reachableUnits(rows: FleetRow[]): KnownUnit[] {
  return rows.filter((row) => row.answered).map((row) => row.unit);
}

/** The row as `rtr7 fleet ls --json` prints it (no nested unit; lastSeen null for never). */
export function rowEvent(row: FleetRow): Record<string, unknown> {
  return {
    hostname: row.hostname,
    address: row.address,
    port: row.port,
    answered: row.answered,
    version: row.version,
    slot: row.slot,
    trial: row.trial ?? null,
    health: row.health,
    lastSeen: row.lastSeen ?? null,
    sources: row.sources,
    model: row.model ?? null,
  };
}

export interface SurveySummary {
  units: number;
  answered: number;
  healthy: number;
  unhealthy: number;
  notAnswering: string[];
}

export function surveySummary(rows: FleetRow[]): SurveySummary {
  const answered = rows.filter((row) => row.answered);
  const healthy = answered.filter((row) => row.health === healthyText).length;
  return {
    units: rows.length,
    answered: answered.length,
    healthy,
    unhealthy: answered.length - healthy,
    notAnswering: rows.filter((row) => !row.answered).map((row) => row.hostname),
  };
}

/** The rows as an aligned table for a terminal; times relative to now ("12s ago"). */
export function formatFleetTable(rows: FleetRow[], now: Date = new Date()): string {
  const header = ["HOSTNAME", "ADDRESS", "VERSION", "SLOT", "TRIAL", "HEALTH", "LAST SEEN", "SOURCE"];
  const lines = rows.map((row) => [
    row.hostname,
    row.address,
    row.version || "-",
    row.slot || "-",
    row.trial === undefined ? "-" : row.trial ? "yes" : "no",
    row.health,
    row.answered ? "now" : lastSeenText(row.lastSeen, now),
    row.sources.join("+"),
  ]);
  const widths = header.map((title, column) =>
    Math.max(title.length, ...lines.map((line) => (line[column] ?? "").length)),
  );
  return [header, ...lines]
    .map((line) =>
      line
        .map((cell, column) => (column === line.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)))
        .join("  "),
    )
    .join("\n");
}

function lastSeenText(at: string | undefined, now: Date): string {
  if (at === undefined) return "never";
  const seconds = Math.max(0, Math.round((now.getTime() - Date.parse(at)) / 1000));
  if (seconds < 120) return `${seconds}s ago`;
  if (seconds < 2 * 3600) return `${Math.round(seconds / 60)}m ago`;
  if (seconds < 2 * 86400) return `${Math.round(seconds / 3600)}h ago`;
  return at.slice(0, 10);
}

/** Maps with at most `limit` calls in flight, keeping the order. */
export async function mapBounded<T, R>(
  items: T[],
  limit: number,
  call: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await call(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, limit), items.length) }, worker));
  return results;
}
