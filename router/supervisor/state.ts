// The supervisor's status file (ServiceConfig.paths.run/supervisor.json):
// rewritten atomically whenever a service starts, stops or restarts and when
// an update step happens. diagd reads it for /metrics and /health.json, the
// update API's status page for its listing.
import { readFile } from "node:fs/promises";
import { writeFileAtomically } from "../../lib/atomic-file.js";
import path from "node:path";

export interface ServiceStatus {
  name: string;
  state: "starting" | "running" | "backoff" | "stopped";
  pid?: number;
  /** Restarts since the supervisor started. */
  restarts: number;
  /** When the current process started (ms since the epoch). */
  startedAtMs?: number;
  /** Exit code or signal of the last exit. */
  lastExit?: string;
}

export interface SupervisorState {
  /** The running slot, and whether it is still on trial (false from the commit on). */
  boot?: { slot: "a" | "b"; trial: boolean };
  services: ServiceStatus[];
  counters: {
    /** Root/boot/mbr uploads completed since boot. */
    updates: number;
    /** Uploads that ended early or failed. */
    failedUpdates: number;
    /** Boots that came back on the old slot after an uncommitted trial (since boot: 0 or 1). */
    rollbacks: number;
  };
}

export function supervisorStatePath(runDirectory: string): string {
  return path.join(runDirectory, "supervisor.json");
}

export async function writeSupervisorState(runDirectory: string, state: SupervisorState): Promise<void> {
  const target = supervisorStatePath(runDirectory);
  await writeFileAtomically(target, JSON.stringify(state, null, 2) + "\n");
}

export async function readSupervisorState(runDirectory: string): Promise<SupervisorState | undefined> {
  try {
    return JSON.parse(await readFile(supervisorStatePath(runDirectory), "utf8")) as SupervisorState;
  } catch {
    return undefined;
  }
}
