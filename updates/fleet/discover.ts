// Which units a workstation knows: those that announce `_rtr7._tcp` by mDNS
// on its LAN (router/mdns/announce.ts), merged with the inventory file
// (inventory.ts), which covers units mDNS cannot reach (routed networks,
// units whose announcement is off). `rtr7 fleet ls` shows the result after a
// health probe (survey.ts); `rtr7 fleet update` picks its units from it.
//
// Browsing uses bonjour-service, as the unit's announcement does, so both
// sides share one DNS-SD implementation; avahi-browse in the integration test
// checks the announcement independently. A socket whose multicast interface
// is the kernel's default needs a default route, which a workstation on an
// isolated lab or shop LAN often lacks; so one browser runs per IPv4
// interface (or only on --interface), each bound to 0.0.0.0:5353 and joined
// to the group on its own interface, as the announcement does. The query is
// repeated every second (RFC 6762 §5.2 asks for growing intervals; a browse
// lasts seconds, so a fixed one is enough) so one lost packet loses no unit.
// Every socket is closed before discoverUnits returns.
//
// Address when both know a unit: mDNS wins. It is what the unit said just
// now on the LAN the workstation is on (the address the answer came from,
// else the first A record), where an inventory address may be stale after a
// renumbering; the inventory's address is still reported (inventoryAddress)
// and used for units mDNS does not see. A unit known only by an inventory
// entry without an address is reached by its hostname.
import os from "node:os";
import type { EventEmitter } from "node:events";
import { Bonjour, type Service } from "bonjour-service";
import { Rtr7Error, describeError } from "../../lib/errors.js";
import type { Logger } from "../../lib/log.js";
import { checkedHostname } from "../../lib/wire/names.js";
import { unitPorts } from "../../lib/wire/update-protocol.js";
import { readInventory, type InventoryUnit } from "./inventory.js";

export type UnitSource = "mdns" | "inventory";

/** What one mDNS answer said about a unit. */
export interface MdnsSighting {
  hostname: string;
  /** The address the answer came from, else its first A record. */
  address: string;
  /** The update API's port (the SRV record). */
  port: number;
  /** The TXT record's fields (hostname, version, slot, model). */
  txt: Record<string, string>;
}

export interface KnownUnit {
  hostname: string;
  /** How to reach it: mDNS's address, else the inventory's, else the hostname. */
  address: string;
  addressFrom: "mdns" | "inventory" | "hostname";
  /** The update API's port: mDNS's SRV record, else 80. */
  port: number;
  /** Where the unit is known from: "mdns", "inventory" or both, in that order. */
  sources: UnitSource[];
  /** The announcement's TXT record, when mDNS saw the unit. */
  mdns?: { version?: string; slot?: string; model?: string };
  /** The unit's inventory entry (MAC, rebootor, serial, disk), when it has one. */
  inventory?: InventoryUnit;
}

export interface BrowseOptions {
  timeoutMs: number;
  log: Logger;
  /** IPv4 addresses of the interfaces to browse on; default every non-loopback IPv4 interface. */
  interfaceAddresses?: string[];
}

export type BrowseMdns = (options: BrowseOptions) => Promise<MdnsSighting[]>;

export interface DiscoverOptions {
  inventoryFile: string;
  /** Browse mDNS (false: the inventory only). */
  browse: boolean;
  /** How long to browse. */
  timeoutMs: number;
  log: Logger;
  /** Browse only on the interface holding this IPv4 address. */
  interfaceAddress?: string;
  /** Browse only on this interface (its first IPv4 address). */
  interfaceName?: string;
  /** The mDNS browser; default bonjour-service (tests pass their own). */
  browseMdns?: BrowseMdns;
  /** os.networkInterfaces, for interfaceName and the default interfaces. */
  interfaces?: () => NodeJS.Dict<os.NetworkInterfaceInfo[]>;
}

/** The known units, sorted by hostname. */
export async function discoverUnits(options: DiscoverOptions): Promise<KnownUnit[]> {
  const log = options.log.child({ subsystem: "fleet" });
  const inventory = await readInventory(options.inventoryFile);
  let sightings: MdnsSighting[] = [];
  if (options.browse) {
    const interfaces = (options.interfaces ?? os.networkInterfaces)();
    const interfaceAddresses = options.interfaceAddress
      ? [options.interfaceAddress]
      : options.interfaceName
        ? [interfaceAddress(interfaces, options.interfaceName)]
        : browsableAddresses(interfaces);
    if (interfaceAddresses.length === 0)
      log.warn("mDNS: no IPv4 interface other than loopback to browse on; listing the inventory only.");
    else
      sightings = await (options.browseMdns ?? browseMdns)({
        timeoutMs: options.timeoutMs,
        log,
        interfaceAddresses,
      });
  }
  return mergeUnits(inventory, sightings, log);
}

