// The fleet's durable state: every rollout, each unit's place in it, and
// when each unit was last seen, in one SQLite file (<updatesDir>/fleet.sqlite)
// through better-sqlite3. SQLite because a rollout's state must survive a
// SIGKILL or a power cut at any moment, and the remote fleet will keep the
// same tables for thousands of units in a long-running server: every change
// here is one transaction in the write-ahead log before the call returns, so
// a SIGKILL of the CLI at any moment loses nothing (the OS holds what was
// written). The WAL is fsynced at checkpoints (synchronous=NORMAL), not at
// every change: FULL cost an fsync on the event loop at each step of each
// unit, which made a wave of fifty units CPU-bound. A power cut of the
// workstation may then lose the last changes, never the file's consistency,
// and the engine's resume does not trust the store alone anyway: it asks
// each unit that was running where it stands before going on. The state
// machine lives in the engine (updates/fleet/engine.ts); this module only
// records it and reads it back.
import path from "node:path";
import { StateDatabase } from "./state-database.js";
import { Rtr7Error } from "../../lib/errors.js";

/** A unit's place in a rollout, after AWS IoT Jobs' job states. */
export type UnitState = "queued" | "running" | "succeeded" | "failed" | "skipped" | "canceled";
/** A rollout: running (or killed while running), halted by its failure threshold, or done. */
export type RolloutStatus = "running" | "halted" | "finished";

export interface RolloutSettings {
  /** The glob the units were chosen with. */
  select: string;
  canary: number;
  parallel: number;
  maxFailures: number;
  /** A fraction (0..1) of the rollout's units; when set it is the threshold instead of maxFailures. */
  maxFailureRate?: number;
  soakMs: number;
  healthTimeoutMs: number;
  kexec: boolean;
  /** --allow-downgrade: kept with the rollout, so a resume carries the person's decision on. */
  allowDowngrade?: boolean;
}

export interface RolloutRecord {
  id: string;
  createdAt: string;
  releaseDir: string;
  version: string;
  settings: RolloutSettings;
  status: RolloutStatus;
  /** The CLI process driving it (to tell a live rollout from a killed one). */
  pid: number | undefined;
  /** When the rollout's own record (status, pid, reason) last changed. */
  updatedAt: string;
  finishedAt: string | undefined;
  reason: string | undefined;
}

export interface RolloutUnit {
  hostname: string;
  /** Where the unit is reached, as the rollout found it. */
  address: string;
  /** Its update API's port. */
  port: number;
  /** The unit's place in the rollout's order; waves are runs of positions. */
  position: number;
  /** 0 is the canary wave when there is one. */
  wave: number;
  state: UnitState;
  /** The safe-update step it is in (while running), or the one it failed in. */
  step: string | undefined;
  fromVersion: string | undefined;
  toVersion: string | undefined;
  startedAt: string | undefined;
  finishedAt: string | undefined;
  runDir: string | undefined;
  reason: string | undefined;
  /** How many times this rollout started the unit's update (a resume may start it again). */
  attempts: number;
}

export interface SeenUnit {
  hostname: string;
  address: string;
  version: string;
  slot: string;
  trial: boolean;
  firstError: string;
  /** ISO 8601. */
  at: string;
}

export type UnitPatch = Partial<Omit<RolloutUnit, "hostname" | "position" | "wave" | "port">>;

const schemaVersion = 1;

const schema = `
CREATE TABLE IF NOT EXISTS rollouts (
  id TEXT PRIMARY KEY,
  created_at TEXT NOT NULL,
  release_dir TEXT NOT NULL,
  version TEXT NOT NULL,
  settings TEXT NOT NULL,
  status TEXT NOT NULL,
  pid INTEGER,
  updated_at TEXT NOT NULL,
  finished_at TEXT,
  reason TEXT
);
CREATE TABLE IF NOT EXISTS rollout_units (
  rollout_id TEXT NOT NULL REFERENCES rollouts(id),
  hostname TEXT NOT NULL,
  address TEXT NOT NULL,
  port INTEGER NOT NULL,
  position INTEGER NOT NULL,
  wave INTEGER NOT NULL,
  state TEXT NOT NULL,
  step TEXT,
  from_version TEXT,
  to_version TEXT,
  started_at TEXT,
  finished_at TEXT,
  run_dir TEXT,
  reason TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (rollout_id, hostname)
);
CREATE INDEX IF NOT EXISTS rollout_units_order ON rollout_units (rollout_id, position);
CREATE TABLE IF NOT EXISTS units_seen (
  hostname TEXT PRIMARY KEY,
  address TEXT NOT NULL,
  version TEXT NOT NULL,
  slot TEXT NOT NULL,
  trial INTEGER NOT NULL,
  first_error TEXT NOT NULL,
  at TEXT NOT NULL
);
`;

