// The job the uplink works on, on /perm (/perm/rtr7/uplink-job.json),
// replaced atomically (lib/atomic-file.ts) before each step is reported,
// so a power cut leaves the last step whole and the uplink, started again,
// decides from it and the boot state how the job ends (job-runner.ts). It
// also keeps a finished job's end, so a retained job document delivered
// again is not run twice.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { writeFileAtomically } from "../../lib/atomic-file.js";
import {
  isFinalJobState,
  jobStates,
  parseJobDocument,
  type JobDocument,
  type JobState,
} from "../../lib/wire/jobs.js";
import { isSlot, type Slot } from "../unit.js";

export const jobRecordFile = path.join("rtr7", "uplink-job.json");

export interface JobRecord {
  job: JobDocument;
  state: JobState;
  step?: string;
  reason?: string;
  /** What the unit ran, committed, when the job started. */
  from: { version: string; slot: Slot };
  /** Set at the testboot step: why a trial that fails is rolled back, once known. */
  trialFailure?: string;
  updatedAt: string;
}

export function isFinished(record: JobRecord): boolean {
  return isFinalJobState(record.state);
}

export async function writeJobRecord(perm: string, record: JobRecord): Promise<void> {
  await writeFileAtomically(path.join(perm, jobRecordFile), JSON.stringify(record, null, 2) + "\n", {
    mode: 0o600,
    makeDirectory: true,
  });
}

/** The record, or undefined when there is none; a damaged one is reported through `problem`. */
export async function readJobRecord(perm: string): Promise<{ record?: JobRecord; problem?: string }> {
  const file = path.join(perm, jobRecordFile);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return {};
    return { problem: `${file}: ${(error as Error).message}` };
  }
  try {
    const value = JSON.parse(text) as Record<string, unknown>;
    const job = parseJobDocument(JSON.stringify(value.job));
    const from = value.from as Record<string, unknown> | undefined;
    const state = value.state;
    if (
      typeof state !== "string" ||
      !(jobStates as readonly string[]).includes(state) ||
      typeof from?.version !== "string" ||
      !isSlot(from.slot)
    )
      throw new Error("want {job, state, from: {version, slot}}");
    const text_ = (field: string): string | undefined =>
      typeof value[field] === "string" ? value[field] : undefined;
    const step = text_("step");
    const reason = text_("reason");
    const trialFailure = text_("trialFailure");
    return {
      record: {
        job,
        state: state as JobState,
        from: { version: from.version, slot: from.slot },
        ...(step === undefined ? {} : { step }),
        ...(reason === undefined ? {} : { reason }),
        ...(trialFailure === undefined ? {} : { trialFailure }),
        updatedAt: text_("updatedAt") ?? "",
      },
    };
  } catch (error) {
    return { problem: `${file} is not a job record (${(error as Error).message})` };
  }
}
