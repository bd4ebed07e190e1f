// Which network interface faces the unit, and what the unit will be offered
// on it. Interfaces are read from iproute2 (`ip -j addr`), not from
// os.networkInterfaces(): libuv leaves out interfaces without carrier, and
// the port facing a powered-off unit (or a tap before its VM starts) has
// none, yet it is exactly the one rtr7 must serve on. With no --interface, rtr7 picks the first interface that is up, is
// not loopback and has exactly one IPv4 address; anything else is an error
// that names the candidates, because serving DHCP on the wrong LAN is worse
// than not starting. The netmask comes from the interface (router7 assumed
// /24).
import { execFileSync } from "node:child_process";
import { Rtr7Error } from "../../lib/errors.js";

export interface RecoveryNetwork {
  interfaceName: string;
  /** This machine's address on the interface: the unit's next server. */
  serverAddress: string;
  netmask: string;
  prefixLength: number;
  /** The address offered to the unit: the network with the recover octet. */
  unitAddress: string;
}

export interface InterfaceAddress {
  family: string | number;
  address: string;
  netmask: string;
  internal: boolean;
}

export interface InterfaceWorld {
  list(): Record<string, InterfaceAddress[] | undefined>;
  /** Administratively up (IFF_UP); carrier may still be missing. */
  isUp(name: string): boolean;
}

interface IpAddrJson {
  ifname: string;
  flags?: string[];
  addr_info?: { family: string; local: string; prefixlen: number }[];
}

/** This machine's interfaces as iproute2 reports them. */
export const hostInterfaces: InterfaceWorld = (() => {
  const read = (): IpAddrJson[] => {
    try {
      return JSON.parse(execFileSync("ip", ["-j", "addr", "show"], { encoding: "utf8" })) as IpAddrJson[];
    } catch (error) {
      throw new Rtr7Error(
        "RTR7_ERR_TOOL_MISSING",
        `list network interfaces with ip -j addr: ${(error as Error).message}`,
        {
          cause: error,
          hint: "Install iproute2 (scripts/setup.sh does).",
        },
      );
    }
  };
  // isUp answers from the snapshot list() just read: one `ip` run per choice.
  let snapshot: IpAddrJson[] | undefined;
  return {
    list() {
      const interfaces: Record<string, InterfaceAddress[]> = {};
      snapshot = read();
      for (const link of snapshot) {
        interfaces[link.ifname] = (link.addr_info ?? [])
          .filter((entry) => entry.family === "inet")
          .map((entry) => ({
            family: "IPv4",
            address: entry.local,
            netmask: numberToIpv4(entry.prefixlen === 0 ? 0 : (~0 << (32 - entry.prefixlen)) >>> 0),
            internal: (link.flags ?? []).includes("LOOPBACK"),
          }));
      }
      return interfaces;
    },
    isUp: (name) =>
      (snapshot ?? read()).some((link) => link.ifname === name && (link.flags ?? []).includes("UP")),
  };
})();

function ipv4Addresses(addresses: InterfaceAddress[] | undefined): InterfaceAddress[] {
  return (addresses ?? []).filter((entry) => entry.family === "IPv4" || entry.family === 4);
}

export function chooseRecoveryNetwork(
  options: { interfaceName?: string; recoverOctet: number },
  world: InterfaceWorld = hostInterfaces,
): RecoveryNetwork {
  const all = world.list();
  const name = options.interfaceName ?? defaultInterface(all, world);
  const addresses = all[name];
  if (addresses === undefined) {
    throw new Rtr7Error(
      "RTR7_ERR_INTERFACE_NOT_FOUND",
      `--interface ${name}: no such interface (have: ${Object.keys(all).join(", ")})`,
    );
  }
  const v4 = ipv4Addresses(addresses);
  const only = v4[0];
  if (v4.length !== 1 || only === undefined) {
    throw new Rtr7Error(
      "RTR7_ERR_INTERFACE_ADDRESS",
      `interface ${name}: want exactly one IPv4 address, got ${v4.length === 0 ? "none" : v4.map((entry) => entry.address).join(", ")}`,
    );
  }
  return networkFor(name, only.address, only.netmask, options.recoverOctet);
}

