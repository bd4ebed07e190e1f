// The fleet's inventory: $XDG_CONFIG_HOME/rtr7/fleet.json (~/.config without
// an absolute XDG_CONFIG_HOME), the units a workstation knows by hand, with
// what mDNS cannot tell: an address on a routed network, the MAC the
// recovery server locks to, the rebootor's serial, the serial console and
// the disk recovery erases. `rtr7 fleet ls` merges it with what mDNS finds,
// `rtr7 recover --hostname H` takes H's entry as its defaults, and `rtr7
// fleet add` / `rm` edit it: read, change, write a temporary file, fsync,
// rename, so a crash leaves the old file or the new one, never half of one.
// Each unit's `tlsFingerprint` is the pin of its TLS certificate, recorded
// by `rtr7 recover`, by the first contact (updates/client/unit-connection.ts)
// and by `rtr7 fleet trust`, through recordUnitPin, which keeps the
// entry's other fields and lets one process's concurrent pins (a survey
// of many units) write one after the other.
//
// {"units": [{"hostname": "shop-1", "address": "10.1.0.2", "mac": "...", ...}]}
import { readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { writeFileAtomically } from "../../lib/atomic-file.js";
import { Rtr7Error, describeError } from "../../lib/errors.js";
import { checkedDiskName, checkedHostname, normaliseMac } from "../../lib/wire/names.js";

export interface InventoryUnit {
  hostname: string;
  /** How the workstation reaches the unit: an IP address or a resolvable name. */
  address?: string;
  /** The unit's MAC (aa:bb:cc:dd:ee:ff), for recovery's MAC lock. */
  mac?: string;
  /** The Teensy rebootor's serial number or device path. */
  rebootor?: string;
  /** The unit's serial console (/dev/ttyUSB0). */
  serial?: string;
  /** The disk recovery erases (sda, nvme0n1). */
  disk?: string;
  /** The pinned SHA-256 fingerprint of the unit's TLS certificate ("AB:CD:..."). */
  tlsFingerprint?: string;
}

/** $XDG_CONFIG_HOME/rtr7/fleet.json. */
export function inventoryFile(env: NodeJS.ProcessEnv = process.env, home = os.homedir()): string {
  const xdg = env.XDG_CONFIG_HOME;
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(home, ".config");
  return path.join(base, "rtr7", "fleet.json");
}

const fields = ["hostname", "address", "mac", "rebootor", "serial", "disk", "tlsFingerprint"] as const;

/** A SHA-256 fingerprint in openssl's form: 32 upper-case hex pairs joined by colons. */
export function normaliseFingerprint(text: string): string {
  const hex = text.replace(/:/g, "").toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex))
    throw new Rtr7Error(
      "RTR7_ERR_USAGE",
      `TLS fingerprint ${JSON.stringify(text)}: want a SHA-256 fingerprint (AB:CD:... , 32 pairs)`,
    );
  return hex.replace(/(..)(?!$)/g, "$1:");
}

/** Checks one entry as `rtr7 fleet add` checks its flags; throws RTR7_ERR_INVENTORY naming the file. */
function checkedUnit(value: unknown, file: string, index: number): InventoryUnit {
  const bad = (why: string): Rtr7Error =>
    new Rtr7Error("RTR7_ERR_INVENTORY", `${file}: units[${index}] ${why}`);
  if (typeof value !== "object" || value === null || Array.isArray(value))
    throw bad(`is ${JSON.stringify(value)}; want an object with a hostname`);
  const record = value as Record<string, unknown>;
  for (const key of Object.keys(record)) {
    if (!(fields as readonly string[]).includes(key))
      throw bad(`has the unknown field ${JSON.stringify(key)} (known: ${fields.join(", ")})`);
    if (typeof record[key] !== "string") throw bad(`field ${key} is not a string`);
  }
  try {
    return normalisedUnit(record as unknown as InventoryUnit);
  } catch (error) {
    throw bad(describeError(error));
  }
}

