// The rollout engine's rules on a real SQLite store, with a scripted driver
// in place of the units (the integration test in test/integration/fleet.test.ts
// runs the same engine against process-mode units): the waves (canary, then
// at most --parallel at once, each starting only when the one before ended),
// the failure threshold (no further unit starts once it is passed; the
// running ones finish), skipped units, and resume (interrupted units
// settled first, finished units never updated twice).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { silentLogger } from "../../lib/log.js";
import {
  allowedFailures,
  planWaves,
  runRollout,
  type UnitDriver,
  type UnitOutcome,
} from "../../updates/fleet/engine.js";
import { createRollout, formatRolloutTable, rolloutState, selectUnits } from "../../updates/fleet/rollout.js";
import {
  fleetStoreFile,
  openFleetStore,
  type FleetStore,
  type RolloutSettings,
} from "../../updates/fleet/store.js";
import type { Release } from "../../updates/release.js";

const release: Release = {
  dir: "/releases/v2",
  version: "v2",
  anyUnit: true,
  hostname: undefined,
  manifest: { images: [] },
};
const settings = (patch: Partial<RolloutSettings> = {}): RolloutSettings => ({
  select: "*",
  canary: 1,
  parallel: 2,
  maxFailures: 0,
  soakMs: 0,
  healthTimeoutMs: 1000,
  kexec: true,
  ...patch,
});
const units = (count: number) =>
  Array.from({ length: count }, (_, index) => ({
    hostname: `shop-${index + 1}`,
    address: `10.0.0.${index + 1}`,
    port: 80,
  }));

/** A driver that records what ran when, with per-unit outcomes. */
function scriptedDriver(outcomes: Record<string, UnitOutcome["result"]> = {}) {
  const log: string[] = [];
  let active = 0;
  let peak = 0;
  const driver: UnitDriver = {
    async update(unit, hooks) {
      active += 1;
      peak = Math.max(peak, active);
      log.push(`start ${unit.hostname}`);
      hooks.onStep("push");
      await new Promise((resolve) => setTimeout(resolve, 5));
      active -= 1;
      log.push(`end ${unit.hostname}`);
      const result = outcomes[unit.hostname] ?? "succeeded";
      return {
        result,
        fromVersion: "v1",
        toVersion: "v2",
        reason: result === "succeeded" ? undefined : `${result} on purpose`,
      };
    },
    settle(unit) {
      log.push(`settle ${unit.hostname}`);
      return Promise.resolve({ committedVersion: unit.hostname === "shop-2" ? "v2" : "v1" });
    },
  };
  return { driver, log, peak: () => peak };
}

async function withStore(t: { after: (fn: () => Promise<void>) => void }): Promise<FleetStore> {
  const dir = await mkdtemp(path.join(tmpdir(), "rtr7-fleet-engine-"));
  const store = openFleetStore(fleetStoreFile(dir));
  t.after(async () => {
    store.close();
    await rm(dir, { recursive: true, force: true });
  });
  return store;
}

test("waves: the canary alone, then at most --parallel at once, each wave after the one before", async (t) => {
  assert.deepEqual(
    planWaves(units(6), { canary: 1, parallel: 2 }).map((unit) => unit.wave),
    [0, 1, 1, 2, 2, 3],
  );
  assert.deepEqual(
    planWaves(units(5), { canary: 0, parallel: 2 }).map((unit) => unit.wave),
    [0, 0, 1, 1, 2],
  );
  const store = await withStore(t);
  const id = createRollout({ store, release, units: units(5), settings: settings() });
  const { driver, log, peak } = scriptedDriver();
  const ended = await runRollout({ store, rolloutId: id, driver, log: silentLogger() });
  assert.equal(ended.status, "finished");
  assert.equal(peak(), 2);
  // shop-1 ends before anything else starts; shop-2 and shop-3 both end before shop-4 starts.
  assert.ok(log.indexOf("end shop-1") < log.indexOf("start shop-2"));
  assert.ok(log.indexOf("end shop-3") < log.indexOf("start shop-4"));
  assert.ok(store.units(id).every((unit) => unit.state === "succeeded" && unit.attempts === 1));
});

