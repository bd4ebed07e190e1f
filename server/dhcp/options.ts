// DHCP options (RFC 2132 and the PXE ones from RFC 4578): the codes rtr7
// reads or writes, the length each must have, typed accessors over a decoded
// packet's option list and builders for the values of a reply. An option may
// appear several times (RFC 3396 splits long values); accessors read the
// concatenation of all its instances, in order.
import { ipv4Bytes, readIpv4 } from "./ipv4.js";

export interface DhcpOption {
  readonly code: number;
  readonly data: Buffer;
}

/** Anything with an option list: a decoded or a built packet. */
export interface HasOptions {
  readonly options: readonly DhcpOption[];
}

export const OptionCode = {
  Pad: 0,
  SubnetMask: 1,
  Router: 3,
  RequestedAddress: 50,
  LeaseTime: 51,
  Overload: 52,
  MessageType: 53,
  ServerIdentifier: 54,
  ParameterRequestList: 55,
  Message: 56,
  MaxMessageSize: 57,
  VendorClass: 60,
  ClientIdentifier: 61,
  TftpServerName: 66,
  BootFileName: 67,
  UserClass: 77,
  ClientArchitecture: 93,
  NetworkInterfaceId: 94,
  ClientMachineId: 97,
  End: 255,
} as const;

export const MessageType = {
  Discover: 1,
  Offer: 2,
  Request: 3,
  Decline: 4,
  Ack: 5,
  Nak: 6,
  Release: 7,
  Inform: 8,
} as const;

const messageTypeNames = ["", "DISCOVER", "OFFER", "REQUEST", "DECLINE", "ACK", "NAK", "RELEASE", "INFORM"];

/** "DISCOVER", "ACK", ... or "type N" for codes this module does not know. */
export function messageTypeName(type: number | undefined): string {
  if (type === undefined) return "BOOTP";
  return messageTypeNames[type] || `type ${type}`;
}

interface OptionSpec {
  readonly name: string;
  /** Why a value of this length is wrong, or undefined when it is fine. */
  readonly checkLength?: (length: number) => string | undefined;
}

const exactly = (want: number) => (length: number) => (length === want ? undefined : `want ${want}`);
const multipleOf = (unit: number) => (length: number) =>
  length >= unit && length % unit === 0 ? undefined : `want a non-zero multiple of ${unit}`;

// Options rtr7 acts on get their length checked when a packet is decoded; the
// others are only named (for logs and the golden files) and passed through.
const optionSpecs: ReadonlyMap<number, OptionSpec> = new Map<number, OptionSpec>([
  [1, { name: "subnet mask", checkLength: exactly(4) }],
  [3, { name: "router", checkLength: multipleOf(4) }],
  [6, { name: "domain name servers" }],
  [12, { name: "host name" }],
  [28, { name: "broadcast address" }],
  [50, { name: "requested address", checkLength: exactly(4) }],
  [51, { name: "lease time", checkLength: exactly(4) }],
  [52, { name: "overload", checkLength: exactly(1) }],
  [53, { name: "message type", checkLength: exactly(1) }],
  [54, { name: "server identifier", checkLength: exactly(4) }],
  [55, { name: "parameter request list" }],
  [56, { name: "message" }],
  [57, { name: "maximum message size" }],
  [58, { name: "renewal time" }],
  [59, { name: "rebinding time" }],
  [60, { name: "vendor class" }],
  [61, { name: "client identifier" }],
  [66, { name: "TFTP server name" }],
  [67, { name: "boot file name" }],
  [77, { name: "user class" }],
  [93, { name: "client architecture", checkLength: multipleOf(2) }],
  [94, { name: "client network interface id", checkLength: exactly(3) }],
  [97, { name: "client machine id" }],
  [175, { name: "iPXE encapsulated options" }],
]);

export function optionName(code: number): string | undefined {
  return optionSpecs.get(code)?.name;
}

/**
 * Why an option's (concatenated) value has the wrong length for its code, e.g.
 * "option 53 (message type): length 2, want 1"; undefined when it is fine or
 * the code has no fixed shape.
 */
export function optionLengthProblem(code: number, length: number): string | undefined {
  const spec = optionSpecs.get(code);
  const problem = spec?.checkLength?.(length);
  return problem === undefined ? undefined : `option ${code} (${spec?.name}): length ${length}, ${problem}`;
}

