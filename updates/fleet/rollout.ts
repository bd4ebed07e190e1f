// A rollout from its start to the words that report it: choosing the units
// (a glob over hostnames), planning the waves and recording it all in the
// store in one transaction, and the summary a person reads at the end or in
// `rtr7 fleet status`: one row per unit (from → to, result, time, reason)
// and the counts.
import { randomBytes } from "node:crypto";
import picomatch from "picomatch";
import { Rtr7Error } from "../../lib/errors.js";
import type { Release } from "../release.js";
import { runTimestamp } from "../runs.js";
import { planWaves } from "./engine.js";
import type { FleetStore, RolloutRecord, RolloutSettings, RolloutUnit, UnitState } from "./store.js";

export interface RolloutCandidate {
  hostname: string;
  address: string;
  port: number;
}

/** "2026-11-29T22-40-00Z-3fa2": sortable, unique, valid as a file name. */
export function newRolloutId(now: Date): string {
  return `${runTimestamp(now)}-${randomBytes(2).toString("hex")}`;
}

/** The candidates whose hostname matches the glob (`*`, `?`, `[...]`, `{a,b}`). */
export function selectUnits<T extends { hostname: string }>(units: T[], glob: string): T[] {
  const matches = picomatch(glob, { nocase: true });
  return units.filter((unit) => matches(unit.hostname));
}

/** Records a new rollout of the release to the units; returns its id. */
export function createRollout(options: {
  store: FleetStore;
  release: Release;
  units: RolloutCandidate[];
  settings: RolloutSettings;
  now?: Date;
}): string {
  const { store, release, settings } = options;
  if (options.units.length === 0)
    throw new Rtr7Error("RTR7_ERR_USAGE", `no unit matches --select ${JSON.stringify(settings.select)}`, {
      hint: "Run `rtr7 fleet ls` to see the units mDNS and the inventory know, and choose --select from them.",
    });
  const now = options.now ?? new Date();
  const id = newRolloutId(now);
  store.createRollout(
    {
      id,
      createdAt: now.toISOString(),
      releaseDir: release.dir,
      version: release.version,
      settings,
      pid: process.pid,
    },
    planWaves(options.units, settings),
  );
  return id;
}

export interface RolloutCounts {
  total: number;
  succeeded: number;
  failed: number;
  skipped: number;
  /** Queued or canceled: never started (a halted or interrupted rollout). */
  notStarted: number;
  running: number;
}

export function rolloutCounts(units: RolloutUnit[]): RolloutCounts {
  const count = (...states: UnitState[]): number =>
    units.filter((unit) => states.includes(unit.state)).length;
  return {
    total: units.length,
    succeeded: count("succeeded"),
    failed: count("failed"),
    skipped: count("skipped"),
    notStarted: count("queued", "canceled"),
    running: count("running"),
  };
}

/** "running", or "interrupted" when its CLI is gone, or the stored status. */
export function rolloutState(rollout: RolloutRecord, alive = processAlive): string {
  if (rollout.status !== "running") return rollout.status;
  return rollout.pid !== undefined && alive(rollout.pid) ? "running" : "interrupted";
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

const seconds = (unit: RolloutUnit): string => {
  if (!unit.startedAt) return "";
  const end = unit.finishedAt ? Date.parse(unit.finishedAt) : Date.now();
  return `${Math.round((end - Date.parse(unit.startedAt)) / 1000)} s`;
};

const resultText = (unit: RolloutUnit): string =>
  unit.state === "queued"
    ? "not started"
    : unit.state === "running"
      ? `running (${unit.step ?? "?"})`
      : unit.state;

/** The summary table: unit, from → to, result, time, reason. */
export function formatRolloutTable(rollout: RolloutRecord, units: RolloutUnit[]): string {
  const rows = units.map((unit) => [
    unit.hostname,
    `${unit.fromVersion ?? "?"} → ${unit.toVersion ?? (unit.state === "queued" ? rollout.version : "?")}`,
    resultText(unit),
    seconds(unit),
    unit.reason ?? "",
  ]);
  const header = ["UNIT", "FROM → TO", "RESULT", "TIME", "REASON"];
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? "").length)),
  );
  const line = (cells: string[]): string =>
    cells
      .map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)))
      .join("  ")
      .trimEnd();
  return [line(header), ...rows.map(line)].join("\n");
}

/** One line: "rollout R of v2 to 5 units: finished: 4 succeeded, 1 skipped". */
export function rolloutHeadline(rollout: RolloutRecord, units: RolloutUnit[]): string {
  const counts = rolloutCounts(units);
  const parts = [
    counts.succeeded > 0 ? `${counts.succeeded} succeeded` : "",
    counts.failed > 0 ? `${counts.failed} failed` : "",
    counts.skipped > 0 ? `${counts.skipped} skipped` : "",
    counts.running > 0 ? `${counts.running} running` : "",
    counts.notStarted > 0 ? `${counts.notStarted} not started` : "",
  ].filter((part) => part !== "");
  const state = rolloutState(rollout);
  return `rollout ${rollout.id} of ${rollout.version} to ${counts.total} unit${counts.total === 1 ? "" : "s"}: ${state}${rollout.reason ? ` (${rollout.reason})` : ""}: ${parts.join(", ") || "nothing done"}`;
}
