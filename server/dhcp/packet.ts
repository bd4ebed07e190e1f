// The DHCPv4 wire format (RFC 2131 section 2, options per RFC 2132), decoded
// and encoded by hand. Written here rather than taken from npm because no
// maintained codec fits: the DHCP packages there are servers or clients with
// their own sockets and policy (dhcp, dhcpjs, node-dhcpd), unmaintained for
// years, untyped, and none rejects malformed input with a precise error or
// re-encodes a received packet byte for byte, which the golden tests demand.
//
// decode() treats every byte as hostile: anything malformed throws an
// Rtr7Error RTR7_ERR_DHCP_PACKET naming what is wrong, at which offset, got
// and want. Options keep their wire order and repetition; pad options between
// them are skipped; the bytes after the end option are kept as `padding`, so
// encode(decode(x)) gives x back for every real client captured here.
// Option overload (52) is decoded (options in `file`, then `sname`) and folded
// into the one list; encode() never overloads, it lets the options field grow.
import { Rtr7Error } from "../../lib/errors.js";
import { ipv4Bytes, readIpv4 } from "./ipv4.js";
import { OptionCode, optionData, optionLengthProblem, type DhcpOption, type HasOptions } from "./options.js";

export interface DhcpPacket extends HasOptions {
  /** 1 BOOTREQUEST (client to server), 2 BOOTREPLY. */
  readonly op: number;
  /** Hardware type; 1 is Ethernet. */
  readonly htype: number;
  /** Hardware address length; 6 for Ethernet, at most 16. */
  readonly hlen: number;
  readonly hops: number;
  /** Transaction id chosen by the client, echoed in replies. */
  readonly xid: number;
  readonly secs: number;
  /** Bit 15 (0x8000) is the broadcast flag. */
  readonly flags: number;
  readonly ciaddr: string;
  readonly yiaddr: string;
  readonly siaddr: string;
  readonly giaddr: string;
  /** The first hlen bytes of the chaddr field, "52:54:00:12:34:56". */
  readonly chaddr: string;
  /** Server host name, NUL-terminated on the wire. */
  readonly sname: string;
  /** Boot file name, NUL-terminated on the wire. */
  readonly file: string;
  readonly options: readonly DhcpOption[];
  /**
   * Bytes after the end option as received (clients pad to the 300-byte BOOTP
   * minimum). When absent, encode() pads with zeros up to 300 bytes.
   */
  readonly padding?: Buffer;
}

export const BootOp = { Request: 1, Reply: 2 } as const;
export const broadcastFlag = 0x8000;
export const minimumPacketLength = 300;

const magicCookie = 0x63825363;
const offsets = { chaddr: 28, sname: 44, file: 108, cookie: 236, options: 240 } as const;
const fieldLengths = { chaddr: 16, sname: 64, file: 128 } as const;

function malformed(message: string): Rtr7Error {
  return new Rtr7Error("RTR7_ERR_DHCP_PACKET", `decode DHCP packet: ${message}`);
}

