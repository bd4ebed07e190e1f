// Whom the recovery DHCP server answers, and with what: a pure function from
// (configuration, state, request, clock) to (reply or none, new state). No
// sockets and no logging here; the server sends the reply and logs `summary`.
//
// The rules: until a MAC is locked, only PXE clients (option 60 starts with
// "PXEClient") get answers, and only if their architecture (option 93, else
// the Arch field of option 60) has a boot file. The first MAC that gets an
// ACK is locked (or the one given up front with --mac); from then on only
// that MAC is served, whatever its vendor class, because the recovery
// initramfs's own DHCP client is not a PXE client. Other MACs get nothing,
// except a NAK when they REQUEST naming us, so they go and find their own
// server. REQUESTs naming another server are not ours to answer.
import { anyAddress, limitedBroadcast } from "./ipv4.js";
import { BootOp, broadcastFlag, type DhcpPacket } from "./packet.js";
import {
  MessageType,
  OptionCode,
  clientArchitectures,
  clientIdentifier,
  messageType,
  messageTypeName,
  option,
  optionData,
  requestedAddress,
  serverIdentifier,
  userClass,
  vendorClass,
  type DhcpOption,
} from "./options.js";

export interface PxePolicyConfig {
  /** This server's address on the unit's network: siaddr and option 54. */
  readonly serverAddress: string;
  /** The netmask of that interface (option 1). */
  readonly netmask: string;
  /** The one address handed out: the network with the recover octet. */
  readonly offerAddress: string;
  /** The boot file for a client architecture (option 93), or undefined when it cannot be booted. */
  bootFileFor(arch: number): string | undefined;
  /** Lease time in seconds; 7200 (2 h) by default. */
  readonly leaseSeconds?: number;
  /** Where replies through a relay go (giaddr:serverPort); 67 by default. */
  readonly serverPort?: number;
  /** Where replies to clients go; 68 by default. */
  readonly clientPort?: number;
}

export interface PxePolicyState {
  /** The only MAC served from now on, lowercase "aa:bb:cc:dd:ee:ff". */
  readonly lockedMac?: string;
  /** When the lock was taken (the injected clock's milliseconds); absent for --mac. */
  readonly lockedAt?: number;
}

export interface Peer {
  readonly address: string;
  readonly port: number;
}

export interface PolicyRequest {
  readonly packet: DhcpPacket;
  /** The sender as the socket saw it. */
  readonly from: Peer;
  /** "dhcp" for port 67, "boot-server" for the PXE boot server port 4011. */
  readonly via: "dhcp" | "boot-server";
}

export type Outcome = "offer" | "ack" | "nak" | "ignore" | "release" | "decline";

export interface Decision {
  readonly state: PxePolicyState;
  readonly outcome: Outcome;
  readonly reply?: { readonly packet: DhcpPacket; readonly to: Peer };
  /** The client's MAC as it appears in logs. */
  readonly mac: string;
  /** What happened, for the log: "DISCOVER → OFFER 10.99.0.42 (pxelinux.0)". */
  readonly summary: string;
  /** True for routine non-answers (other LAN clients, other servers' REQUESTs): log them at debug. */
  readonly quiet: boolean;
  /** True when this decision locked the server to `mac`. */
  readonly lockedNow: boolean;
}

export const defaultLeaseSeconds = 7200;

export function initialPolicyState(lockedMac?: string): PxePolicyState {
  return lockedMac === undefined ? {} : { lockedMac: lockedMac.toLowerCase().replace(/-/g, ":") };
}

/** Whether option 60 says the client is a PXE ROM (iPXE, Intel, EFI PXE). */
export function isPxeClient(packet: DhcpPacket): boolean {
  return vendorClass(packet)?.startsWith("PXEClient") ?? false;
}

/** The client's architecture: option 93's first entry, else option 60's "PXEClient:Arch:NNNNN". */
export function clientArchitecture(packet: DhcpPacket): number | undefined {
  const fromOption93 = clientArchitectures(packet)?.[0];
  if (fromOption93 !== undefined) return fromOption93;
  const match = /^PXEClient:Arch:(\d{5})/.exec(vendorClass(packet) ?? "");
  return match ? Number(match[1]) : undefined;
}

