// A plain, JSON-ready description of a DHCP packet: every header field, every
// option in wire order with its name, raw hex and (for the options rtr7
// knows) its typed value. The golden fixture files are this description of
// the captured packets, and debug logs can print it.
import type { DhcpPacket } from "./packet.js";
import {
  clientArchitectures,
  clientMachineId,
  messageType,
  messageTypeName,
  networkInterfaceId,
  optionName,
  optionText,
  parameterRequestList,
  routers,
  type HasOptions,
} from "./options.js";
import { readIpv4 } from "./ipv4.js";

export interface OptionDescription {
  code: number;
  name?: string;
  hex: string;
  value?: unknown;
}

export type PacketDescription = Omit<DhcpPacket, "options" | "padding"> & {
  messageType: string;
  options: OptionDescription[];
  /** How many bytes follow the end option (hex when any of them is not zero). */
  padding: number | string;
};

const textOptions = new Set([12, 56, 60, 66, 67, 77]);
const ipv4Options = new Set([1, 28, 50, 54]);
const secondsOptions = new Set([51, 58, 59]);

export function describePacket(packet: DhcpPacket): PacketDescription {
  const { options, padding, ...fields } = packet;
  const paddingBytes = padding ?? Buffer.alloc(0);
  return {
    ...fields,
    messageType: messageTypeName(messageType(packet)),
    options: options.map(({ code, data }) => {
      const description: OptionDescription = { code, name: optionName(code), hex: data.toString("hex") };
      const value = optionValue(code, data);
      if (value !== undefined) description.value = value;
      if (description.name === undefined) delete description.name;
      return description;
    }),
    padding: paddingBytes.some((byte) => byte !== 0) ? paddingBytes.toString("hex") : paddingBytes.length,
  };
}

function optionValue(code: number, data: Buffer): unknown {
  const single: HasOptions = { options: [{ code, data }] };
  if (textOptions.has(code)) return optionText(data);
  if (ipv4Options.has(code) && data.length === 4) return readIpv4(data, 0);
  if (secondsOptions.has(code) && data.length === 4) return data.readUInt32BE(0);
  switch (code) {
    case 3:
      return routers(single);
    case 53:
      return messageTypeName(data[0]);
    case 55:
      return parameterRequestList(single)?.join(",");
    case 57:
      return data.length === 2 ? data.readUInt16BE(0) : undefined;
    case 93:
      return clientArchitectures(single)?.join(",");
    case 94:
      return networkInterfaceId(single);
    case 97:
      return clientMachineId(single);
  }
  return undefined;
}
