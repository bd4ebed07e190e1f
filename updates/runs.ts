// The updates directory: one directory per safe-update run,
// <updatesDir>/<hostname>/<UTC timestamp>, holding that run's images, the
// backup taken before it, recover.bash, its logs (stdout.log, stderr.log),
// its events (events.jsonl, one JSON object per line) and its outcome
// (run.json, written atomically). The newest committed run with all three
// images is the last known good one: a rollback that cannot reach the unit
// recovers it from there. Only the newest N runs are kept, plus that one.
import { createWriteStream, type WriteStream } from "node:fs";
import { writeFileAtomically } from "../lib/atomic-file.js";
import { chmod, mkdir, readFile, readdir, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Rtr7Error, describeError } from "../lib/errors.js";
import { imageNames } from "../lib/wire/images.js";

export interface RunRecord {
  hostname: string;
  status: "running" | "committed" | "failed";
  /** The version the run built and pushed. */
  version?: string;
  /** The version the unit ran before. */
  previousVersion?: string;
  startedAt: string;
  finishedAt?: string;
  message?: string;
  /** What the unit ran when the run ended. */
  unitVersionAfter?: string;
}

export interface RunEntry {
  dir: string;
  record: RunRecord;
}

/** The images a run must hold to recover a unit from it. */
export const runImages = imageNames;

/** A run directory and its host directory: owner only (a run holds the unit's backup). */
export const privateDirectoryMode = 0o700;
/** The files of a run: owner only. */
export const privateFileMode = 0o600;

/** $XDG_DATA_HOME/rtr7/updates, or ~/.local/share/rtr7/updates. */
export function defaultUpdatesDir(env: NodeJS.ProcessEnv = process.env, home = os.homedir()): string {
  const xdg = env.XDG_DATA_HOME;
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(home, ".local", "share");
  return path.join(base, "rtr7", "updates");
}

/** 2024-05-01T12-30-00Z: UTC, sortable, and valid in any file system. */
export function runTimestamp(now: Date): string {
  return now
    .toISOString()
    .replace(/\.\d+Z$/, "Z")
    .replace(/:/g, "-");
}

const runName = /^(\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ)(?:-(\d+))?$/;

function hostDir(updatesDir: string, hostname: string): string {
  if (hostname === "" || hostname === "." || hostname === ".." || /[/\\\0]/.test(hostname))
    throw new Rtr7Error(
      "RTR7_ERR_USAGE",
      `hostname ${JSON.stringify(hostname)} cannot name a directory under ${updatesDir}`,
      { hint: "Use the unit's host name (letters, digits, dots and dashes)." },
    );
  return path.join(updatesDir, hostname);
}

/** Keys whose values never reach events.jsonl. */
const secretKey = /password|authorization|secret|token/i;

export class UpdateRun {
  readonly stdout: WriteStream;
  readonly stderr: WriteStream;
  private readonly events: WriteStream;
  private record: RunRecord;
  private writing: Promise<void> = Promise.resolve();
  private streamError: Error | undefined;

  private constructor(
    readonly dir: string,
    record: RunRecord,
    private readonly clock: () => Date,
  ) {
    this.record = record;
    const append = (name: string): WriteStream => {
      const stream = createWriteStream(path.join(dir, name), { flags: "a", mode: privateFileMode });
      stream.on("error", (error) => (this.streamError ??= error));
      return stream;
    };
    this.events = append("events.jsonl");
    this.stdout = append("stdout.log");
    this.stderr = append("stderr.log");
  }