/** The inventory and what mDNS saw, one entry per hostname (see the header for which address wins). */
export function mergeUnits(inventory: InventoryUnit[], sightings: MdnsSighting[], log?: Logger): KnownUnit[] {
  const units = new Map<string, KnownUnit>();
  for (const sighting of sightings) {
    if (units.has(sighting.hostname)) continue;
    units.set(sighting.hostname, {
      hostname: sighting.hostname,
      address: sighting.address,
      addressFrom: "mdns",
      port: sighting.port,
      sources: ["mdns"],
      mdns: pickTxt(sighting.txt),
    });
  }
  for (const entry of inventory) {
    const seen = units.get(entry.hostname);
    if (seen) {
      seen.sources.push("inventory");
      seen.inventory = entry;
      if (entry.address !== undefined && entry.address !== seen.address)
        log?.info(
          { peer: entry.hostname, mdnsAddress: seen.address, inventoryAddress: entry.address },
          `${entry.hostname} answers mDNS from ${seen.address}, not the inventory's ${entry.address}; using ${seen.address}.`,
        );
      continue;
    }
    units.set(entry.hostname, {
      hostname: entry.hostname,
      address: entry.address ?? entry.hostname,
      addressFrom: entry.address === undefined ? "hostname" : "inventory",
      port: unitPorts.update,
      sources: ["inventory"],
      inventory: entry,
    });
  }
  return [...units.values()].sort((x, y) => x.hostname.localeCompare(y.hostname));
}

function pickTxt(txt: Record<string, string>): KnownUnit["mdns"] {
  const picked: NonNullable<KnownUnit["mdns"]> = {};
  if (typeof txt.version === "string") picked.version = txt.version;
  if (typeof txt.slot === "string") picked.slot = txt.slot;
  if (typeof txt.model === "string") picked.model = txt.model;
  return picked;
}

function interfaceAddress(interfaces: NodeJS.Dict<os.NetworkInterfaceInfo[]>, name: string): string {
  const address = interfaces[name]?.find((entry) => entry.family === "IPv4")?.address;
  if (address === undefined)
    throw new Rtr7Error("RTR7_ERR_USAGE", `--interface ${name}: no such interface with an IPv4 address`);
  return address;
}

/** Every non-internal IPv4 address, one per interface. */
export function browsableAddresses(interfaces: NodeJS.Dict<os.NetworkInterfaceInfo[]>): string[] {
  const addresses: string[] = [];
  for (const entries of Object.values(interfaces)) {
    const entry = entries?.find((item) => item.family === "IPv4" && !item.internal);
    if (entry) addresses.push(entry.address);
  }
  return addresses;
}

/** A service bonjour-service found, as a sighting; undefined when its name is not a hostname. */
export function sightingOf(service: Service, log?: Logger): MdnsSighting | undefined {
  const txt: Record<string, string> = {};
  for (const [key, value] of Object.entries((service.txt ?? {}) as Record<string, unknown>))
    if (typeof value === "string") txt[key] = value;
  let hostname: string;
  try {
    hostname = checkedHostname(txt.hostname || service.name);
  } catch (error) {
    log?.debug({ name: service.name }, `mDNS: skipping ${service.name}: ${describeError(error)}`);
    return undefined;
  }
  const addresses = (service.addresses ?? []).filter((address) => !address.includes(":"));
  const from = service.referer?.address;
  const address =
    from !== undefined && (addresses.length === 0 || addresses.includes(from)) ? from : addresses[0];
  if (address === undefined) return undefined;
  return { hostname, address, port: service.port, txt };
}

/** bonjour-service's browser on each interface for timeoutMs, then every socket closed. */
export async function browseMdns(options: BrowseOptions): Promise<MdnsSighting[]> {
  const { log } = options;
  const found = new Map<string, MdnsSighting>();
  const instances: Bonjour[] = [];
  const browsers: ReturnType<Bonjour["find"]>[] = [];
  const note = (service: Service): void => {
    const sighting = sightingOf(service, log);
    if (!sighting) return;
    if (!found.has(sighting.hostname))
      log.debug(
        { peer: sighting.hostname, address: sighting.address, txt: sighting.txt },
        `mDNS: ${sighting.hostname} at ${sighting.address}:${sighting.port}`,
      );
    found.set(sighting.hostname, sighting);
  };
  try {
    for (const address of options.interfaceAddresses ?? browsableAddresses(os.networkInterfaces())) {
      const bonjour = new Bonjour({ interface: address, bind: "0.0.0.0" } as object, (error: unknown) =>
        log.debug({ err: error }, `mDNS: sending on ${address} failed: ${describeError(error)}`),
      );
      instances.push(bonjour);
      // bonjour-service does not listen for its socket's errors, which would
      // otherwise end the process as unhandled events.
      const mdns = (bonjour as unknown as { server?: { mdns?: EventEmitter } }).server?.mdns;
      mdns?.on("error", (error: Error) =>
        log.warn({ err: error }, `mDNS: cannot browse on ${address}: ${error.message}`),
      );
      mdns?.on("warning", (error: Error) => log.debug({ err: error }, `mDNS: ${error.message}`));
      const browser = bonjour.find({ type: "rtr7" });
      browser.on("up", note);
      browser.on("txt-update", note);
      browser.on("srv-update", note);
      browsers.push(browser);
    }
    const deadline = Date.now() + options.timeoutMs;
    while (Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(1000, deadline - Date.now())));
      if (Date.now() < deadline) for (const browser of browsers) browser.update();
    }
  } finally {
    for (const browser of browsers) browser.stop();
    await Promise.all(
      instances.map(
        (bonjour) =>
          new Promise<void>((resolve) => {
            try {
              bonjour.destroy(() => resolve());
            } catch {
              resolve();
            }
          }),
      ),
    );
  }
  return [...found.values()];
}
