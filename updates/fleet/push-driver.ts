// The push driver: how a rollout reaches a unit on the LAN. Each unit goes
// through safe-update's steps (health, backup, push, try-boot, soak, commit,
// rollback on failure) with the release linked into its run directory, its
// password found where gokrazy's tools keep it, and its log written as
// human-readable lines into that run directory's stdout.log. A failure in
// the health step (no answer, unhealthy, on trial, no password) means the
// unit was not fit to start: it is skipped, not failed. PXE recovery is
// never started by a rollout (one recovery server per LAN segment, and a
// fleet rolls many units at once): a unit that stays silent after its
// rollback fails with its run's recover.bash named in the reason. Each unit
// is reached as updates/client/unit-connection.ts decides: over HTTPS with
// its pinned certificate, or (no pin, no HTTPS) plain HTTP with one warning.
import { describeError, Rtr7Error } from "../../lib/errors.js";
import { createLogger, type Logger } from "../../lib/log.js";
import type { HealthReport } from "../../lib/wire/health.js";
import { openUnit, probeUnitHealth, type UnitEndpoint } from "../client/index.js";
import { unitConnection, PlainHttpNotice } from "../client/unit-connection.js";
import { updatePassword } from "../credentials.js";
import { inventoryFile } from "./inventory.js";
import type { Release } from "../release.js";
import type { RunSigning } from "../release-signing.js";
import type { RotationStatement } from "../../lib/trust/release-signature.js";
import { SafeUpdateError, safeUpdate, type SafeUpdateTimings } from "../safe-update.js";
import type { UnitDriver, UnitOutcome } from "./engine.js";
import type { RolloutUnit } from "./store.js";

export interface PushDriverOptions {
  release: Release;
  updatesDir: string;
  keepOnly: number;
  healthTimeoutMs: number;
  soakMs: number;
  kexec: boolean;
  recoverScript: { node: string; entry: string };
  log: Logger;
  timings?: Partial<SafeUpdateTimings>;
  /** The unit's password; default updatePassword (RTR7_PASSWORD, then gokrazy's files). */
  password?: (hostname: string) => Promise<string>;
  /** The fleet's key: each unit's manifest goes out signed by it (safe-update's `signing`). */
  signing?: RunSigning;
  /** The workstation's key rotation statements, oldest first (safe-update's `rotations`). */
  rotations?: RotationStatement[];
  /** Units that trust a key take a release signed before the one they run (safe-update's `allowDowngrade`). */
  allowDowngrade?: boolean;
  /** Where units' certificates are pinned (fleet.json); default inventoryFile(). */
  inventoryFile?: string;
  /** --insecure-http: no warning for units reached over plain HTTP. */
  insecureHttp?: boolean;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** A logger whose lines go to the run's stdout.log once it exists (held until then). */
function unitLogger(): { log: Logger; attach: (stream: NodeJS.WritableStream) => void } {
  let target: NodeJS.WritableStream | undefined;
  const held: string[] = [];
  const log = createLogger({
    json: false,
    level: "debug",
    stream: {
      write(line: string) {
        if (target) target.write(line);
        else if (held.length < 200) held.push(line);
      },
    },
  });
  return {
    log,
    attach(stream) {
      target = stream;
      for (const line of held.splice(0)) stream.write(line);
    },
  };
}

export function pushDriver(options: PushDriverOptions): UnitDriver {
  const password =
    options.password ?? (async (hostname: string) => (await updatePassword(hostname)).password);
  const probeTimeoutMs = options.timings?.probeTimeoutMs ?? 2000;
  const pollMs = options.timings?.pollMs ?? 500;
  const downTimeoutMs = options.timings?.downTimeoutMs ?? 30_000;

  // How each unit is reached (HTTPS with its pin, or plain HTTP), decided once per unit.
  const notice = new PlainHttpNotice();
  const endpoints = new Map<string, Promise<UnitEndpoint>>();
  const endpointOf = (unit: RolloutUnit): Promise<UnitEndpoint> => {
    let known = endpoints.get(unit.hostname);
    if (known === undefined) {
      known = unitConnection({
        hostname: unit.hostname,
        address: unit.address,
        port: unit.port,
        inventoryFile: options.inventoryFile ?? inventoryFile(),
        insecureHttp: options.insecureHttp,
        log: options.log,
        notice,
      });
      endpoints.set(unit.hostname, known);
    }
    return known;
  };

  /** Polls until the unit answers off trial, for up to `ms`. */
  const waitCommitted = async (endpoint: UnitEndpoint, ms: number): Promise<HealthReport | undefined> => {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      const seen = await probeUnitHealth(endpoint, { timeoutMs: probeTimeoutMs });
      if (seen && !seen.trial) return seen;
      await sleep(pollMs);
    }
    return undefined;
  };

