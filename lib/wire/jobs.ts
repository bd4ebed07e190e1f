// The remote fleet's wire format (issue 15): what `rtr7 fleet serve` and a
// unit's uplink (router/uplink/) say to each other through an MQTT 3.1.1
// broker (aedes embedded, or mosquitto, EMQX, ...), defined once for both
// sides. docs/jobs.md describes it for people. Bytes never cross the broker:
// a job names a release by URL, and the unit trusts the release's
// signature, not the broker or the server.
//
// Topics, all under rtr7/units/HOST/ (HOST a checked hostname, so no topic
// wildcard or separator can hide in it):
//   status           retained, unit → server: "online"; the unit's last will
//                    sets it to "offline" (retained too)
//   state            retained, unit → server: UnitState (version, slot, ...)
//   jobs/next        retained, server → unit: the unit's current JobDocument,
//                    or an empty payload (no job); QoS 1
//   jobs/JOBID/update unit → server: JobUpdate, QoS 1
// A unit may publish only status, state and jobs/+/update under its own
// HOST, and subscribe only to its own jobs/next; the server's user may do
// everything (unitMayPublish, unitMaySubscribe are the rule both the
// embedded broker's hooks and mosquitto's ACL file follow).
//
// Job states, as AWS IoT Jobs names them: QUEUED (the document is
// published), IN_PROGRESS (with a step and progress), and the ends
// SUCCEEDED, FAILED (with the reason), TIMED_OUT (the server's verdict on a
// unit that stayed silent past the job's timeout: hawkBit#693's stuck
// rollouts never happen), REJECTED (the unit refused the document: it is
// malformed, or its release is unsigned or signed by a key the unit does
// not trust) and CANCELED (the server withdrew it).
import { Rtr7Error } from "../errors.js";
import { checkedHostname } from "./names.js";

export const topicRoot = "rtr7/units";

export const jobStates = [
  "QUEUED",
  "IN_PROGRESS",
  "SUCCEEDED",
  "FAILED",
  "TIMED_OUT",
  "REJECTED",
  "CANCELED",
] as const;
export type JobState = (typeof jobStates)[number];

/** The states a job ends in: nothing moves it after one. */
export const finalJobStates: readonly JobState[] = [
  "SUCCEEDED",
  "FAILED",
  "TIMED_OUT",
  "REJECTED",
  "CANCELED",
];

export function isFinalJobState(state: JobState): boolean {
  return finalJobStates.includes(state);
}

export const unitTopics = (hostname: string) => {
  const base = `${topicRoot}/${checkedHostname(hostname)}`;
  return {
    status: `${base}/status`,
    state: `${base}/state`,
    jobNext: `${base}/jobs/next`,
    jobUpdate: (jobId: string) => `${base}/jobs/${checkedJobId(jobId)}/update`,
    /** What the server subscribes to for every unit's updates. */
    allJobUpdates: `${topicRoot}/+/jobs/+/update`,
  };
};

/** What the server subscribes to: every unit's status, state and job updates. */
export const serverSubscriptions = [
  `${topicRoot}/+/status`,
  `${topicRoot}/+/state`,
  `${topicRoot}/+/jobs/+/update`,
];

const jobIdPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function checkedJobId(jobId: string): string {
  if (!jobIdPattern.test(jobId))
    throw new Rtr7Error(
      "RTR7_ERR_JOB",
      `job id ${JSON.stringify(jobId)}: want 1 to 128 of A-Z a-z 0-9 . _ -, starting with a letter or digit`,
    );
  return jobId;
}

