// What `rtr7 fleet update` and `rtr7 fleet resume` share once the rollout
// is recorded: the push driver with the rollout's settings, the view, the
// engine, and the end: the summary table (or one JSON event per unit and a
// "rollout-end" event with the counts, the wall time, this process's peak
// memory and the state store's size), and a non-zero exit when a unit failed
// or the rollout halted.
import { statSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { Rtr7Error } from "../lib/errors.js";
import type { Logger } from "../lib/log.js";
import { runRollout } from "../updates/fleet/engine.js";
import { pushDriver } from "../updates/fleet/push-driver.js";
import { formatRolloutTable, rolloutCounts, rolloutHeadline } from "../updates/fleet/rollout.js";
import type { FleetStore } from "../updates/fleet/store.js";
import { keysDir, rotationStatements } from "../updates/keys.js";
import type { Release } from "../updates/release.js";
import { loadRunSigning } from "../updates/release-signing.js";
import { rolloutView } from "./fleet-progress.js";

function storeBytes(file: string): number {
  let bytes = 0;
  for (const suffix of ["", "-wal", "-shm"]) {
    try {
      bytes += statSync(file + suffix).size;
    } catch {
      // not there
    }
  }
  return bytes;
}

export async function driveRollout(options: {
  store: FleetStore;
  rolloutId: string;
  release: Release;
  updatesDir: string;
  keepOnly: number;
  log: Logger;
  json: boolean;
  /** Poll interval of the health waits (default 500 ms). */
  pollMs?: number;
  /** --insecure-http: no warning for units reached over plain HTTP. */
  insecureHttp?: boolean;
}): Promise<void> {
  const signing = await loadRunSigning(keysDir());
  const rotations = await rotationStatements(keysDir());
  const { store, rolloutId, log } = options;
  const started = Date.now();
  const rollout = store.requireRollout(rolloutId);
  const { settings } = rollout;
  const view = await rolloutView({ json: options.json, terminal: process.stdout.isTTY === true, log });
  const driver = pushDriver({
    release: options.release,
    updatesDir: options.updatesDir,
    keepOnly: options.keepOnly,
    signing,
    rotations,
    // The rollout's own setting (fleet update --allow-downgrade), so a resume keeps it.
    allowDowngrade: settings.allowDowngrade === true,
    insecureHttp: options.insecureHttp,
    healthTimeoutMs: settings.healthTimeoutMs,
    soakMs: settings.soakMs,
    kexec: settings.kexec,
    timings: options.pollMs !== undefined ? { pollMs: options.pollMs } : undefined,
    recoverScript: {
      node: process.execPath,
      entry: fileURLToPath(new URL("../../bin/run.js", import.meta.url)),
    },
    log,
  });
  let ended;
  try {
    ended = await runRollout({ store, rolloutId, driver, observer: view, log });
  } finally {
    view.stop();
  }
  const units = store.units(rolloutId);
  const counts = rolloutCounts(units);
  const headline = rolloutHeadline(ended, units);
  if (options.json) {
    log.info(
      {
        event: "rollout-end",
        id: rolloutId,
        status: ended.status,
        version: ended.version,
        reason: ended.reason,
        ...counts,
        skippedUnits: units.filter((unit) => unit.state === "skipped").map((unit) => unit.hostname),
        failedUnits: units.filter((unit) => unit.state === "failed").map((unit) => unit.hostname),
        wallMs: Date.now() - started,
        peakRssKiB: process.resourceUsage().maxRSS,
        storeBytes: storeBytes(store.file),
      },
      headline,
    );
  } else {
    process.stdout.write(`\n${formatRolloutTable(ended, units)}\n\n${headline}\n`);
  }
  if (ended.status === "halted" || counts.failed > 0)
    throw new Rtr7Error("RTR7_ERR_UPDATE_FAILED", headline, {
      hint: `Each unit's log, backup and recover.bash are in its run directory; after fixing the cause, \`rtr7 fleet resume ${rolloutId}\` starts the units not started yet.`,
    });
}
