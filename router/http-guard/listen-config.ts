// Where the unit's HTTP services listen and whom they answer, from
// /perm/rtr7/listen.json:
//   {"addresses": ["10.0.0.1", "127.0.0.1"],   where to bind (default below)
//    "allowSources": ["203.0.113.0/24"],      sources beyond the local ranges
//    "names": ["router.example.lan"]}         extra names the Host header may carry
// Without the file (or without "addresses") the services bind to lan0's
// address from /perm/interfaces.json and to loopback, never 0.0.0.0, so the
// uplink answers nothing. A unit whose lan0 has no fixed address (DHCP on
// it) binds to every address and relies on the source check alone; init
// says so on the console. A malformed file is reported and ignored: the
// safe defaults apply, so a typo cannot open the unit to the WAN.
import { readFile } from "node:fs/promises";
import { isIP } from "node:net";
import path from "node:path";
import { checkCidr } from "./sources.js";

export interface ListenConfig {
  /** Addresses to bind, each with the same port. */
  addresses: string[];
  /** CIDR prefixes answered besides loopback, private and link-local. */
  allowSources: string[];
  /** Host-header names accepted besides the unit's hostname, hostname.local and its addresses. */
  names: string[];
  /** Why the defaults apply, when the file was there but not usable. */
  problem?: string;
}

export const listenConfigFile = "rtr7/listen.json";

/** lan0's address from interfaces.json ("10.0.0.1/24" → "10.0.0.1"), if it has a fixed one. */
export async function lanAddress(perm: string): Promise<string | undefined> {
  try {
    const parsed = JSON.parse(await readFile(path.join(perm, "interfaces.json"), "utf8")) as {
      interfaces?: { name?: unknown; addr?: unknown }[];
    };
    const lan = parsed.interfaces?.find((entry) => entry.name === "lan0");
    const address = typeof lan?.addr === "string" ? lan.addr.split("/")[0] : undefined;
    return address !== undefined && isIP(address) !== 0 ? address : undefined;
  } catch {
    return undefined;
  }
}

function stringList(value: unknown, field: string, check: (item: string) => string | undefined): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || !value.every((item) => typeof item === "string"))
    throw new Error(`"${field}" must be a list of strings`);
  for (const item of value) {
    const problem = check(item);
    if (problem !== undefined) throw new Error(`"${field}": ${problem}`);
  }
  return value;
}

/** The unit's listen config: the file's, else lan0 and loopback (every address when lan0 has none). */
export async function readListenConfig(perm: string): Promise<ListenConfig> {
  const lan = await lanAddress(perm);
  const defaults: ListenConfig = {
    addresses: lan === undefined ? ["0.0.0.0"] : [lan, "127.0.0.1"],
    allowSources: [],
    names: [],
  };
  const file = path.join(perm, listenConfigFile);
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return defaults;
    return { ...defaults, problem: `${file}: ${(error as Error).message}` };
  }
  try {
    const parsed = JSON.parse(text) as Record<string, unknown> | null;
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed))
      throw new Error("want a JSON object");
    const addresses = stringList(parsed.addresses, "addresses", (item) =>
      isIP(item) === 0 ? `${JSON.stringify(item)} is not an IP address` : undefined,
    );
    return {
      addresses: addresses.length > 0 ? addresses : defaults.addresses,
      allowSources: stringList(parsed.allowSources, "allowSources", checkCidr),
      names: stringList(parsed.names, "names", (item) =>
        /^[A-Za-z0-9.-]{1,253}$/.test(item) ? undefined : `${JSON.stringify(item)} is not a host name`,
      ).map((name) => name.toLowerCase()),
    };
  } catch (error) {
    return {
      ...defaults,
      problem: `${file}: ${(error as Error).message}; using the defaults (${defaults.addresses.join(", ")})`,
    };
  }
}