export function decode(buffer: Buffer): DhcpPacket {
  if (buffer.length < offsets.options) {
    throw malformed(
      `too short: ${buffer.length} bytes, want at least ${offsets.options} (header and magic cookie)`,
    );
  }
  const op = buffer.readUInt8(0);
  if (op !== BootOp.Request && op !== BootOp.Reply) {
    throw malformed(`op at offset 0: got ${op}, want 1 (BOOTREQUEST) or 2 (BOOTREPLY)`);
  }
  const hlen = buffer.readUInt8(2);
  if (hlen > fieldLengths.chaddr) throw malformed(`hlen at offset 2: got ${hlen}, want at most 16`);
  const cookie = buffer.readUInt32BE(offsets.cookie);
  if (cookie !== magicCookie) {
    throw malformed(`magic cookie at offset 236: got 0x${hex32(cookie)}, want 0x${hex32(magicCookie)}`);
  }

  const options: PositionedOption[] = [];
  const end = parseOptions(buffer, offsets.options, buffer.length, "options field", options);
  if (end === undefined) {
    throw malformed(
      `options field runs to the end of the packet (offset ${buffer.length}) without an end option (255)`,
    );
  }

  let overloadedFile = false;
  let overloadedSname = false;
  const overload = options.find((option) => option.code === OptionCode.Overload);
  if (overload !== undefined) {
    const value = overload.data.length === 1 ? overload.data[0] : undefined;
    if (value !== 1 && value !== 2 && value !== 3) {
      throw malformed(
        `option 52 (overload) at offset ${overload.offset}: got 0x${overload.data.toString("hex")}, want 1, 2 or 3`,
      );
    }
    overloadedFile = (value & 1) !== 0;
    overloadedSname = (value & 2) !== 0;
    // RFC 2131 4.1: the options field first, then `file`, then `sname`.
    if (overloadedFile) parseOptions(buffer, offsets.file, offsets.cookie, "file field", options);
    if (overloadedSname) parseOptions(buffer, offsets.sname, offsets.file, "sname field", options);
  }
  const kept = options.filter((option) => option.code !== OptionCode.Overload);
  checkOptionLengths(kept);

  return {
    op,
    htype: buffer.readUInt8(1),
    hlen,
    hops: buffer.readUInt8(3),
    xid: buffer.readUInt32BE(4),
    secs: buffer.readUInt16BE(8),
    flags: buffer.readUInt16BE(10),
    ciaddr: readIpv4(buffer, 12),
    yiaddr: readIpv4(buffer, 16),
    siaddr: readIpv4(buffer, 20),
    giaddr: readIpv4(buffer, 24),
    chaddr: formatHardwareAddress(buffer.subarray(offsets.chaddr, offsets.chaddr + hlen)),
    sname: overloadedSname ? "" : readCString(buffer, offsets.sname, fieldLengths.sname),
    file: overloadedFile ? "" : readCString(buffer, offsets.file, fieldLengths.file),
    options: kept.map(({ code, data }) => ({ code, data })),
    padding: Buffer.from(buffer.subarray(end)),
  };
}

interface PositionedOption extends DhcpOption {
  readonly offset: number;
}

/**
 * Reads options from buffer[start, limit) into `into`; returns the offset just
 * past the end option, or undefined when the region has none.
 */
function parseOptions(
  buffer: Buffer,
  start: number,
  limit: number,
  region: string,
  into: PositionedOption[],
): number | undefined {
  let offset = start;
  while (offset < limit) {
    const code = buffer.readUInt8(offset);
    if (code === OptionCode.End) return offset + 1;
    if (code === OptionCode.Pad) {
      offset += 1;
      continue;
    }
    if (offset + 1 >= limit) {
      throw malformed(
        `option ${code} at offset ${offset}: no length byte before the end of the ${region} (offset ${limit})`,
      );
    }
    const length = buffer.readUInt8(offset + 1);
    const dataStart = offset + 2;
    if (dataStart + length > limit) {
      throw malformed(
        `option ${code} at offset ${offset}: length ${length} overflows the ${region}, which ends at offset ${limit} (${limit - dataStart} bytes left)`,
      );
    }
    if (code === OptionCode.Overload && region !== "options field") {
      throw malformed(
        `option 52 (overload) at offset ${offset}: only allowed in the options field, found in the ${region}`,
      );
    }
    into.push({ code, data: Buffer.from(buffer.subarray(dataStart, dataStart + length)), offset });
    offset = dataStart + length;
  }
  return undefined;
}

/** Options rtr7 acts on must have their defined length (concatenated over repeats). */
function checkOptionLengths(options: readonly PositionedOption[]): void {
  const seen = new Set<number>();
  for (const { code, offset } of options) {
    if (seen.has(code)) continue;
    seen.add(code);
    const length = optionData({ options }, code)?.length ?? 0;
    const problem = optionLengthProblem(code, length);
    if (problem !== undefined) throw malformed(`${problem} (first at offset ${offset})`);
  }
}

