// A process-mode unit (`rtr7 lab unit`) in a namespace of its own, joined by
// a veth pair to a "workstation" namespace, as the update API, update client,
// safe-update tests and the push bench need it: the unit's /perm seeded with
// the given files, the suite up, and its update API password read back.
// On a failure part way, what was made is removed before the error goes on.
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Started } from "../../lab/processes.js";
import { joinWithVeth, Netns } from "./netns.js";
import { cliEntry } from "./paths.js";

export interface LabUnitPair {
  unitNs: Netns;
  workstation: Netns;
  /** The unit's directory (slots, boot.img, perm/). */
  dir: string;
  unit: Started;
  password: string;
  /** Stops the unit, removes both namespaces and the unit's directory. */
  destroy(): Promise<void>;
}

export async function startLabUnitPair(options: {
  /** Short label for the namespaces and the directory. */
  label: string;
  hostname: string;
  imagesDir: string;
  unitAddress: string;
  workstationAddress: string;
  /** Files under /perm, by relative path. */
  permFiles?: Record<string, string>;
}): Promise<LabUnitPair> {
  const made: { unitNs?: Netns; workstation?: Netns; dir?: string; unit?: Started } = {};
  const destroy = async (): Promise<void> => {
    await made.unit?.stop(15_000);
    await Promise.all([made.unitNs?.destroy(), made.workstation?.destroy()]);
    if (made.dir) await rm(made.dir, { recursive: true, force: true });
  };
  try {
    const unitNs = (made.unitNs = await Netns.create(`${options.label}u`));
    const workstation = (made.workstation = await Netns.create(`${options.label}w`));
    await joinWithVeth(workstation, { device: "ws0", cidr: `${options.workstationAddress}/24` }, unitNs, {
      device: "lan0",
      cidr: `${options.unitAddress}/24`,
    });
    const dir = (made.dir = await mkdtemp(path.join(tmpdir(), `rtr7-${options.label}-`)));
    for (const [name, content] of Object.entries(options.permFiles ?? {})) {
      const file = path.join(dir, "perm", name);
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, content);
    }
    const unit = (made.unit = unitNs.start(process.execPath, [
      cliEntry,
      "lab",
      "unit",
      "--dir",
      dir,
      "--hostname",
      options.hostname,
      "--address",
      options.unitAddress,
      "--image-dir",
      options.imagesDir,
    ]));
    await unit.waitForLine(/rtr7 init: up:/, 60_000);
    const password = (await readFile(path.join(dir, "perm", "gokr-pw.txt"), "utf8")).trim();
    return { unitNs, workstation, dir, unit, password, destroy };
  } catch (error) {
    await destroy();
    throw error;
  }
}