/** <updatesDir>/fleet.sqlite. */
export function fleetStoreFile(updatesDir: string): string {
  return path.join(updatesDir, "fleet.sqlite");
}

type Row = Record<string, string | number | null>;

const text = (value: string | number | null | undefined): string | undefined =>
  value === null || value === undefined ? undefined : String(value);

function rolloutFromRow(row: Row): RolloutRecord {
  return {
    id: String(row.id),
    createdAt: String(row.created_at),
    releaseDir: String(row.release_dir),
    version: String(row.version),
    settings: JSON.parse(String(row.settings)) as RolloutSettings,
    status: String(row.status) as RolloutStatus,
    pid: row.pid === null ? undefined : Number(row.pid),
    updatedAt: String(row.updated_at),
    finishedAt: text(row.finished_at),
    reason: text(row.reason),
  };
}

function unitFromRow(row: Row): RolloutUnit {
  return {
    hostname: String(row.hostname),
    address: String(row.address),
    port: Number(row.port),
    position: Number(row.position),
    wave: Number(row.wave),
    state: String(row.state) as UnitState,
    step: text(row.step),
    fromVersion: text(row.from_version),
    toVersion: text(row.to_version),
    startedAt: text(row.started_at),
    finishedAt: text(row.finished_at),
    runDir: text(row.run_dir),
    reason: text(row.reason),
    attempts: Number(row.attempts),
  };
}

const unitColumns: Record<keyof UnitPatch, string> = {
  address: "address",
  state: "state",
  step: "step",
  fromVersion: "from_version",
  toVersion: "to_version",
  startedAt: "started_at",
  finishedAt: "finished_at",
  runDir: "run_dir",
  reason: "reason",
  attempts: "attempts",
};

export class FleetStore extends StateDatabase {
  /** Opens (creating if need be) the store; RTR7_ERR_FLEET_STATE when it cannot. */
  static open(file: string): FleetStore {
    return new FleetStore(
      StateDatabase.openDatabase(file, {
        sql: schema,
        version: schemaVersion,
        what: "the fleet's state",
        foreignKeys: true,
      }),
      file,
    );
  }

  /** Records a new rollout and its units (in order) in one transaction. */
  createRollout(
    rollout: Omit<RolloutRecord, "status" | "updatedAt" | "finishedAt" | "reason">,
    units: Pick<RolloutUnit, "hostname" | "address" | "port" | "position" | "wave">[],
  ): void {
    this.write(`record rollout ${rollout.id}`, () => {
      this.db
        .prepare(
          `INSERT INTO rollouts (id, created_at, release_dir, version, settings, status, pid, updated_at)
           VALUES (?, ?, ?, ?, ?, 'running', ?, ?)`,
        )
        .run(
          rollout.id,
          rollout.createdAt,
          rollout.releaseDir,
          rollout.version,
          JSON.stringify(rollout.settings),
          rollout.pid ?? null,
          rollout.createdAt,
        );
      const insert = this.db.prepare(
        `INSERT INTO rollout_units (rollout_id, hostname, address, port, position, wave, state)
         VALUES (?, ?, ?, ?, ?, ?, 'queued')`,
      );
      for (const unit of units)
        insert.run(rollout.id, unit.hostname, unit.address, unit.port, unit.position, unit.wave);
    });
  }