export function decide(
  config: PxePolicyConfig,
  state: PxePolicyState,
  request: PolicyRequest,
  now: number,
): Decision {
  const { packet } = request;
  const mac = packet.chaddr;
  const type = messageType(packet);
  const name = messageTypeName(type);
  const ignore = (why: string, quiet = false): Decision => ({
    state,
    outcome: "ignore",
    mac,
    summary: `${name} ignored: ${why}`,
    quiet,
    lockedNow: false,
  });

  if (packet.op !== BootOp.Request) return ignore("not a BOOTREQUEST", true);
  if (type === undefined) return ignore("plain BOOTP (no option 53)", true);
  if (packet.htype !== 1 || packet.hlen !== 6) {
    return ignore(`hardware type ${packet.htype}/${packet.hlen} is not Ethernet`);
  }

  const chosenServer = serverIdentifier(packet);
  if (chosenServer !== undefined && chosenServer !== config.serverAddress && request.via === "dhcp") {
    return ignore(`it names server ${chosenServer}`, true);
  }

  const pxe = isPxeClient(packet);
  const lockedToOther = state.lockedMac !== undefined && state.lockedMac !== mac;
  if (lockedToOther) {
    if (type === MessageType.Request && chosenServer === config.serverAddress && request.via === "dhcp") {
      return nak(config, state, packet, `locked to ${state.lockedMac}`);
    }
    return ignore(`locked to ${state.lockedMac}`, !pxe);
  }
  if (state.lockedMac === undefined && !pxe) {
    return ignore(`not a PXE client (vendor class ${JSON.stringify(vendorClass(packet) ?? "")})`, true);
  }

  const arch = clientArchitecture(packet);
  const bootFile = arch === undefined ? undefined : config.bootFileFor(arch);
  if (pxe && bootFile === undefined) {
    return ignore(
      arch === undefined ? "PXE client without an architecture" : `unknown client architecture ${arch}`,
    );
  }
  const answer: Answer = { config, state, packet, mac, bootFile, name, ipxe: userClass(packet) === "iPXE" };

  if (request.via === "boot-server") {
    if (type !== MessageType.Request && type !== MessageType.Inform) {
      return ignore("not a boot server request");
    }
    if (bootFile === undefined) return ignore("no boot file for this client");
    return bootServerAck(answer, request.from);
  }

  switch (type) {
    case MessageType.Discover:
      return reply(answer, MessageType.Offer, "offer", now);
    case MessageType.Request: {
      const wanted = requestedAddress(packet) ?? (packet.ciaddr === anyAddress ? undefined : packet.ciaddr);
      if (wanted === config.offerAddress) return reply(answer, MessageType.Ack, "ack", now);
      if (wanted === undefined) return ignore("it asks for no address");
      return nak(config, state, packet, `it asks for ${wanted}, we hand out ${config.offerAddress}`);
    }
    case MessageType.Inform:
      if (state.lockedMac !== mac) return ignore("INFORM from a client that is not locked");
      return reply(answer, MessageType.Ack, "ack", now);
    case MessageType.Release:
    case MessageType.Decline:
      return {
        state,
        outcome: type === MessageType.Release ? "release" : "decline",
        mac,
        summary:
          type === MessageType.Release
            ? `RELEASE of ${packet.ciaddr} (the address stays reserved for this unit)`
            : `DECLINE of ${requestedAddress(packet) ?? "?"}: another host answers ARP for it`,
        quiet: false,
        lockedNow: false,
      };
    default:
      return ignore("not a client message");
  }
}

interface Answer {
  readonly config: PxePolicyConfig;
  readonly state: PxePolicyState;
  readonly packet: DhcpPacket;
  readonly mac: string;
  readonly bootFile: string | undefined;
  readonly name: string;
  readonly ipxe: boolean;
}

/** OFFER or ACK (also the address-less ACK to an INFORM). */
function reply(answer: Answer, type: number, outcome: "offer" | "ack", now: number): Decision {
  const { config, packet, state, mac, bootFile } = answer;
  const inform = messageType(packet) === MessageType.Inform;
  const yiaddr = inform ? anyAddress : config.offerAddress;
  const options: DhcpOption[] = [
    option.byte(OptionCode.MessageType, type),
    option.ipv4(OptionCode.ServerIdentifier, config.serverAddress),
  ];
  // RFC 2131 table 3: no lease time in the reply to an INFORM.
  if (!inform) options.push(option.uint32(OptionCode.LeaseTime, config.leaseSeconds ?? defaultLeaseSeconds));
  options.push(option.ipv4(OptionCode.SubnetMask, config.netmask));
  if (bootFile !== undefined) {
    options.push(option.text(OptionCode.TftpServerName, config.serverAddress));
    options.push(option.text(OptionCode.BootFileName, bootFile));
  }
  options.push(...echoedClientIdentifier(packet));

  const locking = outcome === "ack" && !inform && state.lockedMac === undefined;
  const newState: PxePolicyState = locking ? { lockedMac: mac, lockedAt: now } : state;
  const ciaddr = type === MessageType.Ack ? packet.ciaddr : anyAddress;
  const built = replyPacket(packet, {
    ciaddr,
    yiaddr,
    siaddr: config.serverAddress,
    file: bootFile ?? "",
    options,
  });
  const what = inform ? "ACK (no address)" : `${messageTypeName(type)} ${yiaddr}`;
  return {
    state: newState,
    outcome,
    reply: { packet: built, to: destination(config, packet, false) },
    mac,
    summary: `${answer.name} → ${what}${bootFile ? ` (${bootFile}${answer.ipxe ? ", iPXE" : ""})` : ""}`,
    quiet: false,
    lockedNow: locking,
  };
}