test("a failure past --max-failures halts: the wave's other unit finishes, no later unit starts", async (t) => {
  const store = await withStore(t);
  const id = createRollout({ store, release, units: units(5), settings: settings() });
  const { driver, log } = scriptedDriver({ "shop-2": "failed", "shop-1": "skipped" });
  const ended = await runRollout({ store, rolloutId: id, driver, log: silentLogger() });
  assert.equal(ended.status, "halted");
  assert.match(ended.reason ?? "", /1 unit failed \(allowed: 0\)/);
  const states = Object.fromEntries(store.units(id).map((unit) => [unit.hostname, unit.state]));
  assert.deepEqual(states, {
    "shop-1": "skipped",
    "shop-2": "failed",
    "shop-3": "succeeded",
    "shop-4": "queued",
    "shop-5": "queued",
  });
  assert.ok(!log.includes("start shop-4"));
  const table = formatRolloutTable(ended, store.units(id));
  assert.match(table, /shop-2\s+v1 → v2\s+failed\s+\d+ s\s+failed on purpose/);
  assert.match(table, /shop-4\s+\? → v2\s+not started/);
  assert.equal(allowedFailures(settings({ maxFailureRate: 0.25 }), 8), 2);
});

test("resume: interrupted units are settled first; finished units are never updated again", async (t) => {
  const store = await withStore(t);
  const id = createRollout({ store, release, units: units(5), settings: settings() });
  // As a SIGKILL leaves it: shop-1 done, shop-2 and shop-3 in the middle, the rest queued.
  store.updateUnit(id, "shop-1", { state: "succeeded", attempts: 1 });
  store.updateUnit(id, "shop-2", { state: "running", step: "commit", attempts: 1 });
  store.updateUnit(id, "shop-3", { state: "running", step: "push", attempts: 1 });
  store.updateRollout(id, { pid: 2 ** 22 + 1 });
  assert.equal(
    rolloutState(store.requireRollout(id), () => false),
    "interrupted",
  );
  const { driver, log } = scriptedDriver();
  const ended = await runRollout({ store, rolloutId: id, driver, log: silentLogger() });
  assert.equal(ended.status, "finished");
  assert.deepEqual(
    log.filter((line) => line.startsWith("settle")),
    ["settle shop-2", "settle shop-3"],
  );
  assert.ok(!log.includes("start shop-1"), "shop-1 was updated again");
  assert.ok(!log.includes("start shop-2"), "shop-2 (already committed on v2) was updated again");
  const byName = Object.fromEntries(store.units(id).map((unit) => [unit.hostname, unit]));
  assert.equal(byName["shop-2"]?.state, "succeeded");
  assert.equal(byName["shop-3"]?.attempts, 2);
  assert.ok(Object.values(byName).every((unit) => unit.state === "succeeded"));
});

test("--select takes a glob; a store from a newer rtr7 is refused with a clear error", async (t) => {
  assert.deepEqual(
    selectUnits([{ hostname: "shop-1" }, { hostname: "lab-1" }, { hostname: "SHOP-2" }], "shop-*").map(
      (u) => u.hostname,
    ),
    ["shop-1", "SHOP-2"],
  );
  const store = await withStore(t);
  assert.throws(
    () => createRollout({ store, release, units: [], settings: settings({ select: "x-*" }) }),
    /no unit matches --select "x-\*"/,
  );
  const Database = (await import("better-sqlite3")).default;
  const db = new Database(store.file);
  db.pragma("user_version = 99");
  db.close();
  assert.throws(
    () => openFleetStore(store.file),
    (error: Error & { code?: string }) => {
      assert.equal(error.code, "RTR7_ERR_FLEET_STATE");
      assert.match(error.message, /newer rtr7/);
      return true;
    },
  );
});
