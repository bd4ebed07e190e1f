// The remote fleet server's own durable state, beside the rollouts'
// (updates/fleet/store.ts): every update job it handed a unit, with the
// last thing the unit said about it, and the inventory the units' retained
// `state` and `status` messages feed (docs/jobs.md). One SQLite file in the
// server's data directory (better-sqlite3, write-ahead log), and every
// change is one transaction before the call returns, so a `fleet serve`
// SIGKILLed mid-rollout finds each job where it was: a job that ended is
// never sent again, and one still running is followed, not restarted. A
// store of its own, not more tables in the rollouts' file, so each file
// keeps its own schema version.
import { StateDatabase } from "../state-database.js";
import type { JobDocument, JobState } from "../../../lib/wire/jobs.js";

export interface JobRecord {
  jobId: string;
  hostname: string;
  rolloutId: string;
  version: string;
  state: JobState;
  step: string | undefined;
  reason: string | undefined;
  /** The version the unit said it runs, last. */
  unitVersion: string | undefined;
  document: JobDocument;
  createdAt: string;
  /** When the broker took the retained document (QoS 1 acknowledged); undefined: maybe never sent. */
  publishedAt: string | undefined;
  /** When the unit last said anything about the job (or the job was published). */
  lastHeardAt: string;
  endedAt: string | undefined;
}

export interface InventoryRecord {
  hostname: string;
  version: string | undefined;
  slot: string | undefined;
  trial: boolean | undefined;
  /** first_error of its health: "" when healthy. */
  health: string | undefined;
  uptimeSeconds: number | undefined;
  online: boolean;
  /** The job the unit says it is working on. */
  jobId: string | undefined;
  lastSeen: string;
}

const schemaVersion = 1;

const schema = `
CREATE TABLE IF NOT EXISTS jobs (
  job_id TEXT PRIMARY KEY,
  hostname TEXT NOT NULL,
  rollout_id TEXT NOT NULL,
  version TEXT NOT NULL,
  state TEXT NOT NULL,
  step TEXT,
  reason TEXT,
  unit_version TEXT,
  document TEXT NOT NULL,
  created_at TEXT NOT NULL,
  published_at TEXT,
  last_heard_at TEXT NOT NULL,
  ended_at TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_unit ON jobs (rollout_id, hostname, created_at);
CREATE TABLE IF NOT EXISTS inventory (
  hostname TEXT PRIMARY KEY,
  version TEXT,
  slot TEXT,
  trial INTEGER,
  health TEXT,
  uptime_seconds REAL,
  online INTEGER NOT NULL,
  job_id TEXT,
  last_seen TEXT NOT NULL
);
`;

type Row = Record<string, string | number | null>;

const text = (value: string | number | null | undefined): string | undefined =>
  value === null || value === undefined ? undefined : String(value);

function jobFromRow(row: Row): JobRecord {
  return {
    jobId: String(row.job_id),
    hostname: String(row.hostname),
    rolloutId: String(row.rollout_id),
    version: String(row.version),
    state: String(row.state) as JobState,
    step: text(row.step),
    reason: text(row.reason),
    unitVersion: text(row.unit_version),
    document: JSON.parse(String(row.document)) as JobDocument,
    createdAt: String(row.created_at),
    publishedAt: text(row.published_at),
    lastHeardAt: String(row.last_heard_at),
    endedAt: text(row.ended_at),
  };
}

function inventoryFromRow(row: Row): InventoryRecord {
  return {
    hostname: String(row.hostname),
    version: text(row.version),
    slot: text(row.slot),
    trial: row.trial === null ? undefined : Number(row.trial) === 1,
    health: text(row.health),
    uptimeSeconds: row.uptime_seconds === null ? undefined : Number(row.uptime_seconds),
    online: Number(row.online) === 1,
    jobId: text(row.job_id),
    lastSeen: String(row.last_seen),
  };
}

export type JobPatch = Partial<
  Pick<JobRecord, "state" | "step" | "reason" | "unitVersion" | "publishedAt" | "lastHeardAt" | "endedAt">
>;

const jobColumns: Record<keyof JobPatch, string> = {
  state: "state",
  step: "step",
  reason: "reason",
  unitVersion: "unit_version",
  publishedAt: "published_at",
  lastHeardAt: "last_heard_at",
  endedAt: "ended_at",
};

export class JobStore extends StateDatabase {
  /** Opens (creating if need be) the store; RTR7_ERR_FLEET_STATE when it cannot. */
  static open(file: string): JobStore {
    return new JobStore(
      StateDatabase.openDatabase(file, { sql: schema, version: schemaVersion, what: "the job store" }),
      file,
    );
  }

