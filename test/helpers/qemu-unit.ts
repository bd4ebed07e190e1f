// A QEMU unit that boots from its own disk, for end-to-end tests and
// benchmarks: the disk is made from built images with a /perm that holds
// interfaces.json (lan0 at a fixed address) and the update password, and
// the unit is reached from inside its namespace with curl.
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Netns } from "../../lab/netns.js";
import type { Started } from "../../lab/processes.js";
import { diskUnitArgs } from "../../lab/qemu.js";
import { assembleUnitDisk } from "../../lab/unit-disk.js";
import type { HealthReport } from "../../lib/wire/health.js";

export interface DiskUnit {
  unit: Started;
  disk: string;
  bootSeconds: number;
}

export interface UnitDiskFiles {
  work: string;
  imagesDir: string;
  hostname: string;
  mac: string;
  address: string;
  password: string;
  /** Extra files for /perm, by path relative to it. */
  permFiles?: Record<string, string>;
}

export async function startDiskUnit(
  options: UnitDiskFiles & { ns: Netns; bootTimeoutMs?: number },
): Promise<DiskUnit> {
  const disk = await makeUnitDisk(options);
  const started = Date.now();
  const unit = options.ns.start("qemu-system-x86_64", diskUnitArgs({ tap: "tap0", disk, mac: options.mac }));
  await unit.waitForLine(/rtr7 init: up/, options.bootTimeoutMs ?? 300_000);
  return { unit, disk, bootSeconds: (Date.now() - started) / 1000 };
}

/** The unit's disk (work/disk-HOSTNAME.img) with a /perm holding interfaces.json, the password and `permFiles`. */
export async function makeUnitDisk(options: UnitDiskFiles): Promise<string> {
  const perm = path.join(options.work, `perm-${options.hostname}`);
  const files: Record<string, string> = {
    "gokr-pw.txt": `${options.password}\n`,
    "interfaces.json": JSON.stringify({
      interfaces: [{ hardware_addr: options.mac, name: "lan0", addr: `${options.address}/24` }],
    }),
    ...options.permFiles,
  };
  for (const [name, content] of Object.entries(files)) {
    await mkdir(path.dirname(path.join(perm, name)), { recursive: true });
    await writeFile(path.join(perm, name), content);
  }
  const disk = path.join(options.work, `disk-${options.hostname}.img`);
  await assembleUnitDisk({ imagesDir: options.imagesDir, disk, hostname: options.hostname, permDir: perm });
  return disk;
}

/** /health.json of the unit at `address`, fetched inside `ns`; undefined when it does not answer. */
export async function unitHealth(ns: Netns, address: string): Promise<HealthReport | undefined> {
  const result = await ns
    .exec("curl", ["-sS", "--max-time", "2", `http://${address}:7733/health.json`], { timeoutMs: 5000 })
    .catch(() => undefined);
  try {
    return result ? (JSON.parse(result.stdout) as HealthReport) : undefined;
  } catch {
    return undefined;
  }
}

/** Waits until the unit reports `want` (and is healthy); returns the seconds it took. */
export async function waitForUnit(
  ns: Netns,
  address: string,
  want: { version: string; slot?: string; trial?: boolean },
  timeoutMs: number,
  context: () => string = () => "",
): Promise<number> {
  const started = Date.now();
  let last: HealthReport | undefined;
  while (Date.now() - started < timeoutMs) {
    const seen = await unitHealth(ns, address);
    if (seen) last = seen;
    if (
      seen &&
      seen.version === want.version &&
      (want.slot === undefined || seen.slot === want.slot) &&
      seen.trial === (want.trial ?? false) &&
      seen.first_error === ""
    )
      return (Date.now() - started) / 1000;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  throw new Error(
    `the unit never reported ${JSON.stringify(want)}; last ${JSON.stringify(last)}\n${context()}`,
  );
}
