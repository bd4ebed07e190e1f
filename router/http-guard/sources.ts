// Which addresses may talk to the unit's HTTP services. A unit is a router:
// its uplink faces the internet, so its update API, diagd and backupd answer
// only hosts that can be on its own side: loopback, the private ranges
// (RFC 1918, IPv6 unique-local) and link-local, as gokrazy does. Anything
// else needs naming in /perm/rtr7/listen.json ("allowSources"). This is the
// second line behind binding to the LAN's addresses only; node:net's
// BlockList does the prefix matching for IPv4, IPv6 and IPv4-mapped IPv6.
import { BlockList, isIP } from "node:net";

const localRanges: [string, number, "ipv4" | "ipv6"][] = [
  ["127.0.0.0", 8, "ipv4"],
  ["10.0.0.0", 8, "ipv4"],
  ["172.16.0.0", 12, "ipv4"],
  ["192.168.0.0", 16, "ipv4"],
  ["169.254.0.0", 16, "ipv4"],
  ["::1", 128, "ipv6"],
  ["fc00::", 7, "ipv6"],
  ["fe80::", 10, "ipv6"],
];

export interface SourcePolicy {
  /** True when a request from `address` may be answered. */
  allows(address: string): boolean;
}

/** Loopback, private and link-local sources, plus the CIDR prefixes in `extra` ("203.0.113.0/24"). */
export function localSourcePolicy(extra: readonly string[] = []): SourcePolicy {
  const allowed = new BlockList();
  for (const [network, prefix, family] of localRanges) allowed.addSubnet(network, prefix, family);
  for (const cidr of extra) {
    const [network = "", prefixText] = cidr.split("/");
    const family = isIP(network) === 6 ? "ipv6" : "ipv4";
    const prefix = prefixText === undefined ? (family === "ipv6" ? 128 : 32) : Number(prefixText);
    allowed.addSubnet(network, prefix, family);
  }
  return {
    allows(address) {
      const plain = address.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, "");
      const family = isIP(plain);
      if (family === 0) return false;
      return allowed.check(plain, family === 6 ? "ipv6" : "ipv4");
    },
  };
}

/** A CIDR prefix as listen.json takes it, or a reason it is not one. */
export function checkCidr(text: string): string | undefined {
  const [network = "", prefixText, ...rest] = text.split("/");
  const family = isIP(network);
  if (family === 0 || rest.length > 0) return `${JSON.stringify(text)} is not an address or CIDR prefix`;
  if (prefixText === undefined) return undefined;
  const prefix = Number(prefixText);
  const most = family === 6 ? 128 : 32;
  if (!/^\d+$/.test(prefixText) || prefix > most)
    return `${JSON.stringify(text)}: the prefix length must be 0..${most}`;
  return undefined;
}