function defaultInterface(all: ReturnType<InterfaceWorld["list"]>, world: InterfaceWorld): string {
  const candidates = Object.entries(all)
    .filter(([candidate, addresses]) => {
      const v4 = ipv4Addresses(addresses);
      return v4.length > 0 && !v4.some((entry) => entry.internal) && world.isUp(candidate);
    })
    .map(([candidate]) => candidate);
  if (candidates.length === 0) {
    throw new Rtr7Error(
      "RTR7_ERR_INTERFACE_NONE",
      "choose the interface facing the unit: no interface is up with an IPv4 address (loopback does not count)",
    );
  }
  const single = candidates.find((candidate) => ipv4Addresses(all[candidate]).length === 1);
  if (single === undefined) {
    throw new Rtr7Error(
      "RTR7_ERR_INTERFACE_ADDRESS",
      `choose the interface facing the unit: ${candidates.join(", ")} each have several IPv4 addresses`,
      { hint: "Pass --interface NAME and keep exactly one IPv4 address on it." },
    );
  }
  return single;
}

export function networkFor(
  interfaceName: string,
  serverAddress: string,
  netmask: string,
  recoverOctet: number,
): RecoveryNetwork {
  if (!Number.isInteger(recoverOctet) || recoverOctet < 1 || recoverOctet > 254) {
    throw new Rtr7Error("RTR7_ERR_USAGE", `--recover-octet: want 1..254, got ${recoverOctet}`);
  }
  const server = ipv4ToNumber(serverAddress);
  const mask = ipv4ToNumber(netmask);
  const prefixLength = prefixLengthOf(mask);
  if (prefixLength === undefined || prefixLength > 30) {
    throw new Rtr7Error(
      "RTR7_ERR_INTERFACE_ADDRESS",
      `interface ${interfaceName}: netmask ${netmask} is not a network with room for a unit (want a contiguous mask of /30 or wider)`,
    );
  }
  const network = (server & mask) >>> 0;
  // The unit gets the network's address with its last byte replaced by the
  // recover octet, as router7 does; it must still be a host on the network.
  const unit = ((network & ~0xff) | recoverOctet) >>> 0;
  const broadcast = (network | ~mask) >>> 0;
  if ((unit & mask) >>> 0 !== network || unit === network || unit === broadcast) {
    throw new Rtr7Error(
      "RTR7_ERR_USAGE",
      `--recover-octet ${recoverOctet}: ${numberToIpv4(unit)} is not a host address in ${numberToIpv4(network)}/${prefixLength}`,
    );
  }
  if (unit === server) {
    throw new Rtr7Error(
      "RTR7_ERR_USAGE",
      `--recover-octet ${recoverOctet}: ${numberToIpv4(unit)} is this machine's own address on ${interfaceName}`,
      { hint: "Pick another --recover-octet (the unit gets that last byte)." },
    );
  }
  return {
    interfaceName,
    serverAddress,
    netmask,
    prefixLength,
    unitAddress: numberToIpv4(unit),
  };
}

/** Number of leading one bits of a contiguous netmask; undefined if not contiguous. */
export function prefixLengthOf(mask: number): number | undefined {
  let bits = 0;
  while (bits < 32 && (mask & (0x80000000 >>> bits)) !== 0) bits += 1;
  const rest = bits === 32 ? 0 : (mask << bits) >>> 0;
  return rest === 0 ? bits : undefined;
}

export function ipv4ToNumber(address: string): number {
  const parts = address.split(".").map(Number);
  if (parts.length !== 4 || parts.some((part) => !Number.isInteger(part) || part < 0 || part > 255)) {
    throw new Rtr7Error("RTR7_ERR_USAGE", `not an IPv4 address: ${JSON.stringify(address)}`);
  }
  return parts.reduce((value, part) => ((value << 8) | part) >>> 0, 0);
}

export function numberToIpv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => (value >>> shift) & 0xff).join(".");
}
