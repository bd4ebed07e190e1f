// A unit as one typed object, as gokrazy/updater's Target: `openUnit` asks
// GET /update/features once, then the object streams images to the unit
// (verified by the hash it replies), try-boots, switches, commits and
// reboots it, probes diagd's health and saves backupd's backup. It holds no
// policy (what to push when, what counts as healthy, when to roll back):
// safe-update and the fleet's rollout engine, one target per unit, decide
// that. Everything it touches the network with is the injected transport
// (default node:http); busy retries wait on the injected clock.
import { silentLogger, type Logger } from "../../lib/log.js";
import type { HealthReport } from "../../lib/wire/health.js";
import { updateUser, type UpdateHash, type UploadTarget } from "../../lib/wire/update-protocol.js";
import { endpointPorts, type UnitEndpoint } from "./endpoint.js";
import { downloadBackup, type BackupOptions } from "./backup.js";
import type { UnitContext } from "./context.js";
import { post, testbootForm } from "./control.js";
import { fetchFeatures, type UnitFeature } from "./features.js";
import { probeHealth } from "./health.js";
import { nodeHttpTransport, type Transport } from "./transport.js";
import { hostPort } from "./unit-errors.js";
import { streamTo, type StreamOptions, type StreamResult, type UploadSource } from "./upload.js";
import type { RotationStatement } from "../../lib/trust/release-signature.js";
import {
  fetchTrust,
  introduceKey,
  sendManifest,
  type KeyIntroduction,
  type ManifestAccepted,
  type SendManifestOptions,
  type UnitTrust,
} from "./trust.js";

export interface UnitCredentials {
  /** The unit's update password (its /perm/gokr-pw.txt); the user is gokrazy. */
  password: string;
}

export interface OpenUnitOptions {
  transport?: Transport;
  log?: Logger;
  /** Bound on a small request (features, switch, testboot, commit, reboot); default 30 s. */
  requestTimeoutMs?: number;
  /** An upload or download that makes no progress for this long fails; default 30 s. */
  idleTimeoutMs?: number;
  /** Pause between two attempts at a busy unit; default 2 s. */
  busyRetryIntervalMs?: number;
  /** Read size of file uploads; default 4 MiB. */
  chunkBytes?: number;
  /**
   * The hash uploads are verified with; default crc32 when the unit lists
   * `updatehash` (as gokrazy's updater does), else sha256. sha256 is always
   * possible; crc32 only with a unit that lists it.
   */
  updateHash?: UpdateHash;
  /** The clock busy retries wait on; default the real one. */
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

export interface UnitTarget {
  /** "10.0.0.1:80" (or ":443" over HTTPS): the update API's address, for messages. */
  readonly address: string;
  /** The features the unit listed ("partuuid,updatehash,"), as it sent them. */
  readonly featuresText: string;
  /** The hash uploads are verified with: crc32 when the unit lists updatehash. */
  readonly updateHash: UpdateHash;
  supports(feature: UnitFeature): boolean;
  /** PUT /update/<target>: streams the source, verified against the unit's reply hash; retries while busy. */
  streamTo(target: UploadTarget, source: UploadSource, options?: StreamOptions): Promise<StreamResult>;
  /** POST /update/testboot: the next boot runs the inactive slot once; commit it within the deadline. */
  testboot(options?: { deadlineMs?: number }): Promise<string>;
  /** POST /update/switch: the inactive slot becomes the default for good. */
  switch(): Promise<string>;
  /** POST /update/commit: the running (trial) slot becomes the default. */
  commit(): Promise<string>;
  /** POST /reboot, with kexec unless told otherwise. */
  reboot(options?: { kexec?: boolean }): Promise<string>;
  /** diagd's /health.json; undefined when it does not answer in time (default 2 s) or answers nonsense. */
  health(options?: { timeoutMs?: number }): Promise<HealthReport | undefined>;
  /** backupd's /backup.tar.gz saved as `to` when whole; nothing left behind otherwise. */
  backup(to: string, options?: BackupOptions): Promise<{ bytes: number }>;
  /** GET /update/trust (units that list `signed`): the keys it trusts, the signed release it runs. */
  trust(): Promise<UnitTrust>;
  /** PUT /update/trust: a rotation statement; the unit trusts the new key in place of the one that signed it. */
  introduceKey(statement: RotationStatement): Promise<KeyIntroduction>;
  /** PUT /update/manifest: the release's signed manifest, before its images. */
  sendManifest(options: SendManifestOptions): Promise<ManifestAccepted>;
}

export type { UnitEndpoint, UnitTlsEndpoint } from "./endpoint.js";

const realSleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export async function openUnit(
  endpoint: UnitEndpoint,
  credentials: UnitCredentials,
  options: OpenUnitOptions = {},
): Promise<UnitTarget> {
  const { ports, tls } = endpointPorts(endpoint);
  const address = hostPort(endpoint.host, ports.update);
  const authorization = `Basic ${Buffer.from(`${updateUser}:${credentials.password}`).toString("base64")}`;
  const unit: UnitContext = {
    host: endpoint.host,
    ports,
    transport: options.transport ?? nodeHttpTransport(),
    tls,
    authorization,
    secrets: [credentials.password, authorization.slice("Basic ".length)],
    log: (options.log ?? silentLogger()).child({ subsystem: "unit", peer: address }),
    requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
    idleTimeoutMs: options.idleTimeoutMs ?? 30_000,
  };
  const features = await fetchFeatures(unit);
  const hash: UpdateHash = options.updateHash === "sha256" ? "sha256" : features.hash;
  const upload = {
    hash,
    busyRetryIntervalMs: options.busyRetryIntervalMs ?? 2000,
    chunkBytes: options.chunkBytes ?? 4 * 1024 * 1024,
    now: options.now ?? Date.now,
    sleep: options.sleep ?? realSleep,
    gzipTargets: new Set<UploadTarget>(features.listed.has("gzip") ? ["boot", "bootonly"] : []),
  };
  return {
    address,
    featuresText: features.raw,
    updateHash: hash,
    supports: (feature) => features.listed.has(feature),
    streamTo: (target, source, streamOptions) => streamTo(unit, upload, target, source, streamOptions),
    testboot: async (testbootOptions = {}) =>
      post(unit, "/update/testboot", testbootForm(testbootOptions.deadlineMs)),
    switch: () => post(unit, "/update/switch"),
    commit: () => post(unit, "/update/commit"),
    reboot: (rebootOptions = {}) =>
      post(unit, "/reboot", rebootOptions.kexec === false ? { kexec: "off" } : undefined),
    health: (healthOptions = {}) => probeHealth(unit, healthOptions.timeoutMs),
    backup: (to, backupOptions) => downloadBackup(unit, to, backupOptions),
    trust: () => fetchTrust(unit),
    introduceKey: (statement) => introduceKey(unit, statement),
    sendManifest: (manifestOptions) => sendManifest(unit, manifestOptions),
  };
}