export function encode(packet: DhcpPacket): Buffer {
  const header = Buffer.alloc(offsets.options);
  writeField(() => {
    header.writeUInt8(packet.op, 0);
    header.writeUInt8(packet.htype, 1);
    header.writeUInt8(packet.hlen, 2);
    header.writeUInt8(packet.hops, 3);
    header.writeUInt32BE(packet.xid, 4);
    header.writeUInt16BE(packet.secs, 8);
    header.writeUInt16BE(packet.flags, 10);
    ipv4Bytes(packet.ciaddr, "ciaddr").copy(header, 12);
    ipv4Bytes(packet.yiaddr, "yiaddr").copy(header, 16);
    ipv4Bytes(packet.siaddr, "siaddr").copy(header, 20);
    ipv4Bytes(packet.giaddr, "giaddr").copy(header, 24);
  });
  const chaddr = parseHardwareAddress(packet.chaddr);
  if (packet.hlen > fieldLengths.chaddr || chaddr.length > fieldLengths.chaddr) {
    throw invalid(`chaddr ${packet.chaddr} (hlen ${packet.hlen}): want at most 16 bytes`);
  }
  chaddr.copy(header, offsets.chaddr);
  writeCString(header, offsets.sname, fieldLengths.sname, packet.sname, "sname");
  writeCString(header, offsets.file, fieldLengths.file, packet.file, "file");
  header.writeUInt32BE(magicCookie, offsets.cookie);

  const parts: Buffer[] = [header];
  for (const { code, data } of packet.options) {
    if (!Number.isInteger(code) || code <= OptionCode.Pad || code >= OptionCode.End) {
      throw invalid(`option code ${code}: want 1..254 (0 and 255 are pad and end)`);
    }
    // RFC 3396: a value longer than 255 bytes goes out as several instances.
    for (let start = 0; start === 0 || start < data.length; start += 255) {
      const chunk = data.subarray(start, start + 255);
      parts.push(Buffer.from([code, chunk.length]), chunk);
    }
  }
  parts.push(Buffer.from([OptionCode.End]));
  const length = parts.reduce((sum, part) => sum + part.length, 0);
  parts.push(packet.padding ?? Buffer.alloc(Math.max(0, minimumPacketLength - length)));
  return Buffer.concat(parts);
}

function invalid(message: string): Rtr7Error {
  return new Rtr7Error("RTR7_ERR_DHCP_PACKET", `encode DHCP packet: ${message}`);
}

function writeField(write: () => void): void {
  try {
    write();
  } catch (error) {
    throw new Rtr7Error("RTR7_ERR_DHCP_PACKET", `encode DHCP packet: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

function readCString(buffer: Buffer, offset: number, length: number): string {
  const field = buffer.subarray(offset, offset + length);
  const nul = field.indexOf(0);
  return field.subarray(0, nul === -1 ? length : nul).toString("latin1");
}

function writeCString(buffer: Buffer, offset: number, length: number, text: string, what: string): void {
  const bytes = Buffer.from(text, "latin1");
  if (bytes.length > length)
    throw invalid(`${what} ${JSON.stringify(text)}: ${bytes.length} bytes, want at most ${length}`);
  bytes.copy(buffer, offset);
}

export function formatHardwareAddress(bytes: Buffer): string {
  return [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join(":");
}

/** "52:54:00:12:34:56" (or with dashes, any case) to bytes; "" is no address. */
export function parseHardwareAddress(text: string): Buffer {
  if (text === "") return Buffer.alloc(0);
  if (!/^[0-9a-f]{2}([:-][0-9a-f]{2})*$/i.test(text)) {
    throw invalid(`hardware address ${JSON.stringify(text)}: want hex bytes separated by colons`);
  }
  return Buffer.from(text.replace(/[:-]/g, ""), "hex");
}

function hex32(value: number): string {
  return value.toString(16).padStart(8, "0");
}