  /** Makes <updatesDir>/<hostname>/<timestamp> (-2, -3, ... when taken) with a first run.json. */
  static async create(
    updatesDir: string,
    hostname: string,
    now = new Date(),
    clock: () => Date = () => new Date(),
  ): Promise<UpdateRun> {
    const parent = hostDir(updatesDir, hostname);
    await mkdir(parent, { recursive: true, mode: privateDirectoryMode });
    // A run holds the unit's backup, and so its password: only the owner may
    // look in, whatever the umask and whatever an older rtr7 made.
    await chmod(parent, privateDirectoryMode);
    const base = runTimestamp(now);
    for (let attempt = 1; ; attempt += 1) {
      const dir = path.join(parent, attempt === 1 ? base : `${base}-${attempt}`);
      try {
        await mkdir(dir, { mode: privateDirectoryMode });
        await chmod(dir, privateDirectoryMode);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "EEXIST") continue;
        throw new Rtr7Error(
          "RTR7_ERR_FILE_MISSING",
          `cannot create the run directory ${dir}: ${describeError(error)}`,
          {
            cause: error,
            hint: "Check that the updates directory is writable, or choose another with --updates-dir.",
          },
        );
      }
      const run = new UpdateRun(dir, { hostname, status: "running", startedAt: now.toISOString() }, clock);
      await run.setRecord({});
      return run;
    }
  }

  /** Appends one event (with its time) to events.jsonl; secret-looking fields are dropped. */
  event(event: Record<string, unknown>): void {
    const safe = Object.fromEntries(
      Object.entries(event).map(([key, value]) => [key, secretKey.test(key) ? "[redacted]" : value]),
    );
    this.events.write(JSON.stringify({ time: this.clock().toISOString(), ...safe }) + "\n");
  }

  get current(): RunRecord {
    return { ...this.record };
  }

  /** Merges the patch into run.json, written atomically (temp file, fsync, rename). */
  setRecord(patch: Partial<RunRecord>): Promise<void> {
    this.record = { ...this.record, ...patch };
    const snapshot = JSON.stringify(this.record, null, 2) + "\n";
    // One write at a time, in call order, so the last patch always wins.
    const write = this.writing.then(() =>
      writeFileAtomically(path.join(this.dir, "run.json"), snapshot, { mode: privateFileMode }),
    );
    this.writing = write.catch(() => undefined);
    return write;
  }

  /** Flushes and closes events.jsonl, stdout.log and stderr.log. */
  async close(): Promise<void> {
    await Promise.all(
      [this.events, this.stdout, this.stderr].map(
        (stream) =>
          new Promise<void>((resolve) => {
            if (stream.closed) return resolve();
            stream.once("close", () => resolve());
            stream.end();
          }),
      ),
    );
    await this.writing;
    if (this.streamError)
      throw new Rtr7Error(
        "RTR7_ERR_FILE_MISSING",
        `writing the run's logs in ${this.dir} failed: ${this.streamError.message}`,
        {
          cause: this.streamError,
          hint: "Check that the updates directory is writable and has room.",
        },
      );
  }
}

async function readRecord(dir: string, hostname: string, name: string): Promise<RunRecord> {
  try {
    const parsed = JSON.parse(await readFile(path.join(dir, "run.json"), "utf8")) as Partial<RunRecord>;
    if (
      parsed &&
      typeof parsed === "object" &&
      (parsed.status === "running" || parsed.status === "committed" || parsed.status === "failed")
    )
      return {
        ...parsed,
        hostname: parsed.hostname ?? hostname,
        status: parsed.status,
        startedAt: parsed.startedAt ?? "",
      };
  } catch {
    // Below: a run without a readable record did not end well.
  }
  return {
    hostname,
    status: "failed",
    startedAt: (runName.exec(name)?.[1] ?? "").replace(/T(\d\d)-(\d\d)-(\d\d)Z/, "T$1:$2:$3Z"),
    message: "run.json is missing or unreadable",
  };
}

/** Sort key of a run directory: its timestamp, then its -N suffix. */
function compareRuns(a: string, b: string): number {
  const [, stampA = "", suffixA = "1"] = runName.exec(a) ?? [];
  const [, stampB = "", suffixB = "1"] = runName.exec(b) ?? [];
  if (stampA !== stampB) return stampA < stampB ? -1 : 1;
  return Number(suffixA) - Number(suffixB);
}

/** The runs of a host, oldest first. */
export async function listRuns(updatesDir: string, hostname: string): Promise<RunEntry[]> {
  const parent = hostDir(updatesDir, hostname);
  let names: string[];
  try {
    names = (await readdir(parent, { withFileTypes: true }))
      .filter((entry) => entry.isDirectory() && runName.test(entry.name))
      .map((entry) => entry.name);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
  names.sort(compareRuns);
  return Promise.all(
    names.map(async (name) => {
      const dir = path.join(parent, name);
      return { dir, record: await readRecord(dir, hostname, name) };
    }),
  );
}

async function hasImages(dir: string): Promise<boolean> {
  for (const image of runImages) {
    const info = await stat(path.join(dir, image)).catch(() => undefined);
    if (!info?.isFile()) return false;
  }
  return true;
}

/** The newest committed run whose mbr.img, boot.img and root.img are all there. */
export async function lastKnownGood(updatesDir: string, hostname: string): Promise<RunEntry | undefined> {
  const runs = await listRuns(updatesDir, hostname);
  for (const run of runs.reverse()) {
    if (run.record.status === "committed" && (await hasImages(run.dir))) return run;
  }
  return undefined;
}

/**
 * Deletes the runs older than the newest `keep`, except the last known good
 * one and the directories in `protect`. Returns the deleted directories.
 */
export async function pruneRuns(
  updatesDir: string,
  hostname: string,
  keep: number,
  protect: string[],
): Promise<string[]> {
  if (!Number.isInteger(keep) || keep < 0)
    throw new Rtr7Error("RTR7_ERR_USAGE", `keep ${keep} runs: want a whole number of at least 0`);
  const runs = await listRuns(updatesDir, hostname);
  const good = await lastKnownGood(updatesDir, hostname);
  const kept = new Set([...protect, ...(good ? [good.dir] : [])].map((dir) => path.resolve(dir)));
  const deleted: string[] = [];
  for (const run of runs.slice(0, Math.max(0, runs.length - keep))) {
    if (kept.has(path.resolve(run.dir))) continue;
    await rm(run.dir, { recursive: true, force: true });
    deleted.push(run.dir);
  }
  return deleted;
}