  /** Records a new job, QUEUED, before its document goes to the broker. */
  createJob(hostname: string, document: JobDocument): void {
    this.write(`record job ${document.jobId}`, () => {
      this.statement(
        `INSERT INTO jobs (job_id, hostname, rollout_id, version, state, document, created_at, last_heard_at)
         VALUES (?, ?, ?, ?, 'QUEUED', ?, ?, ?)`,
      ).run(
        document.jobId,
        hostname,
        document.rolloutId,
        document.release.version,
        JSON.stringify(document),
        document.createdAt,
        document.createdAt,
      );
    });
  }

  updateJob(jobId: string, patch: JobPatch): void {
    const keys = (Object.keys(patch) as (keyof JobPatch)[]).filter((key) => key in jobColumns);
    if (keys.length === 0) return;
    this.write(`update job ${jobId}`, () => {
      const assignments = keys.map((key) => `${jobColumns[key]} = ?`).join(", ");
      const changed = this.statement(`UPDATE jobs SET ${assignments} WHERE job_id = ?`).run(
        ...keys.map((key) => patch[key] ?? null),
        jobId,
      );
      if (changed.changes !== 1) throw new Error(`no job ${jobId}`);
    });
  }

  job(jobId: string): JobRecord | undefined {
    const row = this.statement(`SELECT * FROM jobs WHERE job_id = ?`).get(jobId) as Row | undefined;
    return row ? jobFromRow(row) : undefined;
  }

  /** The unit's newest job in the rollout. */
  latestJob(rolloutId: string, hostname: string): JobRecord | undefined {
    const row = this.statement(
      `SELECT * FROM jobs WHERE rollout_id = ? AND hostname = ? ORDER BY created_at DESC, rowid DESC LIMIT 1`,
    ).get(rolloutId, hostname) as Row | undefined;
    return row ? jobFromRow(row) : undefined;
  }

  /** Every job of a rollout (or of all), oldest first. */
  jobs(rolloutId?: string): JobRecord[] {
    const rows = (
      rolloutId === undefined
        ? this.statement(`SELECT * FROM jobs ORDER BY created_at, rowid`).all()
        : this.statement(`SELECT * FROM jobs WHERE rollout_id = ? ORDER BY created_at, rowid`).all(rolloutId)
    ) as Row[];
    return rows.map(jobFromRow);
  }

  /** The jobs not ended yet whose document the broker took once (to publish again after a broker restart). */
  openJobs(): JobRecord[] {
    const rows = this.statement(
      `SELECT * FROM jobs WHERE state IN ('QUEUED', 'IN_PROGRESS') AND published_at IS NOT NULL ORDER BY created_at, rowid`,
    ).all() as Row[];
    return rows.map(jobFromRow);
  }

  /** Notes a unit's retained state (version, slot, trial, health, ...). */
  noteState(
    hostname: string,
    state: {
      version: string;
      slot: string;
      trial: boolean;
      health: string;
      uptimeSeconds: number;
      jobId?: string;
    },
    at: Date,
  ): void {
    this.write(`note ${hostname}'s state`, () => {
      this.statement(
        `INSERT INTO inventory (hostname, version, slot, trial, health, uptime_seconds, online, job_id, last_seen)
         VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?)
         ON CONFLICT (hostname) DO UPDATE SET version = excluded.version, slot = excluded.slot,
           trial = excluded.trial, health = excluded.health, uptime_seconds = excluded.uptime_seconds,
           job_id = excluded.job_id, last_seen = excluded.last_seen`,
      ).run(
        hostname,
        state.version,
        state.slot,
        state.trial ? 1 : 0,
        state.health,
        state.uptimeSeconds,
        state.jobId ?? null,
        at.toISOString(),
      );
    });
  }

  /** Notes a unit's status: online, or offline (its last will). */
  noteStatus(hostname: string, online: boolean, at: Date): void {
    this.write(`note ${hostname} ${online ? "online" : "offline"}`, () => {
      this.statement(
        `INSERT INTO inventory (hostname, online, last_seen) VALUES (?, ?, ?)
         ON CONFLICT (hostname) DO UPDATE SET online = excluded.online,
           last_seen = CASE WHEN excluded.online = 1 THEN excluded.last_seen ELSE inventory.last_seen END`,
      ).run(hostname, online ? 1 : 0, at.toISOString());
    });
  }

  unit(hostname: string): InventoryRecord | undefined {
    const row = this.statement(`SELECT * FROM inventory WHERE hostname = ?`).get(hostname) as Row | undefined;
    return row ? inventoryFromRow(row) : undefined;
  }

  /** Every unit the server has heard of, by hostname. */
  inventory(): InventoryRecord[] {
    return (this.statement(`SELECT * FROM inventory ORDER BY hostname`).all() as Row[]).map(inventoryFromRow);
  }

  close(): void {
    this.db.close();
  }
}