  updateRollout(
    id: string,
    patch: Partial<Pick<RolloutRecord, "status" | "pid" | "finishedAt" | "reason">>,
  ): void {
    this.write(`update rollout ${id}`, () => {
      const current = this.rollout(id);
      if (!current) throw new Error(`no rollout ${id}`);
      const next = { ...current, ...patch };
      this.db
        .prepare(
          `UPDATE rollouts SET status = ?, pid = ?, finished_at = ?, reason = ?, updated_at = ? WHERE id = ?`,
        )
        .run(
          next.status,
          next.pid ?? null,
          next.finishedAt ?? null,
          next.reason ?? null,
          new Date().toISOString(),
          id,
        );
    });
  }

  updateUnit(id: string, hostname: string, patch: UnitPatch): void {
    const keys = (Object.keys(patch) as (keyof UnitPatch)[]).filter((key) => key in unitColumns);
    if (keys.length === 0) return;
    this.write(`update ${hostname} in rollout ${id}`, () => {
      const assignments = keys.map((key) => `${unitColumns[key]} = ?`).join(", ");
      const values = keys.map((key) => patch[key] ?? null);
      const changed = this.statement(
        `UPDATE rollout_units SET ${assignments} WHERE rollout_id = ? AND hostname = ?`,
      ).run(...values, id, hostname);
      if (changed.changes !== 1) throw new Error(`rollout ${id} has no unit ${hostname}`);
    });
  }

  rollout(id: string): RolloutRecord | undefined {
    const row = this.statement(`SELECT * FROM rollouts WHERE id = ?`).get(id) as Row | undefined;
    return row ? rolloutFromRow(row) : undefined;
  }

  /** The rollout named, or RTR7_ERR_ROLLOUT_NOT_FOUND. */
  requireRollout(id: string): RolloutRecord {
    const found = this.rollout(id);
    if (!found)
      throw new Rtr7Error("RTR7_ERR_ROLLOUT_NOT_FOUND", `no rollout ${JSON.stringify(id)} in ${this.file}`);
    return found;
  }

  /** Every rollout, newest first. */
  rollouts(): RolloutRecord[] {
    const rows = this.db.prepare(`SELECT * FROM rollouts ORDER BY created_at DESC, id DESC`).all() as Row[];
    return rows.map(rolloutFromRow);
  }

  latestRollout(): RolloutRecord | undefined {
    return this.rollouts()[0];
  }

  /** The rollout's units in their order. */
  units(id: string): RolloutUnit[] {
    const rows = this.statement(`SELECT * FROM rollout_units WHERE rollout_id = ? ORDER BY position`).all(
      id,
    ) as Row[];
    return rows.map(unitFromRow);
  }

  /** Notes a unit's answer (for `fleet ls`'s "last seen"). */
  noteSeen(hostname: string, seen: Omit<SeenUnit, "hostname" | "at"> & { at: Date }): void {
    this.write(`note ${hostname} as seen`, () => {
      this.db
        .prepare(
          `INSERT INTO units_seen (hostname, address, version, slot, trial, first_error, at)
           VALUES (?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (hostname) DO UPDATE SET address = excluded.address, version = excluded.version,
             slot = excluded.slot, trial = excluded.trial, first_error = excluded.first_error, at = excluded.at`,
        )
        .run(
          hostname,
          seen.address,
          seen.version,
          seen.slot,
          seen.trial ? 1 : 0,
          seen.firstError,
          seen.at.toISOString(),
        );
    });
  }

  /** When each unit last answered, by hostname. */
  lastSeen(): Map<string, SeenUnit> {
    const rows = this.db.prepare(`SELECT * FROM units_seen`).all() as Row[];
    return new Map(
      rows.map((row) => [
        String(row.hostname),
        {
          hostname: String(row.hostname),
          address: String(row.address),
          version: String(row.version),
          slot: String(row.slot),
          trial: Number(row.trial) === 1,
          firstError: String(row.first_error),
          at: String(row.at),
        },
      ]),
    );
  }

  close(): void {
    this.db.close();
  }
}

/** Opens the store at `file` (the function form the fleet's commands use). */
export function openFleetStore(file: string): FleetStore {
  return FleetStore.open(file);
}
