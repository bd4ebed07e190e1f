// IPv4 addresses as DHCP carries them: four bytes on the wire, dotted quads
// ("10.99.0.1") everywhere else. Small helpers shared by the packet codec and
// the PXE policy, so that neither parses addresses by hand.
import { isIPv4 } from "node:net";

export const anyAddress = "0.0.0.0";
export const limitedBroadcast = "255.255.255.255";

/** The dotted quad of the four bytes at offset. */
export function readIpv4(buffer: Buffer, offset: number): string {
  return `${buffer[offset]}.${buffer[offset + 1]}.${buffer[offset + 2]}.${buffer[offset + 3]}`;
}

/** The four bytes of a dotted quad; throws a RangeError naming `what` when it is not one. */
export function ipv4Bytes(address: string, what = "address"): Buffer {
  if (!isIPv4(address))
    throw new RangeError(`${what}: got ${JSON.stringify(address)}, want a dotted IPv4 address`);
  return Buffer.from(address.split(".").map(Number));
}

export function ipv4ToNumber(address: string): number {
  return ipv4Bytes(address).readUInt32BE(0);
}

/** Whether a dotted quad is a netmask: ones, then zeros (255.255.255.192, not 255.0.255.0). */
export function isNetmask(address: string): boolean {
  if (!isIPv4(address)) return false;
  const inverted = ~ipv4ToNumber(address) >>> 0;
  return (inverted & (inverted + 1)) === 0;
}