/** Whether a unit logged in as `hostname` may publish to `topic`. */
export function unitMayPublish(hostname: string, topic: string): boolean {
  const base = `${topicRoot}/${hostname}/`;
  if (!topic.startsWith(base)) return false;
  const rest = topic.slice(base.length);
  if (rest === "status" || rest === "state") return true;
  const match = /^jobs\/([^/+#]+)\/update$/.exec(rest);
  return match !== null && jobIdPattern.test(match[1] ?? "");
}

/** Whether a unit logged in as `hostname` may subscribe to `filter` (its own job topic only, no wildcards). */
export function unitMaySubscribe(hostname: string, filter: string): boolean {
  return filter === `${topicRoot}/${hostname}/jobs/next`;
}

/** The hostname a topic under rtr7/units/ names, or undefined. */
export function topicHostname(topic: string): string | undefined {
  const match = /^rtr7\/units\/([^/]+)\//.exec(topic);
  return match?.[1];
}

/** The unit's retained state (rtr7/units/HOST/state). */
export interface UnitState {
  hostname: string;
  version: string;
  slot: "a" | "b";
  trial: boolean;
  /** first_error of its health: "" when healthy. */
  health: string;
  uptimeSeconds: number;
  /** When the unit sent it (ISO 8601). */
  at: string;
  /** The job it is working on, if any. */
  jobId?: string;
}

/** Where a release's files are: base URL + file name (manifest.json, manifest.json.minisig, the images). */
export interface JobRelease {
  version: string;
  /** https://server/releases/VERSION/ or a CDN; the unit trusts the signature, not this URL. */
  baseUrl: string;
  /** SHA-256 fingerprint (AB:CD:...) the unit pins for baseUrl's TLS, when it is the server's own certificate. */
  tlsFingerprint?: string;
}

/** rtr7/units/HOST/jobs/next: one update job. */
export interface JobDocument {
  jobId: string;
  operation: "update";
  /** The rollout it belongs to. */
  rolloutId: string;
  release: JobRelease;
  /** How long the new version must stay healthy, on trial, before the commit (ms). */
  soakMs: number;
  /** How long the new version may take to report healthy after its reboot (ms). */
  healthTimeoutMs: number;
  /** The server counts the job TIMED_OUT when it has heard nothing for this long (ms). */
  timeoutMs: number;
  /** Let the unit take a release signed before the one it runs. */
  allowDowngrade: boolean;
  /** Where the unit uploads its /perm backup before updating (HTTPS PUT, with its credential). */
  backupUrl?: string;
  createdAt: string;
}

/** rtr7/units/HOST/jobs/JOBID/update. */
export interface JobUpdate {
  jobId: string;
  state: Exclude<JobState, "QUEUED" | "TIMED_OUT" | "CANCELED">;
  /** While IN_PROGRESS: health, backup, manifest, download, testboot, reboot, healthy, soak, commit. */
  step?: string;
  /** While downloading: bytes of the image done and in all. */
  progress?: { image: string; bytesDone: number; bytesTotal: number };
  /** FAILED, REJECTED: why. */
  reason?: string;
  /** The version the unit runs now (committed), when it knows. */
  version?: string;
  at: string;
}

function jobError(what: string, why: string): Rtr7Error {
  return new Rtr7Error("RTR7_ERR_JOB", `${what}: ${why}`);
}

function asObject(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw jobError(what, `want a JSON object, got ${Array.isArray(value) ? "an array" : typeof value}`);
  return value as Record<string, unknown>;
}

function parseJson(payload: Buffer | string, what: string, limit = 64 * 1024): unknown {
  const text = typeof payload === "string" ? payload : payload.toString("utf8");
  if (Buffer.byteLength(text) > limit)
    throw jobError(what, `${Buffer.byteLength(text)} bytes, more than ${limit}`);
  try {
    return JSON.parse(text) as unknown;
  } catch (error) {
    throw jobError(what, `not JSON (${(error as Error).message})`);
  }
}

const isDuration = (value: unknown): value is number =>
  typeof value === "number" && Number.isSafeInteger(value) && value >= 0 && value <= 7 * 24 * 3600_000;

/** A job document from the broker, checked field by field; RTR7_ERR_JOB naming the field. */
export function parseJobDocument(payload: Buffer | string): JobDocument {
  const what = "job document";
  const record = asObject(parseJson(payload, what), what);
  const text = (field: string, max = 256): string => {
    const value = record[field];
    if (typeof value !== "string" || value === "" || value.length > max)
      throw jobError(what, `${field} must be a non-empty string of at most ${max} characters`);
    return value;
  };
  const jobId = checkedJobId(text("jobId", 128));
  if (record.operation !== "update")
    throw jobError(
      what,
      `operation ${JSON.stringify(record.operation)} is not one this unit knows (want "update")`,
    );
  const release = asObject(record.release, `${what} release`);
  const version = release.version;
  const baseUrl = release.baseUrl;
  if (typeof version !== "string" || !/^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/.test(version))
    throw jobError(what, `release.version ${JSON.stringify(version)} is not a version`);
  let url: URL;
  try {
    url = new URL(typeof baseUrl === "string" ? baseUrl : "");
  } catch {
    throw jobError(what, `release.baseUrl ${JSON.stringify(baseUrl)} is not a URL`);
  }
  if (url.protocol !== "https:") throw jobError(what, `release.baseUrl must be https (got ${url.protocol})`);
  const fingerprint = release.tlsFingerprint;
  if (
    fingerprint !== undefined &&
    (typeof fingerprint !== "string" || !/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/.test(fingerprint))
  )
    throw jobError(what, "release.tlsFingerprint must be a SHA-256 fingerprint (AB:CD:...)");
  for (const field of ["soakMs", "healthTimeoutMs", "timeoutMs"])
    if (!isDuration(record[field]))
      throw jobError(what, `${field} must be a whole number of milliseconds up to a week`);
  if (typeof record.allowDowngrade !== "boolean")
    throw jobError(what, "allowDowngrade must be true or false");
  const backupUrl = record.backupUrl;
  if (backupUrl !== undefined && (typeof backupUrl !== "string" || !backupUrl.startsWith("https://")))
    throw jobError(what, "backupUrl must be an https URL");
  return {
    jobId,
    operation: "update",
    rolloutId: text("rolloutId", 128),
    release: {
      version,
      baseUrl: url.href.endsWith("/") ? url.href : `${url.href}/`,
      ...(typeof fingerprint === "string" ? { tlsFingerprint: fingerprint } : {}),
    },
    soakMs: record.soakMs as number,
    healthTimeoutMs: record.healthTimeoutMs as number,
    timeoutMs: record.timeoutMs as number,
    allowDowngrade: record.allowDowngrade,
    ...(typeof backupUrl === "string" ? { backupUrl } : {}),
    createdAt: text("createdAt", 64),
  };
}

/** A job update from a unit, checked; RTR7_ERR_JOB naming the field. */
export function parseJobUpdate(payload: Buffer | string): JobUpdate {
  const what = "job update";
  const record = asObject(parseJson(payload, what, 16 * 1024), what);
  const jobId = checkedJobId(typeof record.jobId === "string" ? record.jobId : "");
  const state = record.state;
  if (state !== "IN_PROGRESS" && state !== "SUCCEEDED" && state !== "FAILED" && state !== "REJECTED")
    throw jobError(
      what,
      `state ${JSON.stringify(state)}: a unit reports IN_PROGRESS, SUCCEEDED, FAILED or REJECTED`,
    );
  const optionalText = (field: string, max: number): string | undefined => {
    const value = record[field];
    if (value === undefined) return undefined;
    if (typeof value !== "string" || value.length > max)
      throw jobError(what, `${field} must be a string of at most ${max} characters`);
    return value;
  };
  const progress = record.progress;
  let parsedProgress: JobUpdate["progress"];
  if (progress !== undefined) {
    const p = asObject(progress, `${what} progress`);
    if (
      typeof p.image !== "string" ||
      p.image.length > 64 ||
      !Number.isSafeInteger(p.bytesDone) ||
      !Number.isSafeInteger(p.bytesTotal) ||
      (p.bytesDone as number) < 0 ||
      (p.bytesTotal as number) < 0
    )
      throw jobError(what, "progress must be {image, bytesDone, bytesTotal}");
    parsedProgress = { image: p.image, bytesDone: p.bytesDone as number, bytesTotal: p.bytesTotal as number };
  }
  const step = optionalText("step", 64);
  const reason = optionalText("reason", 4096);
  const version = optionalText("version", 64);
  return {
    jobId,
    state,
    ...(step !== undefined ? { step } : {}),
    ...(parsedProgress ? { progress: parsedProgress } : {}),
    ...(reason !== undefined ? { reason } : {}),
    ...(version !== undefined ? { version } : {}),
    at: optionalText("at", 64) ?? "",
  };
}

/** A unit's retained state, checked; RTR7_ERR_JOB when it is not one. */
export function parseUnitState(payload: Buffer | string): UnitState {
  const what = "unit state";
  const record = asObject(parseJson(payload, what, 16 * 1024), what);
  if (
    typeof record.hostname !== "string" ||
    typeof record.version !== "string" ||
    (record.slot !== "a" && record.slot !== "b") ||
    typeof record.trial !== "boolean" ||
    typeof record.health !== "string" ||
    !Number.isFinite(record.uptimeSeconds) ||
    typeof record.at !== "string"
  )
    throw jobError(what, "want {hostname, version, slot, trial, health, uptimeSeconds, at}");
  return {
    hostname: checkedHostname(record.hostname),
    version: record.version.slice(0, 64),
    slot: record.slot,
    trial: record.trial,
    health: record.health.slice(0, 4096),
    uptimeSeconds: record.uptimeSeconds as number,
    at: record.at.slice(0, 64),
    ...(typeof record.jobId === "string" ? { jobId: checkedJobId(record.jobId) } : {}),
  };
}
