// The recovery server's DHCP responder: UDP sockets around the PXE policy.
// It decodes each request, asks pxe-policy what to do, sends the reply and
// logs the outcome; a malformed packet or a failed send is logged with its
// peer and skipped, and only close() stops it.
//
// Sockets (all SO_REUSEADDR, so they share the port with each other):
// - 0.0.0.0:port receives the broadcasts of clients that have no address yet.
// - serverAddress:port receives unicast (renewals) and sends every reply.
//   Linux routes a limited broadcast (255.255.255.255) out of the interface
//   that owns the socket's bound source address, so binding the sender to
//   serverAddress keeps replies on the recovery interface without
//   SO_BINDTODEVICE, which node:dgram cannot set.
// - serverAddress:proxyPort (4011) is the PXE boot server: a client there
//   gets a unicast ACK with its boot file at the address:port it came from.
// The wildcard socket also hears broadcasts that arrive on other interfaces;
// their replies still leave only on the recovery interface, so the worst
// case is an OFFER nobody hears (node:dgram cannot tell the arrival interface).
import { createSocket, type RemoteInfo, type Socket } from "node:dgram";
import { EventEmitter } from "node:events";
import { isIPv4 } from "node:net";
import { Rtr7Error } from "../../lib/errors.js";
import type { Logger } from "../../lib/log.js";
import { anyAddress, ipv4ToNumber, isNetmask } from "./ipv4.js";
import { decode, encode, type DhcpPacket } from "./packet.js";
import {
  decide,
  initialPolicyState,
  type Decision,
  type PxePolicyConfig,
  type PxePolicyState,
} from "./pxe-policy.js";

export interface DhcpServerOptions {
  /** This machine's address on the unit's network; replies leave from it. */
  serverAddress: string;
  /** The netmask of that interface, sent as option 1. */
  netmask: string;
  /** The one address handed out (the network with the recover octet). */
  offerAddress: string;
  /** Serve only this MAC from the start (--mac); otherwise the first MAC that gets an ACK. */
  lockedMac?: string;
  /** The boot file for a client architecture (option 93), undefined when it cannot be booted. */
  bootFileFor(arch: number): string | undefined;
  /** DHCP server port; 67. */
  port?: number;
  /** DHCP client port replies go to; 68. */
  clientPort?: number;
  /** PXE boot server port; 4011. */
  proxyPort?: number;
  log: Logger;
  /** Clock in milliseconds; Date.now by default. */
  now?: () => number;
}

/** A lease handed out: `offer` when OFFERed, `ack` when ACKed (after the reply was sent). */
export interface DhcpLeaseEvent {
  mac: string;
  address: string;
}

export interface DhcpServerEvents {
  offer: [DhcpLeaseEvent];
  ack: [DhcpLeaseEvent];
  /**
   * An ACK with an address is about to be sent: emitted before the reply
   * leaves, so whoever serves by address knows the lease before the client
   * can use it (the recovery's TFTP and HTTP, server/pxe/unit-access.ts).
   */
  bind: [DhcpLeaseEvent];
}

export interface DhcpServer extends EventEmitter<DhcpServerEvents> {
  /** Closes every socket; idempotent. */
  close(): Promise<void>;
  /** The only MAC served now, or undefined until the first ACK (without --mac). */
  lockedMac(): string | undefined;
}

type Via = "dhcp" | "boot-server";

export async function startDhcpServer(options: DhcpServerOptions): Promise<DhcpServer> {
  checkOptions(options);
  const server = new RecoveryDhcpServer(options);
  await server.listen();
  return server;
}

class RecoveryDhcpServer extends EventEmitter<DhcpServerEvents> implements DhcpServer {
  private readonly log: Logger;
  private readonly config: PxePolicyConfig;
  private readonly now: () => number;
  private state: PxePolicyState;
  private readonly sockets: Socket[] = [];
  private replySocket: Socket | undefined;
  private closing: Promise<void> | undefined;

  constructor(private readonly options: DhcpServerOptions) {
    super();
    this.log = options.log.child({ subsystem: "dhcp" });
    this.now = options.now ?? Date.now;
    this.state = initialPolicyState(options.lockedMac);
    this.config = {
      serverAddress: options.serverAddress,
      netmask: options.netmask,
      offerAddress: options.offerAddress,
      bootFileFor: (arch) => options.bootFileFor(arch),
      serverPort: options.port ?? 67,
      clientPort: options.clientPort ?? 68,
    };
  }

  async listen(): Promise<void> {
    const port = this.options.port ?? 67;
    const proxyPort = this.options.proxyPort ?? 4011;
    try {
      await this.open(anyAddress, port, "dhcp");
      this.replySocket = await this.open(this.options.serverAddress, port, "dhcp");
      this.replySocket.setBroadcast(true);
      await this.open(this.options.serverAddress, proxyPort, "boot-server");
    } catch (error) {
      await this.close();
      throw error;
    }
    const only = this.state.lockedMac ? ` (only ${this.state.lockedMac})` : "";
    this.log.info(
      { event: "listening", port, proxyPort },
      `answering PXE clients on ${this.options.serverAddress} with ${this.options.offerAddress}${only}`,
    );
  }

  lockedMac(): string | undefined {
    return this.state.lockedMac;
  }

