// The suite as an ordinary process (`/rtr7/init supervisor --dir DIR ...`),
// started by `rtr7 lab unit` from the code of the slot it boots. The slots
// and the boot partition are files under DIR, /perm is DIR/perm, and a
// reboot is this process writing DIR/run/next-boot.json and exiting: the
// lab's loop then plays firmware and boot loader. The hostname is
// DIR/perm/hostname's, else --hostname's, else build.json's (router/
// build-info.ts), so a fleet release keeps each unit's name.
import { mkdir } from "node:fs/promises";
import { writeNextBoot } from "./next-boot.js";
import { networkInterfaces } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { createLogger } from "../lib/log.js";
import type { NextBoot } from "./boot/boot-control.js";
import { readBuildInfo, unitHostname } from "./build-info.js";
import { runSuite } from "./suite.js";
import { isSlot, unitPorts, type ServiceConfig, type UnitPaths } from "./unit.js";

/** The files of a process-mode unit directory. */
export function processUnitPaths(dir: string, etc: string): UnitPaths {
  return {
    boot: path.join(dir, "boot.img"),
    roots: { a: path.join(dir, "root-a.img"), b: path.join(dir, "root-b.img") },
    mbr: path.join(dir, "disk-mbr.img"),
    perm: path.join(dir, "perm"),
    etc,
    run: path.join(dir, "run"),
  };
}

export { nextBootFile } from "./next-boot.js";

/** The interface that holds `address`, for diagd's checks. */
export function interfaceHolding(address: string): string | undefined {
  for (const [name, addresses] of Object.entries(networkInterfaces())) {
    if (addresses?.some((entry) => entry.address === address)) return name;
  }
  return undefined;
}

export async function runProcessMode(argv: string[], init: string): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      dir: { type: "string" },
      address: { type: "string", default: "127.0.0.1" },
      slot: { type: "string", default: "a" },
      hostname: { type: "string" },
      "trial-deadline-ms": { type: "string" },
    },
  });
  if (!values.dir) throw new Error("supervisor: --dir DIR is required");
  const dir = path.resolve(values.dir);
  if (!isSlot(values.slot)) throw new Error(`supervisor: --slot ${values.slot}: want a or b`);
  const etc = path.join(path.dirname(path.dirname(init)), "etc", "rtr7");
  const build = await readBuildInfo(etc);
  const log = createLogger({}).child({ subsystem: "init" });
  const say = (line: string): void => void process.stdout.write(`rtr7 init: ${line}\n`);
  const trialDeadlineMs = values["trial-deadline-ms"] ? Number(values["trial-deadline-ms"]) : undefined;
  const paths = processUnitPaths(dir, etc);
  await mkdir(paths.run, { recursive: true });
  await mkdir(paths.perm, { recursive: true });
  const named = await unitHostname(paths.perm, build, values.hostname);
  if (named.problem !== undefined) say(named.problem);
  const config: ServiceConfig = {
    mode: "process",
    hostname: named.hostname,
    version: build.version,
    model: "process",
    slot: values.slot,
    trial: trialDeadlineMs !== undefined,
    address: values.address,
    ports: { ...unitPorts },
    paths,
    interfaceName: interfaceHolding(values.address),
    bootedAtMs: Date.now(),
  };
  say(
    `${config.hostname} ${config.version} on slot ${config.slot}${config.trial ? " (trial)" : ""}, pid ${process.pid}`,
  );
  const suite = await runSuite({
    config,
    program: { node: process.execPath, init },
    trialDeadlineMs,
    log,
    say,
    reboot: async (next: NextBoot) => {
      await writeNextBoot(dir, next);
      process.exit(0);
    },
  });
  say(
    `up: update API http://${config.address}:${config.ports.update}, diagd :${config.ports.diagd}, backupd :${config.ports.backupd}`,
  );
  const shutdown = (): void => {
    void suite.stop().then(() => process.exit(0));
  };
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
}
