// The uplink as a supervised service (`/rtr7/init service uplink`), started
// by the suite only when /perm/rtr7/uplink.json exists (router/suite.ts).
// A configuration that does not parse is reported and the service idles
// (no crash loop, the rest of the unit unaffected). Health comes from
// diagd's /health.json over loopback; the installer is the unit's own
// update API over loopback (update-api-installer.ts).
import { describeError } from "../../lib/errors.js";
import type { Logger } from "../../lib/log.js";
import type { RunningService, ServiceMain } from "../services.js";
import type { ServiceConfig } from "../unit.js";
import { readUplinkConfig } from "./config.js";
import { UpdateApiInstaller } from "./update-api-installer.js";
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
  const installer = new UpdateApiInstaller({
    host: config.mode === "unit" ? "127.0.0.1" : config.address,
    ports: { update: config.ports.update, backupd: config.ports.backupd },
    perm: config.paths.perm,
    bootedAtMs: config.bootedAtMs,
    health: () => diagdHealth(config),
  });
  const uplink = startUplink({ config: uplinkConfig, perm: config.paths.perm, installer, log });
  return { close: () => uplink.close() };
};