  return {
    async update(unit: RolloutUnit, hooks): Promise<UnitOutcome> {
      const { log, attach } = unitLogger();
      let step: string | undefined;
      const endpoint = await endpointOf(unit);
      const now = await probeUnitHealth(endpoint, { timeoutMs: probeTimeoutMs });
      if (now && !now.trial && now.first_error === "" && now.version === options.release.version)
        return {
          result: "succeeded",
          fromVersion: now.version,
          toVersion: now.version,
          reason: `already runs ${now.version}`,
          step: "health",
        };
      try {
        const result = await safeUpdate({
          hostname: unit.hostname,
          unit: async () => openUnit(endpoint, { password: await password(unit.hostname) }, { log }),
          updatesDir: options.updatesDir,
          release: options.release,
          signing: options.signing,
          rotations: options.rotations,
          allowDowngrade: options.allowDowngrade,
          keepOnly: options.keepOnly,
          healthTimeoutMs: options.healthTimeoutMs,
          soakMs: options.soakMs,
          kexec: options.kexec,
          recoverScript: options.recoverScript,
          recover: () =>
            Promise.reject(
              new Rtr7Error("RTR7_ERR_UPDATE_FAILED", "a rollout does not start PXE recovery by itself"),
            ),
          timings: options.timings,
          log,
          onRun: (run) => attach(run.stdout),
          onStep: (name) => {
            step = name;
            hooks.onStep(name);
          },
          onProgress: (progress) => hooks.onProgress(progress),
        });
        return {
          result: "succeeded",
          fromVersion: result.previousVersion,
          toVersion: result.version,
          runDir: result.runDir,
          step: "finish",
        };
      } catch (error) {
        const reason = describeError(error);
        const steps = error instanceof SafeUpdateError ? error.steps : [];
        const notFit = steps.length > 0 && steps.every((timing) => timing.step === "health");
        if (notFit) {
          options.log.debug({ unit: unit.hostname, reason }, `skipping ${unit.hostname}`);
          return { result: "skipped", reason, step: "health" };
        }
        options.log.debug({ unit: unit.hostname, err: error }, `${unit.hostname} failed`);
        return {
          result: "failed",
          reason,
          step,
          fromVersion: now?.version,
          toVersion: options.release.version,
          runDir: error instanceof SafeUpdateError ? error.runDir : undefined,
        };
      }
    },

    async settle(unit: RolloutUnit) {
      const endpoint = await endpointOf(unit);
      const seen = await probeUnitHealth(endpoint, { timeoutMs: probeTimeoutMs });
      if (seen && !seen.trial) return { committedVersion: seen.version };
      if (seen) {
        // On trial with nobody left to commit it: back to its committed slot.
        options.log.info(
          `${unit.hostname} runs ${seen.version} on trial: rebooting it into its committed slot.`,
        );
        const target = await openUnit(
          endpoint,
          { password: await password(unit.hostname) },
          { log: options.log },
        );
        await target.reboot({ kexec: options.kexec }).catch(() => undefined);
        await sleep(pollMs);
      } else {
        options.log.info(
          `${unit.hostname} does not answer: waiting for it to come back on a committed slot.`,
        );
      }
      const back = await waitCommitted(
        endpoint,
        options.healthTimeoutMs + options.soakMs + 2 * downTimeoutMs + 15_000,
      );
      return back
        ? { committedVersion: back.version }
        : { reason: "it did not come back on a committed slot; see its run directory's recover.bash" };
    },
  };
}