/** The concatenated value of every instance of `code`, or undefined when absent. */
export function optionData(packet: HasOptions, code: number): Buffer | undefined {
  const parts = packet.options.filter((option) => option.code === code).map((option) => option.data);
  if (parts.length === 0) return undefined;
  return parts.length === 1 ? parts[0] : Buffer.concat(parts);
}

function checked(packet: HasOptions, code: number): Buffer | undefined {
  const data = optionData(packet, code);
  if (data === undefined) return undefined;
  const problem = optionLengthProblem(code, data.length);
  if (problem !== undefined) throw new RangeError(problem);
  return data;
}

const ipv4Option = (code: number) => (packet: HasOptions) => {
  const data = checked(packet, code);
  return data && readIpv4(data, 0);
};
const uint32Option = (code: number) => (packet: HasOptions) => checked(packet, code)?.readUInt32BE(0);
const textOption = (code: number) => (packet: HasOptions) => {
  const data = checked(packet, code);
  return data && optionText(data);
};

/** An option's value as text, without the trailing NULs some servers add (dnsmasq ends option 67 with one). */
export function optionText(data: Buffer): string {
  return data.toString("latin1").replace(/\0+$/, "");
}

/** Option 53 (1 DISCOVER ... 8 INFORM). */
export const messageType = (packet: HasOptions): number | undefined => checked(packet, 53)?.[0];
/** Option 50: the address a client asks for. */
export const requestedAddress = ipv4Option(50);
/** Option 54: the server a client chose, or the server that replied. */
export const serverIdentifier = ipv4Option(54);
/** Option 1. */
export const subnetMask = ipv4Option(1);
/** Option 51, in seconds. */
export const leaseTime = uint32Option(51);
/** Option 60, e.g. "PXEClient:Arch:00000:UNDI:002001". */
export const vendorClass = textOption(60);
/** Option 77 as text; iPXE sends the bare string "iPXE" rather than RFC 3004's length-prefixed list. */
export const userClass = textOption(77);
/** Option 66. */
export const tftpServerName = textOption(66);
/** Option 67. */
export const bootFileName = textOption(67);

/** Option 3: one or more routers. */
export function routers(packet: HasOptions): string[] | undefined {
  const data = checked(packet, 3);
  if (data === undefined) return undefined;
  return Array.from({ length: data.length / 4 }, (_, index) => readIpv4(data, index * 4));
}

/** Option 55: the option codes a client asks for, in its order. */
export function parameterRequestList(packet: HasOptions): number[] | undefined {
  const data = checked(packet, 55);
  return data && [...data];
}

/** Option 61, raw (usually type 1 then the MAC). */
export const clientIdentifier = (packet: HasOptions): Buffer | undefined => checked(packet, 61);

/** Option 93: the client's architecture types (0 BIOS, 7 and 9 x86-64 UEFI, ...). */
export function clientArchitectures(packet: HasOptions): number[] | undefined {
  const data = checked(packet, 93);
  if (data === undefined) return undefined;
  return Array.from({ length: data.length / 2 }, (_, index) => data.readUInt16BE(index * 2));
}

/** Option 94: UNDI interface type and version (1, 2, 1 for UNDI 2.1). */
export function networkInterfaceId(
  packet: HasOptions,
): { type: number; major: number; minor: number } | undefined {
  const data = checked(packet, 94);
  return data && { type: data[0] ?? 0, major: data[1] ?? 0, minor: data[2] ?? 0 };
}

/** Option 97: type 0 and a 16-byte UUID/GUID; undefined when absent or not 17 bytes long. */
export function clientMachineId(packet: HasOptions): { type: number; uuid: string } | undefined {
  const data = optionData(packet, 97);
  if (data?.length !== 17) return undefined;
  const hex = data.subarray(1).toString("hex");
  const uuid = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  return { type: data[0] ?? 0, uuid };
}

/** Builders for reply options. */
export const option = {
  byte: (code: number, value: number): DhcpOption => ({ code, data: Buffer.from([value]) }),
  uint32: (code: number, value: number): DhcpOption => {
    const data = Buffer.alloc(4);
    data.writeUInt32BE(value);
    return { code, data };
  },
  ipv4: (code: number, address: string): DhcpOption => ({ code, data: ipv4Bytes(address, `option ${code}`) }),
  text: (code: number, text: string): DhcpOption => ({ code, data: Buffer.from(text, "latin1") }),
  raw: (code: number, data: Buffer): DhcpOption => ({ code, data }),
};
