// rtr7 safe-update: one health-gated update of a unit, which must never
// leave the unit unreachable. The steps (router7's, with try-boot):
//   healthy? → run directory → backup of /perm → build → push root, boot,
//   mbr (each hash-verified) → testboot + reboot (kexec) → down → healthy on
//   the new version → commit → recover.bash → keep the last N runs.
// The new slot only ever runs on trial: it is reached by kexec while the
// boot loader still names the committed slot, with a commit deadline. So
// whatever happens to this process (an error, Ctrl-C, SIGKILL) the unit ends
// on a committed slot: a trial that is not committed falls back by itself.
// A failure after the push rolls back actively: a unit that answers is
// rebooted into its committed slot; one that does not is given the time the
// fallback needs; one still silent then is recovered over PXE with the last
// known-good images and the backup just taken.
import { execFile, spawn } from "node:child_process";
import { access, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { Rtr7Error, describeError, isRtr7Error } from "../lib/errors.js";
import { formatBytes, type Logger } from "../lib/log.js";
import type { HealthReport } from "../lib/wire/health.js";
import { UpdateClient, type UnitEndpoint } from "./client/update-client.js";
import { buildUnitImages } from "./image/build.js";
import { writeRecoverScript } from "./recover-script.js";
import { lastKnownGood, pruneRuns, UpdateRun } from "./runs.js";

const execFileAsync = promisify(execFile);

export const safeUpdateSteps = [
  "health",
  "backup",
  "build",
  "push",
  "testboot",
  "down",
  "healthy",
  "commit",
  "finish",
] as const;
export type SafeUpdateStep = (typeof safeUpdateSteps)[number];

export interface SafeUpdateTimings {
  /** One health probe (router7: 2 s). */
  probeTimeoutMs: number;
  /** How long the unit may take to go down after the reboot request (router7: 30 s). */
  downTimeoutMs: number;
  /** Between probes. */
  pollMs: number;
}

export const defaultTimings: SafeUpdateTimings = { probeTimeoutMs: 2000, downTimeoutMs: 30_000, pollMs: 500 };

export interface SafeUpdateOptions {
  hostname: string;
  /** Where the unit is reached; default its hostname. */
  endpoint?: Partial<UnitEndpoint>;
  password: string;
  updatesDir: string;
  /** Run through /bin/sh -c with RTR7_OUT_DIR (and GOKR_DIR) set; default `rtr7 image build`. */
  buildCommand?: string;
  keepOnly: number;
  /** How long the new version may take to report healthy (router7: 2 min). */
  healthTimeoutMs: number;
  kexec: boolean;
  /**
   * How long the unit keeps the new slot on trial without a commit before it
   * falls back by itself; default the health timeout + 45 s.
   */
  trialDeadlineMs?: number;
  /** The rtr7 CLI, for recover.bash and for the last-resort recovery. */
  cli: { node: string; entry: string };
  log: Logger;
  /** Byte progress of the backup download and the pushes. */
  onProgress?: (progress: { image: string; bytesDone: number; bytesTotal: number }) => void;
  /** Called once the run directory exists (the CLI copies its log lines into stdout.log). */
  onRun?: (run: UpdateRun) => void;
  /** Called as each step starts (tests kill the CLI at a chosen step). */
  onStep?: (step: SafeUpdateStep) => void;
  /** Extra flags for the last-resort `rtr7 recover` (e.g. --interface). */
  recoverArgs?: string[];
  timings?: Partial<SafeUpdateTimings>;
}

export interface SafeUpdateResult {
  runDir: string;
  previousVersion: string;
  version: string;
  /** Seconds between the last healthy answer before the reboot and the first after. */
  gapSeconds: number;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The version an image will report: /etc/rtr7/build.json inside root.img. */
export async function rootImageVersion(rootImage: string): Promise<string> {
  try {
    const { stdout } = await execFileAsync("unsquashfs", ["-cat", rootImage, "etc/rtr7/build.json"], {
      encoding: "utf8",
      maxBuffer: 1 << 20,
    });
    const version = (JSON.parse(stdout) as { version?: unknown }).version;
    if (typeof version === "string" && version !== "") return version;
    throw new Error("build.json has no version");
  } catch (cause) {
    throw new Rtr7Error(
      "RTR7_ERR_IMAGE_BUILD",
      `read the new version from ${rootImage} (/etc/rtr7/build.json): ${describeError(cause)}`,
      { cause, hint: "Build the root image with `rtr7 image build`, which writes /etc/rtr7/build.json." },
    );
  }
}

async function runBuildCommand(command: string, run: UpdateRun, log: Logger): Promise<void> {
  log.info({ command }, `Building with: ${command}`);
  const child = spawn("/bin/sh", ["-c", command], {
    env: { ...process.env, RTR7_OUT_DIR: run.dir, GOKR_DIR: run.dir },
    cwd: process.cwd(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout.pipe(run.stdout, { end: false });
  child.stderr.pipe(run.stderr, { end: false });
  const code = await new Promise<number | string>((resolve) => {
    child.on("error", (error) => resolve(error.message));
    child.on("close", (exitCode, signal) => resolve(signal ?? exitCode ?? "unknown"));
  });
  if (code !== 0)
    throw new Rtr7Error(
      "RTR7_ERR_IMAGE_BUILD",
      `build command ${JSON.stringify(command)} failed (${typeof code === "number" ? `exit code ${code}` : code}); its output is in ${run.dir}/stderr.log`,
    );
}

async function requireImages(dir: string): Promise<void> {
  for (const name of ["mbr.img", "boot.img", "root.img"]) {
    try {
      await access(path.join(dir, name));
    } catch {
      throw new Rtr7Error("RTR7_ERR_IMAGE_BUILD", `the build left no ${name} in ${dir}`, {
        hint: "A --build-command must write mbr.img, boot.img and root.img into $RTR7_OUT_DIR.",
      });
    }
  }
}

export async function safeUpdate(options: SafeUpdateOptions): Promise<SafeUpdateResult> {
  const timings = { ...defaultTimings, ...options.timings };
  const log = options.log.child({ subsystem: "update" });
  const endpoint: UnitEndpoint = { host: options.hostname, port: 80, ...options.endpoint };
  const client = new UpdateClient({ endpoint, password: options.password, log });
  const where = `${options.hostname} (${endpoint.host}:${endpoint.port})`;
  const step = (name: SafeUpdateStep): void => options.onStep?.(name);

  // 1. The unit must be healthy and committed before anything is touched.
  step("health");
  const before = await client.health(timings.probeTimeoutMs);
  if (!before)
    throw new Rtr7Error(
      "RTR7_ERR_UNIT_UNHEALTHY",
      `${where} does not answer /health.json; nothing was changed`,
    );
  if (before.first_error !== "")
    throw new Rtr7Error(
      "RTR7_ERR_UNIT_UNHEALTHY",
      `${where} is not healthy (${before.first_error}); nothing was changed`,
    );
  if (before.trial)
    throw new Rtr7Error(
      "RTR7_ERR_UNIT_UNHEALTHY",
      `${where} runs slot ${before.slot} (${before.version}) on trial, not committed; nothing was changed`,
      { hint: "Wait for the trial to end (it falls back by itself), or commit it, then update again." },
    );
  log.info(
    { version: before.version, slot: before.slot },
    `${options.hostname} is healthy on ${before.version} (slot ${before.slot}).`,
  );

  const run = await UpdateRun.create(options.updatesDir, options.hostname);
  options.onRun?.(run);
  const record = (patch: Parameters<UpdateRun["setRecord"]>[0]) => run.setRecord(patch);
  await record({
    hostname: options.hostname,
    status: "running",
    previousVersion: before.version,
    startedAt: new Date().toISOString(),
  });
  run.event({ event: "start", hostname: options.hostname, version: before.version, slot: before.slot });
  log.info({ runDir: run.dir }, `Run directory: ${run.dir}`);

  let pushed = false;
  let newVersion: string | undefined;
  try {
    // 2. The backup, checked to be a complete gzip tar.
    step("backup");
    const backupFile = path.join(run.dir, "backup.tar.gz");
    const backup = await client.downloadBackup(backupFile, (bytes) =>
      options.onProgress?.({ image: "backup.tar.gz", bytesDone: bytes, bytesTotal: Math.max(bytes, 1) }),
    );
    run.event({ event: "backup", bytes: backup.bytes });
    log.info({ bytes: backup.bytes }, `Backed up /perm: ${formatBytes(backup.bytes)} in backup.tar.gz.`);

    // 3. Build.
    step("build");
    if (options.buildCommand) await runBuildCommand(options.buildCommand, run, log);
    else await buildUnitImages({ outDir: run.dir, hostname: options.hostname, log: options.log });
    await requireImages(run.dir);
    newVersion = await rootImageVersion(path.join(run.dir, "root.img"));
    await record({ version: newVersion });
    // Every run with images gets its recover.bash before the unit is touched.
    await writeRecoverScript(run.dir, { hostname: options.hostname, cli: options.cli });
    run.event({ event: "built", version: newVersion });
    if (newVersion === before.version)
      log.warn(
        { version: newVersion },
        `The new build reports the same version as the unit (${newVersion}); the update cannot tell them apart.`,
      );

    // 4. Push, each image hash-verified by the unit's reply.
    step("push");
    const features = await client.features();
    for (const [target, file] of [
      ["root", "root.img"],
      ["boot", "boot.img"],
      ["mbr", "mbr.img"],
    ] as const) {
      const image = path.join(run.dir, file);
      const size = (await stat(image)).size;
      const pushedImage = await client.push(target, image, {
        hash: features.hash,
        onProgress: (sent, total) =>
          options.onProgress?.({ image: file, bytesDone: sent, bytesTotal: total }),
      });
      run.event({
        event: "pushed",
        image: file,
        bytes: pushedImage.bytes,
        hash: pushedImage.hash,
        ms: pushedImage.ms,
      });
      log.info(
        { image: file, bytes: size, ms: pushedImage.ms },
        `Pushed ${file} (${formatBytes(size)}, ${features.hash} verified) in ${(pushedImage.ms / 1000).toFixed(1)} s.`,
      );
    }
    pushed = true;
  } catch (error) {
    // Nothing was switched: the unit still runs its committed slot.
    const now = await client.health(timings.probeTimeoutMs);
    const message = `${describeError(error)}; nothing was switched: ${options.hostname} ${now ? `runs ${now.version} (slot ${now.slot})` : "did not answer afterwards"}`;
    run.event({ event: "failed", step: "before-switch", message });
    run.stderr.write(`rtr7 safe-update: ${message}\n`);
    if (newVersion !== undefined) await markRecoverScriptFailed(run, options, newVersion, message);
    await record({
      status: "failed",
      finishedAt: new Date().toISOString(),
      message,
      unitVersionAfter: now?.version,
    });
    await run.close();
    throw new Rtr7Error(isRtr7Error(error) ? error.code : "RTR7_ERR_UPDATE_FAILED", message, {
      cause: error,
      hint: isRtr7Error(error) ? error.hint : undefined,
    });
  }

  // 5.-8. Try-boot, wait, commit; any failure from here on rolls back.
  let lastHealthyBefore = Date.now();
  const deadlineMs = options.trialDeadlineMs ?? options.healthTimeoutMs + timings.downTimeoutMs + 15_000;
  try {
    step("testboot");
    if (options.kexec) {
      await client.testboot({ deadlineMs });
    } else {
      // The boot loader cannot boot a slot once: without kexec the switch is
      // permanent, and a rollback switches back.
      log.warn("--no-kexec: the new slot becomes the default before it is proven; a rollback switches back.");
      await client.switchSlot();
    }
    const lastBefore = await client.health(timings.probeTimeoutMs);
    if (lastBefore) lastHealthyBefore = Date.now();
    await client.reboot({ kexec: options.kexec });
    run.event({ event: "rebooting", kexec: options.kexec, deadlineMs });
    log.info(`Rebooting ${options.hostname} into the new slot${options.kexec ? " with kexec" : ""}.`);

    step("down");
    await waitForDown(client, before, timings);
    step("healthy");
    const after = await waitForNewVersion(client, before, newVersion ?? "", options.healthTimeoutMs, timings);
    const gapSeconds = (after.at - lastHealthyBefore) / 1000;
    run.event({ event: "healthy", version: after.report.version, slot: after.report.slot, gapSeconds });
    log.info(
      { gapSeconds },
      `${options.hostname} is healthy on ${after.report.version} (slot ${after.report.slot}); no answer for ${gapSeconds.toFixed(1)} s.`,
    );

    step("commit");
    await client.commit();
    run.event({ event: "committed", version: after.report.version, slot: after.report.slot });

    step("finish");
    await record({
      status: "committed",
      finishedAt: new Date().toISOString(),
      unitVersionAfter: after.report.version,
    });
    const deleted = await pruneRuns(options.updatesDir, options.hostname, options.keepOnly, [run.dir]);
    if (deleted.length > 0) run.event({ event: "pruned", dirs: deleted });
    log.info(`Updated ${options.hostname} from ${before.version} to ${after.report.version}; committed.`);
    await run.close();
    return { runDir: run.dir, previousVersion: before.version, version: after.report.version, gapSeconds };
  } catch (error) {
    const reason = describeError(error);
    log.error({ err: error }, `The update failed: ${reason}. Rolling back.`);
    run.event({ event: "failed", message: reason });
    const now = await rollBack({ client, options, before, run, deadlineMs, timings, log, pushed }).catch(
      (rollbackError: unknown) => {
        run.event({ event: "rollback-failed", message: describeError(rollbackError) });
        return `unknown (${describeError(rollbackError)})`;
      },
    );
    const message = `${reason}; rolled back: ${options.hostname} now runs ${now}`;
    run.stderr.write(`rtr7 safe-update: ${message}\n`);
    await markRecoverScriptFailed(run, options, newVersion ?? "?", message);
    await record({ status: "failed", finishedAt: new Date().toISOString(), message, unitVersionAfter: now });
    await run.close();
    throw new Rtr7Error("RTR7_ERR_UPDATE_FAILED", message, { cause: error });
  }
}

/** Rewrites a failed run's recover.bash so that it warns, naming the last known-good run. */
async function markRecoverScriptFailed(
  run: UpdateRun,
  options: SafeUpdateOptions,
  version: string,
  message: string,
): Promise<void> {
  const good = await lastKnownGood(options.updatesDir, options.hostname).catch(() => undefined);
  const warning =
    `these are the images of a failed update to ${version} (${message}).` +
    (good ? ` The last known-good run is ${good.dir}: run its recover.bash instead.` : "");
  await writeRecoverScript(run.dir, { hostname: options.hostname, cli: options.cli, warning }).catch(
    (error: unknown) =>
      run.stderr.write(`rtr7 safe-update: rewriting recover.bash: ${describeError(error)}\n`),
  );
}

/** Down: no answer, or an answer from a new boot (shorter uptime, or another version or slot). */
async function waitForDown(
  client: UpdateClient,
  before: HealthReport,
  timings: SafeUpdateTimings,
): Promise<void> {
  const started = Date.now();
  const beforeUptime = before.uptime_seconds + Math.ceil((Date.now() - started) / 1000);
  while (Date.now() - started < timings.downTimeoutMs) {
    const seen = await client.health(timings.probeTimeoutMs);
    if (!seen) return;
    if (seen.version !== before.version || seen.slot !== before.slot || seen.trial !== before.trial) return;
    if (seen.uptime_seconds < beforeUptime) return;
    await sleep(Math.min(timings.pollMs, 250));
  }
  throw new Rtr7Error(
    "RTR7_ERR_UPDATE_FAILED",
    `the unit did not go down within ${Math.round(timings.downTimeoutMs / 1000)} s of the reboot request`,
  );
}

async function waitForNewVersion(
  client: UpdateClient,
  before: HealthReport,
  version: string,
  timeoutMs: number,
  timings: SafeUpdateTimings,
): Promise<{ report: HealthReport; at: number }> {
  const started = Date.now();
  let last: HealthReport | undefined;
  while (Date.now() - started < timeoutMs) {
    const seen = await client.health(timings.probeTimeoutMs);
    if (seen) last = seen;
    if (seen && seen.version === version && seen.slot !== before.slot && seen.first_error === "")
      return { report: seen, at: Date.now() };
    if (
      seen &&
      seen.slot === before.slot &&
      !seen.trial &&
      seen.version === before.version &&
      seen.first_error === ""
    )
      throw new Rtr7Error(
        "RTR7_ERR_UPDATE_FAILED",
        `the new version ${version} did not come up: the unit fell back to ${before.version} (slot ${before.slot}) by itself`,
      );
    await sleep(timings.pollMs);
  }
  const seen = last
    ? `it last reported ${last.version} (slot ${last.slot}${last.trial ? ", trial" : ""})${last.first_error ? `: ${last.first_error}` : ", healthy"}`
    : "it never answered";
  throw new Rtr7Error(
    "RTR7_ERR_UPDATE_FAILED",
    `${version} was not healthy within ${Math.round(timeoutMs / 1000)} s; ${seen}`,
  );
}

/** Brings the unit back to its committed version; returns what it runs now. */
async function rollBack(context: {
  client: UpdateClient;
  options: SafeUpdateOptions;
  before: HealthReport;
  run: UpdateRun;
  deadlineMs: number;
  timings: SafeUpdateTimings;
  log: Logger;
  pushed: boolean;
}): Promise<string> {
  const { client, options, before, run, timings, log } = context;
  const isBack = (seen: HealthReport | undefined): boolean =>
    seen !== undefined && seen.version === before.version && seen.slot === before.slot && !seen.trial;
  const describe = (seen: HealthReport): string => `${seen.version} (slot ${seen.slot})`;
  const waitBack = async (ms: number): Promise<HealthReport | undefined> => {
    const started = Date.now();
    while (Date.now() - started < ms) {
      const seen = await client.health(timings.probeTimeoutMs);
      if (isBack(seen) && seen?.first_error === "") return seen;
      await sleep(timings.pollMs);
    }
    return undefined;
  };

  const now = await client.health(timings.probeTimeoutMs);
  if (isBack(now) && now) {
    run.event({ event: "rollback", how: "already back", version: now.version });
    return describe(now);
  }
  if (now) {
    // It answers: reboot it into its committed slot.
    log.info(`${options.hostname} answers on ${describe(now)}: rebooting it into its committed slot.`);
    if (!options.kexec) await client.switchSlot().catch(() => undefined);
    await client
      .reboot({ kexec: options.kexec })
      .catch((error: unknown) =>
        log.warn({ err: error }, `The reboot request failed: ${describeError(error)}`),
      );
    const back = await waitBack(options.healthTimeoutMs + timings.downTimeoutMs);
    if (back) {
      run.event({ event: "rollback", how: "reboot", version: back.version });
      return describe(back);
    }
  } else if (options.kexec) {
    // Silent: the trial's own fallback brings it back (panic or missed deadline).
    log.info(`${options.hostname} does not answer: waiting for its trial to fall back by itself.`);
    const back = await waitBack(context.deadlineMs + timings.downTimeoutMs);
    if (back) {
      run.event({ event: "rollback", how: "fallback", version: back.version });
      return describe(back);
    }
  }
  // Still nothing: recover it with the last known-good images and this backup.
  const good = await lastKnownGood(options.updatesDir, options.hostname);
  if (!good) {
    run.event({ event: "rollback", how: "none", message: "no known-good images to recover with" });
    return `nothing that answers; no earlier run of rtr7 safe-update holds known-good images to recover it with (run rtr7 recover by hand)`;
  }
  const backup = path.join(run.dir, "backup.tar.gz");
  const args = [
    options.cli.entry,
    "recover",
    `--hostname=${options.hostname}`,
    `--image-dir=${good.dir}`,
    ...((await access(backup).then(
      () => true,
      () => false,
    ))
      ? [`--backup=${backup}`]
      : []),
    ...(options.recoverArgs ?? []),
  ];
  log.warn(
    { images: good.dir },
    `${options.hostname} is unreachable: recovering it with the images of ${good.dir}.`,
  );
  run.event({ event: "rollback", how: "recover", images: good.dir });
  const code = await new Promise<number | string>((resolve) => {
    const child = spawn(options.cli.node, args, { stdio: ["ignore", "inherit", "inherit"] });
    child.on("error", (error) => resolve(error.message));
    child.on("close", (exitCode, signal) => resolve(signal ?? exitCode ?? "unknown"));
  });
  const recovered = code === 0 ? await waitBack(options.healthTimeoutMs) : undefined;
  if (recovered) return `${describe(recovered)}, recovered from ${good.dir}`;
  return `nothing that answers (rtr7 recover ended ${String(code)}); run ${path.join(good.dir, "recover.bash")} by hand`;
}

/** For messages and tests: reads run.json. */
export async function readRunRecord(runDir: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(path.join(runDir, "run.json"), "utf8")) as Record<string, unknown>;
}
