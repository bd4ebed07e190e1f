// What the suite knows about the unit it runs on, shared by the supervisor
// and every service: the two root slots, and the configuration each service
// is started with (passed as JSON in RTR7_SERVICE_CONFIG, so a service is a
// plain process that the supervisor can kill and restart).
import { unitPorts } from "../lib/wire/update-protocol.js";

export const slots = ["a", "b"] as const;
/** Root slot A is partition 2, B partition 3 (DESIGN.md's disk layout). */
export type Slot = (typeof slots)[number];

export function otherSlot(slot: Slot): Slot {
  return slot === "a" ? "b" : "a";
}

export function isSlot(value: unknown): value is Slot {
  return value === "a" || value === "b";
}

/** The usual ports (router7's and gokrazy's). */
export { unitPorts };

/** Where things are on the unit, or under DIR in process mode. */
export interface UnitPaths {
  /** The boot partition: /dev/vda1, or DIR/boot.img (a FAT image either way). */
  boot: string;
  /** The root slots: /dev/vda2 and /dev/vda3, or DIR/root-a.img and DIR/root-b.img. */
  roots: Record<Slot, string>;
  /** Where the MBR boot code goes (bytes 0..439): the whole disk, or DIR/disk-mbr.img. */
  mbr: string;
  /** The mounted /perm directory, or DIR/perm. */
  perm: string;
  /** The running image's /etc/rtr7 (build.json, diagd.json). */
  etc: string;
  /** Run-time state (the supervisor's status file): /run/rtr7, or DIR/run. */
  run: string;
}

export interface ServiceConfig {
  mode: "unit" | "process";
  hostname: string;
  /** The running image's version (from its build.json). */
  version: string;
  /** What the unit is, for mDNS and /health.json: "qemu", "apu2", "process". */
  model: string;
  /** The slot the unit runs now. */
  slot: Slot;
  /** True while the running slot is on trial (testboot, not yet committed). */
  trial: boolean;
  /** Address the services listen on when `listen` is not set: ADDR in process mode. */
  address: string;
  /**
   * Where the services listen and whom they answer, from /perm/rtr7/listen.json
   * (router/http-guard/listen-config.ts): on a unit, lan0's address and loopback.
   */
  listen?: { addresses: string[]; allowSources: string[]; names: string[] };
  /** The plain HTTP ports, and the HTTPS ones (absent: that service serves no HTTPS). */
  ports: {
    update: number;
    diagd: number;
    backupd: number;
    updateTls?: number;
    diagdTls?: number;
    backupdTls?: number;
  };
  paths: UnitPaths;
  /** The LAN interface diagd checks: lan0 on a unit, the one holding `address` in process mode. */
  interfaceName?: string;
  /** Seconds since the epoch (ms) when the unit (or process-mode boot) started. */
  bootedAtMs: number;
}

export const serviceConfigVariable = "RTR7_SERVICE_CONFIG";

export function readServiceConfig(env: NodeJS.ProcessEnv = process.env): ServiceConfig {
  const text = env[serviceConfigVariable];
  if (!text) throw new Error(`${serviceConfigVariable} is not set: services are started by the supervisor`);
  return JSON.parse(text) as ServiceConfig;
}
