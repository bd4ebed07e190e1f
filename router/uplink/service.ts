// The uplink as a supervised service (`/rtr7/init service uplink`), started
// by the suite only when /perm/rtr7/uplink.json exists (router/suite.ts).
// A configuration that does not parse is reported and the service idles
// (no crash loop, the rest of the unit unaffected). Health comes from
// diagd's /health.json over loopback. The installer is not yet wired to the
// update API's code paths: its install steps refuse, so a remote job ends
// FAILED before anything is written (see installer.ts for what it must do).
import { Rtr7Error, describeError } from "../../lib/errors.js";
import type { Logger } from "../../lib/log.js";
import type { RunningService, ServiceMain } from "../services.js";
import { otherSlot, type ServiceConfig } from "../unit.js";
import { readUplinkConfig } from "./config.js";
import type { Installer } from "./installer.js";
import { startUplink } from "./uplink.js";

async function diagdHealth(config: ServiceConfig): Promise<string> {
  const host = config.mode === "unit" ? "127.0.0.1" : config.address;
  const response = await fetch(`http://${host}:${config.ports.diagd}/health.json`, {
    signal: AbortSignal.timeout(5000),
  });
  const body = (await response.json()) as { first_error?: unknown };
  if (typeof body.first_error !== "string") throw new Error("diagd's /health.json has no first_error");
  return body.first_error;
}

function notWired(what: string): Promise<never> {
  return Promise.reject(
    new Rtr7Error(
      "RTR7_ERR_INTERNAL",
      `${what}: this build's uplink has no installer over the update API yet; nothing was written`,
    ),
  );
}

/** Boot state and health of the running unit; the install steps refuse until wired. */
export function unitInstaller(config: ServiceConfig): Installer {
  return {
    bootState: () =>
      Promise.resolve({
        version: config.version,
        slot: config.slot,
        trial: config.trial,
        committedSlot: config.trial ? otherSlot(config.slot) : config.slot,
        uptimeSeconds: Math.round((Date.now() - config.bootedAtMs) / 1000),
      }),
    health: () => diagdHealth(config),
    backup: () => notWired("backup"),
    acceptManifest: () => notWired("manifest"),
    openImage: () => notWired("download"),
    testboot: () => notWired("testboot"),
    reboot: () => notWired("reboot"),
    commit: () => notWired("commit"),
    rollback: () => notWired("rollback"),
  };
}

export const uplinkMain: ServiceMain = async (
  config: ServiceConfig,
  log: Logger,
): Promise<RunningService> => {
  let uplinkConfig;
  try {
    uplinkConfig = await readUplinkConfig(config.paths.perm, config.hostname);
  } catch (error) {
    log.error(`uplink not started: ${describeError(error)}`);
    return { close: () => Promise.resolve() };
  }
  if (uplinkConfig === undefined) return { close: () => Promise.resolve() };
  const uplink = startUplink({
    config: uplinkConfig,
    perm: config.paths.perm,
    installer: unitInstaller(config),
    log,
  });
  return { close: () => uplink.close() };
};
