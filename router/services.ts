// The services the supervisor starts, each as its own process
// (`/rtr7/init service NAME`), so one that crashes or is killed is restarted
// alone and cannot take the others down. Each runs until SIGTERM, then
// closes its listeners and exits 0.
import type { Logger } from "../lib/log.js";
import type { ServiceConfig } from "./unit.js";

export interface RunningService {
  /** Stops listening and releases what the service holds (mDNS withdraws its record). */
  close(): Promise<void>;
}

export type ServiceMain = (config: ServiceConfig, log: Logger) => Promise<RunningService>;

export const services: Record<string, () => Promise<ServiceMain>> = {
  diagd: async () => (await import("./diagd/server.js")).diagdMain,
  backupd: async () => (await import("./backupd/server.js")).backupdMain,
  mdns: async () => (await import("./mdns/announce.js")).announceMain,
  /** Only when /perm/rtr7/uplink.json exists and parses (router/suite.ts decides). */
  uplink: async () => (await import("./uplink/service.js")).uplinkMain,
};

export const serviceNames = (): string[] => Object.keys(services);