function nak(config: PxePolicyConfig, state: PxePolicyState, packet: DhcpPacket, why: string): Decision {
  const options = [
    option.byte(OptionCode.MessageType, MessageType.Nak),
    option.ipv4(OptionCode.ServerIdentifier, config.serverAddress),
    option.text(OptionCode.Message, why),
    ...echoedClientIdentifier(packet),
  ];
  const relayed = packet.giaddr !== anyAddress;
  const built = replyPacket(packet, {
    ciaddr: anyAddress,
    yiaddr: anyAddress,
    siaddr: anyAddress,
    file: "",
    options,
    // RFC 2131 4.3.2: a NAK through a relay asks the relay to broadcast it.
    flags: relayed ? packet.flags | broadcastFlag : packet.flags,
  });
  return {
    state,
    outcome: "nak",
    reply: { packet: built, to: destination(config, packet, true) },
    mac: packet.chaddr,
    summary: `REQUEST → NAK: ${why}`,
    quiet: false,
    lockedNow: false,
  };
}

/** The PXE boot server (port 4011) answers a unicast REQUEST with the boot file only. */
function bootServerAck(answer: Answer, from: Peer): Decision {
  const { config, packet, state, mac, bootFile = "" } = answer;
  const options: DhcpOption[] = [
    option.byte(OptionCode.MessageType, MessageType.Ack),
    option.ipv4(OptionCode.ServerIdentifier, config.serverAddress),
    option.text(OptionCode.VendorClass, "PXEClient"),
    option.text(OptionCode.TftpServerName, config.serverAddress),
    option.text(OptionCode.BootFileName, bootFile),
  ];
  const machineId = optionData(packet, OptionCode.ClientMachineId);
  if (machineId !== undefined) options.push(option.raw(OptionCode.ClientMachineId, machineId));
  const built = replyPacket(packet, {
    ciaddr: packet.ciaddr,
    yiaddr: anyAddress,
    siaddr: config.serverAddress,
    file: bootFile,
    options,
  });
  return {
    state,
    outcome: "ack",
    reply: { packet: built, to: from },
    mac,
    summary: `boot server ${answer.name} → ACK (${bootFile})`,
    quiet: false,
    lockedNow: false,
  };
}

/** RFC 6842: a reply carries the client identifier the client sent. */
function echoedClientIdentifier(packet: DhcpPacket): DhcpOption[] {
  const id = clientIdentifier(packet);
  return id === undefined ? [] : [option.raw(OptionCode.ClientIdentifier, id)];
}

function replyPacket(
  request: DhcpPacket,
  fields: Pick<DhcpPacket, "ciaddr" | "yiaddr" | "siaddr" | "file" | "options"> & { flags?: number },
): DhcpPacket {
  return {
    op: BootOp.Reply,
    htype: request.htype,
    hlen: request.hlen,
    hops: 0,
    xid: request.xid,
    secs: 0,
    flags: fields.flags ?? request.flags,
    ciaddr: fields.ciaddr,
    yiaddr: fields.yiaddr,
    siaddr: fields.siaddr,
    giaddr: request.giaddr,
    chaddr: request.chaddr,
    sname: "",
    file: fields.file,
    options: fields.options,
  };
}

/**
 * RFC 2131 4.1: through a relay (giaddr set) to the relay's server port;
 * a NAK otherwise always broadcast; to a configured client (ciaddr set)
 * unicast; else broadcast. Unicasting an OFFER to yiaddr when the broadcast
 * flag is clear would need an ARP entry we cannot add from a UDP socket, and
 * the RFC allows broadcasting when unicast is not possible.
 */
function destination(config: PxePolicyConfig, packet: DhcpPacket, isNak: boolean): Peer {
  const serverPort = config.serverPort ?? 67;
  const clientPort = config.clientPort ?? 68;
  if (packet.giaddr !== anyAddress) return { address: packet.giaddr, port: serverPort };
  if (!isNak && packet.ciaddr !== anyAddress) return { address: packet.ciaddr, port: clientPort };
  return { address: limitedBroadcast, port: clientPort };
}