  close(): Promise<void> {
    this.closing ??= Promise.all(
      this.sockets.map((socket) => new Promise<void>((resolve) => socket.close(() => resolve()))),
    ).then(() => undefined);
    return this.closing;
  }

  private async open(address: string, port: number, via: Via): Promise<Socket> {
    const socket = createSocket({ type: "udp4", reuseAddr: true });
    await new Promise<void>((resolve, reject) => {
      socket.once("error", (error) => {
        closeQuietly(socket);
        reject(
          new Rtr7Error("RTR7_ERR_LISTEN", `listen on udp ${address}:${port}: ${error.message}`, {
            cause: error,
          }),
        );
      });
      socket.bind({ address, port }, () => resolve());
    });
    socket.removeAllListeners("error");
    socket.on("error", (error) =>
      this.log.error({ err: error, event: "socket-error" }, `udp ${address}:${port} socket error`),
    );
    socket.on("message", (message: Buffer, remote: RemoteInfo) => this.receive(message, remote, via, socket));
    this.sockets.push(socket);
    return socket;
  }

  private receive(message: Buffer, remote: RemoteInfo, via: Via, socket: Socket): void {
    const from = `${remote.address}:${remote.port}`;
    let packet: DhcpPacket;
    try {
      packet = decode(message);
    } catch (error) {
      this.log.warn({ peer: from, event: "malformed", err: error }, "malformed DHCP packet skipped");
      return;
    }
    let decision: Decision;
    try {
      decision = decide(this.config, this.state, { packet, from: remote, via }, this.now());
    } catch (error) {
      this.log.error({ peer: packet.chaddr, event: "policy-failed", from, err: error }, "request skipped");
      return;
    }
    this.state = decision.state;
    const address = decision.reply?.packet.yiaddr;
    const fields = {
      peer: decision.mac,
      event: decision.outcome,
      address: address === anyAddress ? undefined : address,
      from,
    };
    if (decision.quiet) this.log.debug(fields, decision.summary);
    else this.log.info(fields, decision.summary);
    if (decision.lockedNow) {
      this.log.info(
        { peer: decision.mac, event: "locked" },
        `locked to ${decision.mac}: other clients get no answer now`,
      );
    }
    this.bind(decision);
    this.send(decision, via === "boot-server" ? socket : this.replySocket);
  }

  private bind(decision: Decision): void {
    const address = decision.reply?.packet.yiaddr;
    if (decision.outcome !== "ack" || address === undefined || address === anyAddress || this.closing) return;
    try {
      this.emit("bind", { mac: decision.mac, address });
    } catch (error) {
      this.log.error({ peer: decision.mac, event: "listener-failed", err: error }, "a bind listener threw");
    }
  }

  private send(decision: Decision, socket: Socket | undefined): void {
    const reply = decision.reply;
    if (reply === undefined || socket === undefined || this.closing) return;
    const to = `${reply.to.address}:${reply.to.port}`;
    const failed = (error: unknown) =>
      this.log.warn({ peer: decision.mac, event: "send-failed", to, err: error }, `reply to ${to} not sent`);
    try {
      socket.send(encode(reply.packet), reply.to.port, reply.to.address, (error) => {
        if (error) failed(error);
        else this.announce(decision);
      });
    } catch (error) {
      failed(error);
    }
  }

  private announce(decision: Decision): void {
    const address = decision.reply?.packet.yiaddr;
    if (address === undefined || address === anyAddress) return;
    if (decision.outcome !== "offer" && decision.outcome !== "ack") return;
    try {
      this.emit(decision.outcome, { mac: decision.mac, address });
    } catch (error) {
      this.log.error(
        { peer: decision.mac, event: "listener-failed", err: error },
        `an ${decision.outcome} listener threw`,
      );
    }
  }
}

function closeQuietly(socket: Socket): void {
  try {
    socket.close();
  } catch {
    // Never bound: nothing to close.
  }
}

function checkOptions(options: DhcpServerOptions): void {
  const usage = (message: string) => new Rtr7Error("RTR7_ERR_USAGE", `start DHCP server: ${message}`);
  for (const [name, value] of [
    ["serverAddress", options.serverAddress],
    ["offerAddress", options.offerAddress],
  ] as const) {
    if (!isIPv4(value)) throw usage(`${name} ${JSON.stringify(value)} is not an IPv4 address`);
  }
  if (!isNetmask(options.netmask)) throw usage(`netmask ${JSON.stringify(options.netmask)} is not a netmask`);
  const mask = ipv4ToNumber(options.netmask);
  if ((ipv4ToNumber(options.serverAddress) & mask) !== (ipv4ToNumber(options.offerAddress) & mask)) {
    throw usage(
      `offer address ${options.offerAddress} is outside ${options.serverAddress}/${options.netmask}`,
    );
  }
  if (options.offerAddress === options.serverAddress) {
    throw usage(`offer address ${options.offerAddress} is the server's own address`);
  }
  if (options.lockedMac !== undefined && !/^[0-9a-f]{2}([:-][0-9a-f]{2}){5}$/i.test(options.lockedMac)) {
    throw usage(`MAC ${JSON.stringify(options.lockedMac)}: want six hex bytes, e.g. 52:54:00:12:34:56`);
  }
}
