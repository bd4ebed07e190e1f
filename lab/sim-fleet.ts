// A fleet of simulated units in one process, for `npm run bench`'s rollouts
// (`rtr7 fleet update` to 50 and 500 units) and the test that proves the
// simulation speaks the real protocol (test/integration/sim-fleet.test.ts).
// Each unit (lab/sim-fleet-unit.ts) listens on its own loopback address,
// 127.0.x.y counting up from `firstAddress` (Linux routes all of 127/8 to
// lo, so binding needs no address set up; port 80 needs root), on the real
// ports, so the CLI reaches it exactly as it reaches a unit on the LAN. The
// versions come from the releases given: a map from each manifest's root.img
// SHA-256 to its version, so a unit reports the version of what was pushed
// to it. backupd's archive (a small /perm as a gzip'd tar made with
// tar-stream, as router/backupd does) is built once and shared.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { gzipSync } from "node:zlib";
import { pack as tarPack } from "tar-stream";
import { Rtr7Error } from "../lib/errors.js";
import type { Logger } from "../lib/log.js";
import { parseManifest } from "../lib/wire/manifest.js";
import { unitPorts } from "../lib/wire/update-protocol.js";
import { SimUnit, type SimStats } from "./sim-fleet-unit.js";

export type { SimStats };

export interface SimFleetOptions {
  count: number;
  /** The first unit's address; the next ones count up, skipping .0 and .255. Default 127.0.1.1. */
  firstAddress?: string;
  /** Default sim-0001, sim-0002, ... */
  hostnames?: string[];
  /** Every unit's update password (user gokrazy). */
  password: string;
  /** Release directories (manifest.json naming root.img's SHA-256 and the version). */
  releases: string[];
  /** The version every unit starts on, in both slots; default the first release's. */
  startVersion?: string;
  /** How long a reboot keeps a unit down; default 300 ms. */
  downMs?: number;
  /** Units that report a version as unhealthy (first_error set); default none. */
  unhealthy?: { version: string; hostnames?: string[] };
  /** Default the real ones (80, 7733, 8077). */
  ports?: { update: number; diagd: number; backupd: number };
  log?: Logger;
}

export interface SimFleet {
  units: { hostname: string; address: string }[];
  stats: SimStats;
  /** Each unit's running version, slot, trial flag and committed slot. */
  states(): ReturnType<SimUnit["state"]>[];
  stop(): Promise<void>;
}

/** "127.0.1.1" + n, skipping addresses whose last byte is 0 or 255. */
export function simAddresses(first: string, count: number): string[] {
  const parts = first.split(".").map(Number);
  if (parts.length !== 4 || parts[0] !== 127 || parts.some((part) => !(part >= 0 && part <= 255)))
    throw new Rtr7Error("RTR7_ERR_USAGE", `sim fleet: first address ${first}: want 127.x.y.z`);
  let value = ((parts[1] as number) << 16) | ((parts[2] as number) << 8) | (parts[3] as number);
  const out: string[] = [];
  while (out.length < count) {
    const last = value & 0xff;
    if (last !== 0 && last !== 255) out.push(`127.${(value >> 16) & 0xff}.${(value >> 8) & 0xff}.${last}`);
    value += 1;
    if (value > 0xffffff)
      throw new Rtr7Error("RTR7_ERR_USAGE", `sim fleet: ${count} units do not fit in 127/8`);
  }
  return out;
}

/** {root.img SHA-256 → version} of the releases, and the first release's version. */
export async function releaseVersions(
  releases: string[],
): Promise<{ map: Map<string, string>; first?: string }> {
  const map = new Map<string, string>();
  let first: string | undefined;
  for (const dir of releases) {
    const manifest = parseManifest(JSON.parse(await readFile(path.join(dir, "manifest.json"), "utf8")));
    const root = manifest.images.find((image) => image.name === "root.img");
    if (!root || !manifest.version)
      throw new Rtr7Error("RTR7_ERR_MANIFEST", `${dir}/manifest.json: want a version and a root.img entry`);
    map.set(root.sha256, manifest.version);
    first ??= manifest.version;
  }
  return { map, first };
}

/** A small /perm as backupd sends it: a gzip'd tar with its end-of-archive marker. */
export async function simBackup(password: string): Promise<Buffer> {
  const pack = tarPack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const chunk of pack) chunks.push(chunk as Buffer);
  })();
  const mtime = new Date(0);
  const add = (name: string, content?: string) =>
    new Promise<void>((resolve, reject) => {
      const header =
        content === undefined
          ? { name, type: "directory" as const, mode: 0o755, mtime }
          : { name, type: "file" as const, mode: 0o600, mtime, size: Buffer.byteLength(content) };
      const done = (error?: Error | null) => (error ? reject(error) : resolve());
      if (content === undefined) pack.entry(header, done);
      else pack.entry(header, content, done);
    });
  await add("rtr7/");
  await add("gokr-pw.txt", `${password}\n`);
  await add("interfaces.json", '{"interfaces":[]}\n');
  await add("rtr7/slots.json", "{}\n");
  pack.finalize();
  await collected;
  return gzipSync(Buffer.concat(chunks));
}

export async function startSimFleet(options: SimFleetOptions): Promise<SimFleet> {
  const { map, first } = await releaseVersions(options.releases);
  const startVersion = options.startVersion ?? first;
  if (startVersion === undefined)
    throw new Rtr7Error("RTR7_ERR_USAGE", "sim fleet: name a release or a start version");
  const addresses = simAddresses(options.firstAddress ?? "127.0.1.1", options.count);
  const hostnames =
    options.hostnames ?? addresses.map((_address, index) => `sim-${String(index + 1).padStart(4, "0")}`);
  if (hostnames.length < options.count)
    throw new Rtr7Error(
      "RTR7_ERR_USAGE",
      `sim fleet: ${hostnames.length} hostnames for ${options.count} units`,
    );
  const stats: SimStats = { requests: 0, uploads: 0, uploadBytes: 0, reboots: 0, fallbacks: 0 };
  const unhealthy = options.unhealthy;
  const shared = {
    ports: options.ports ?? { ...unitPorts },
    versionBySha: map,
    backup: await simBackup(options.password),
    downMs: options.downMs ?? 300,
    unhealthy: (hostname: string, version: string) =>
      unhealthy !== undefined &&
      unhealthy.version === version &&
      (unhealthy.hostnames === undefined || unhealthy.hostnames.includes(hostname)),
    log: options.log,
    stats,
  };
  const units = addresses.map(
    (address, index) =>
      new SimUnit(hostnames[index] as string, address, startVersion, options.password, shared),
  );
  const stop = async () => {
    await Promise.all(units.map((unit) => unit.stop()));
  };
  try {
    // A few at a time: thousands of listen() calls at once gain nothing.
    for (let index = 0; index < units.length; index += 50)
      await Promise.all(units.slice(index, index + 50).map((unit) => unit.start()));
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    units: units.map((unit) => ({ hostname: unit.hostname, address: unit.address })),
    stats,
    states: () => units.map((unit) => unit.state()),
    stop,
  };
}