/** The entry with its names checked and its MAC in lower-case colon form. */
export function normalisedUnit(unit: InventoryUnit): InventoryUnit {
  const result: InventoryUnit = { hostname: checkedHostname(unit.hostname) };
  if (unit.address !== undefined) {
    if (!/^[A-Za-z0-9.:[\]-]{1,253}$/.test(unit.address))
      throw new Rtr7Error(
        "RTR7_ERR_USAGE",
        `address ${JSON.stringify(unit.address)}: want an IP address or a host name`,
      );
    result.address = unit.address;
  }
  if (unit.mac !== undefined) result.mac = normaliseMac(unit.mac);
  if (unit.rebootor !== undefined) result.rebootor = unit.rebootor;
  if (unit.serial !== undefined) result.serial = unit.serial;
  if (unit.disk !== undefined) result.disk = checkedDiskName(unit.disk);
  if (unit.tlsFingerprint !== undefined) result.tlsFingerprint = normaliseFingerprint(unit.tlsFingerprint);
  return result;
}

/** The inventory's units, sorted by hostname; none when the file does not exist. */
export async function readInventory(file: string): Promise<InventoryUnit[]> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new Rtr7Error("RTR7_ERR_INVENTORY", `read ${file}: ${describeError(error)}`, { cause: error });
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new Rtr7Error("RTR7_ERR_INVENTORY", `${file} is not JSON: ${describeError(error)}`);
  }
  const units = (value as { units?: unknown } | null)?.units;
  if (!Array.isArray(units))
    throw new Rtr7Error("RTR7_ERR_INVENTORY", `${file}: want {"units": [...]}, found no units array`);
  const checked = units.map((unit, index) => checkedUnit(unit, file, index));
  const seen = new Set<string>();
  for (const unit of checked) {
    if (seen.has(unit.hostname))
      throw new Rtr7Error("RTR7_ERR_INVENTORY", `${file}: ${unit.hostname} is listed twice`);
    seen.add(unit.hostname);
  }
  return checked.sort((x, y) => x.hostname.localeCompare(y.hostname));
}

/** One unit's entry, or undefined. */
export async function inventoryUnit(file: string, hostname: string): Promise<InventoryUnit | undefined> {
  return (await readInventory(file)).find((unit) => unit.hostname === hostname);
}

async function writeInventory(file: string, units: InventoryUnit[]): Promise<void> {
  const sorted = [...units].sort((x, y) => x.hostname.localeCompare(y.hostname));
  await writeFileAtomically(file, JSON.stringify({ units: sorted }, null, 2) + "\n", {
    makeDirectory: true,
  });
}

/**
 * Adds the unit, or replaces its entry (keeping its pin unless `unit` names
 * one: re-adding a unit must not make the next contact trust anything);
 * returns whether it replaced one.
 */
export async function addInventoryUnit(file: string, unit: InventoryUnit): Promise<boolean> {
  const units = await readInventory(file);
  const pinned = units.find((known) => known.hostname === unit.hostname)?.tlsFingerprint;
  const entry = normalisedUnit({ tlsFingerprint: pinned, ...unit });
  const replaced = units.some((known) => known.hostname === entry.hostname);
  await writeInventory(file, [...units.filter((known) => known.hostname !== entry.hostname), entry]);
  return replaced;
}

/** Pins written one after the other within this process, per inventory file. */
const pinQueues = new Map<string, Promise<unknown>>();

/**
 * Records `fingerprint` as the unit's pin: its entry keeps every other
 * field; a unit without one gets {hostname, address, tlsFingerprint}.
 * Resolves to the fingerprint pinned before (undefined: none).
 */
export async function recordUnitPin(
  file: string,
  unit: { hostname: string; address?: string },
  fingerprint: string,
): Promise<string | undefined> {
  const pinned = normaliseFingerprint(fingerprint);
  const write = async (): Promise<string | undefined> => {
    const units = await readInventory(file);
    const known = units.find((entry) => entry.hostname === unit.hostname);
    const entry = normalisedUnit(
      known
        ? { ...known, tlsFingerprint: pinned }
        : { hostname: unit.hostname, address: unit.address, tlsFingerprint: pinned },
    );
    await writeInventory(file, [...units.filter((other) => other.hostname !== unit.hostname), entry]);
    return known?.tlsFingerprint;
  };
  const queued = (pinQueues.get(file) ?? Promise.resolve()).then(write, write);
  pinQueues.set(
    file,
    queued.catch(() => undefined),
  );
  return queued;
}

/** Removes the unit's entry; returns whether there was one. */
export async function removeInventoryUnit(file: string, hostname: string): Promise<boolean> {
  const units = await readInventory(file);
  const kept = units.filter((known) => known.hostname !== hostname);
  if (kept.length === units.length) return false;
  await writeInventory(file, kept);
  return true;
}
