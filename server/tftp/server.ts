// The recovery server's TFTP side: serves the names in a FileMap (pxelinux,
// its config, the kernel and initramfs) read-only, with option negotiation
// (RFC 2347 blksize/2348, tsize and timeout/2349, windowsize/7440). The
// protocol is the npm `tftp` package, patched (patches/tftp+0.1.2.patch, see
// package.ts); this module decides what is served and logs it.
//
// - A name is looked up in the map exactly as the client sent it: anything
//   else (pxelinux's pxelinux.cfg/<uuid>, 01-<mac> and hex-IP probes, `..`,
//   absolute paths) gets error 1 "File not found". A write request gets error
//   2 "Access violation". Malformed packets are logged and skipped (answered
//   with an ERROR, as RFC 1350 asks), and the server keeps serving.
// - Whom the files are for is not decided here: the caller's `refuse` hook
//   (server/pxe/unit-access.ts in a recovery) names a reason to turn a peer
//   away, which then gets error 2 "Access violation" for any name, and the
//   reason goes to the log with the peer.
//
// Speed (npm run bench: test/bench/tftp.bench.ts, 32 MiB, curl). TFTP as
// curl, tftp-hpa and PXE firmware speak it is lock-step, so a transfer takes
// blocks x round trip. The unpatched package ran at about 0.9x of tftpd-hpa
// here (0.67x was seen on another machine of this kind), 0.8x while other work
// kept the cores busy. node --cpu-prof of a transfer: the server idle 85% of
// the time, about 12 µs of work per block, 9 µs of it in sendmsg(2); a round
// trip took about 75 µs, most of it waiting for the kernel to wake the server
// and curl up. tftpd-hpa waits the same way, so what put the package behind
// was its few µs of JavaScript per block (a zero-filled `new Buffer` with a
// deprecation check per DATA packet, a dns.lookup and nextTick per send on an
// unconnected socket); with busy cores wake-ups are cheap, a round trip is
// about 20 µs, and those µs weigh more. The fix:
// 1. The patch connects each transfer socket to its client (no lookup per
//    send; the kernel drops packets from other TIDs) and builds DATA packets
//    with allocUnsafe: about 1.0x idle, 0.8x with busy cores.
// 2. BusyPoll (busy-poll.ts): after each send the loop polls instead of
//    sleeping, so the server's wake-up leaves the round trip: about 1.9x of
//    tftpd-hpa on an idle machine. It measures itself and stops polling where
//    that does not pay (busy cores, slow clients); busyPollMicroseconds: 0
//    turns it off. The 0.8x left with busy cores is Node's own cost per
//    packet (libuv's receive, the call into JavaScript, dgram's send path).
import { Rtr7Error, describeError } from "../../lib/errors.js";
import type { Logger } from "../../lib/log.js";
import type { FileMap, ServedFile } from "../../lib/served-files.js";
import { BusyPoll } from "./busy-poll.js";
import { loadTftpPackage, type PackageRequest, type PackageResponse, type PackageServer } from "./package.js";

export interface TftpServerOptions {
  /** The address to listen on (this machine's address on the unit's network). */
  address: string;
  /** UDP port, 1-65535; 69. */
  port?: number;
  /** The only files served, by exact name. */
  files: FileMap;
  log: Logger;
  /** Largest blksize granted (RFC 2348); 1468, which fits an Ethernet frame unfragmented. */
  maxBlockSize?: number;
  /** Largest windowsize granted (RFC 7440); 16. */
  maxWindowSize?: number;
  /** Poll for the client's answer this long after each send, instead of sleeping; 0 = off. */
  busyPollMicroseconds?: number;
  /** Retransmission timeout unless the client asks for one (RFC 2349 timeout); 3000. */
  timeoutMs?: number;
  /** Retransmissions before a transfer is given up; 3. */
  retries?: number;
  /** Called after each transfer that the client received completely. */
  onTransfer?: (transfer: TftpTransfer) => void;
  /** Transfers at once, from all clients; 16. A PXE client fetches one file at a time. */
  maxTransfers?: number;
  /** Transfers at once from one address; 4. */
  maxTransfersPerPeer?: number;
  /** Why `peerAddress` may not read `name` (it gets "Access violation"), or undefined to serve it; default: serve all. */
  refuse?: (peerAddress: string, name: string) => string | undefined;
}

export interface TftpTransfer {
  /** The client, "ip:port". */
  peer: string;
  name: string;
  bytes: number;
  blockSize: number;
  windowSize: number;
  durationMs: number;
}

export interface TftpServer {
  /** Stops listening and ends the transfers under way (the clients get an ERROR). */
  close(): Promise<void>;
  /** Bytes of the files that clients received completely, so far. */
  bytesServed(): number;
}

export const tftpDefaults = {
  port: 69,
  maxBlockSize: 1468,
  maxWindowSize: 16,
  busyPollMicroseconds: 250,
  timeoutMs: 3000,
  retries: 3,
  maxTransfers: 16,
  maxTransfersPerPeer: 4,
} as const;

export async function startTftpServer(options: TftpServerOptions): Promise<TftpServer> {
  const settings = { ...tftpDefaults, ...withoutUndefined(options) };
  const where = formatPeer(options.address, settings.port);
  checkRange("port", settings.port, 1, 65_535);
  checkRange("maxBlockSize", settings.maxBlockSize, 512, 65_464);
  checkRange("maxWindowSize", settings.maxWindowSize, 1, 65_535);
  checkRange("maxTransfers", settings.maxTransfers, 1, 65_535);
  checkRange("maxTransfersPerPeer", settings.maxTransfersPerPeer, 1, settings.maxTransfers);

  const log = options.log.child({ subsystem: "tftp" });
  const tftp = loadTftpPackage();
  const busyPoll = new BusyPoll({ budgetMicroseconds: settings.busyPollMicroseconds });
  const transfers = new Map<PackageRequest, Promise<void>>();
  const perAddress = new Map<string, number>();
  let served = 0;

  /** Why a new transfer for `address` is refused, or undefined when it is within the caps. */
  const overCap = (address: string): string | undefined => {
    const fromAddress = perAddress.get(address) ?? 0;
    if (fromAddress >= settings.maxTransfersPerPeer)
      return `${fromAddress} transfers to ${address} are under way (at most ${settings.maxTransfersPerPeer})`;
    if (transfers.size >= settings.maxTransfers)
      return `${transfers.size} transfers are under way (at most ${settings.maxTransfers})`;
    return undefined;
  };

  const serve = (request: PackageRequest, response: PackageResponse): void => {
    const { blockSize, windowSize, remoteAddress, remotePort } = request.stats;
    const peer = formatPeer(remoteAddress, remotePort);
    const name = request.file;
    request.on("error", () => undefined);
    if (request.method !== "GET") {
      // The patched package refuses writes before they get here (denyPUT).
      request.abort(tftp.EACCESS);
      return;
    }
    const forbidden = options.refuse?.(remoteAddress, name);
    if (forbidden !== undefined) {
      log.warn(
        { peer, event: "tftp-refused", code: "RTR7_ERR_RECOVERY_PEER", file: name },
        `${printable(name)}: access violation, ${forbidden}`,
      );
      request.abort(tftp.EACCESS);
      return;
    }
    const file = options.files.get(name);
    if (!file) {
      log.info({ peer, event: "tftp-not-found", file: name }, `${printable(name)}: file not found`);
      request.abort(tftp.ENOENT);
      return;
    }
    const refusal = overCap(remoteAddress);
    if (refusal !== undefined) {
      log.warn({ peer, event: "tftp-busy", file: name }, `${printable(name)}: refused, ${refusal}`);
      request.abort("Server busy, try again later");
      return;
    }
    log.debug(
      { peer, event: "tftp-request", file: name, blksize: blockSize, windowsize: windowSize },
      `RRQ ${name}`,
    );
    perAddress.set(remoteAddress, (perAddress.get(remoteAddress) ?? 0) + 1);
    const started = performance.now();
    let failure: string | undefined;
    request.on("error", (error: Error) => (failure ??= error.message));
    request.on("abort", () => (failure ??= "aborted"));
    const source = send(file, response, (error) => {
      failure ??= `reading ${name}: ${describeError(error)}`;
      request.abort(tftp.EIO);
    });
    const ended = new Promise<void>((resolve) =>
      // "close" comes first, then "error" or "abort" if the transfer failed.
      request.once("close", () =>
        process.nextTick(() => {
          transfers.delete(request);
          const left = (perAddress.get(remoteAddress) ?? 1) - 1;
          if (left === 0) perAddress.delete(remoteAddress);
          else perAddress.set(remoteAddress, left);
          if (failure !== undefined) {
            source?.destroy();
            log.warn(
              { peer, event: "tftp-failed", file: name, reason: failure },
              `sending ${name} failed: ${failure}`,
            );
          } else {
            served += file.size;
            log.info(
              { peer, event: "tftp-sent", file: name, bytes: file.size, blksize: blockSize },
              `sent ${name} (${formatSize(file.size)}, blksize ${blockSize})`,
            );
            const durationMs = performance.now() - started;
            try {
              options.onTransfer?.({ peer, name, bytes: file.size, blockSize, windowSize, durationMs });
            } catch (error) {
              log.error({ peer, event: "tftp-callback-failed", err: error }, "onTransfer threw");
            }
          }
          resolve();
        }),
      ),
    );
    transfers.set(request, ended);
  };

  let server: PackageServer;
  try {
    server = tftp.createServer(
      {
        host: options.address,
        port: settings.port,
        denyPUT: true,
        blockSize: settings.maxBlockSize,
        windowSize: settings.maxWindowSize,
        timeout: settings.timeoutMs,
        retries: settings.retries,
        onSend: () => busyPoll.touch(),
      },
      serve,
    );
  } catch (error) {
    throw new Rtr7Error("RTR7_ERR_LISTEN", `listen on udp ${where} for TFTP: ${describeError(error)}`, {
      cause: error,
    });
  }

  await new Promise<void>((resolve, reject) => {
    const failed = (error: Error): void => {
      server.close();
      reject(
        new Rtr7Error("RTR7_ERR_LISTEN", `listen on udp ${where} for TFTP: ${describeError(error)}`, {
          cause: error,
        }),
      );
    };
    server.once("error", failed);
    server.once("listening", () => {
      server.off("error", failed);
      resolve();
    });
    server.listen();
  });
  log.info({ event: "tftp-listening", address: where }, `listening on udp ${where}`);

  server.on("error", (error) => log.error({ event: "tftp-socket-error", err: error }, "TFTP socket error"));
  server.on("reject", (remote, error, packet) => {
    const peer = formatPeer(remote.address, remote.port);
    const opcode = packet.length >= 2 ? packet.readUInt16BE(0) : undefined;
    if (opcode === 2 && error.code === 2) {
      const name = requestedName(packet);
      log.warn(
        { peer, event: "tftp-write-refused", file: name },
        `refused to write ${printable(name)}: read-only`,
      );
      return;
    }
    log.warn(
      {
        peer,
        event: "tftp-bad-packet",
        code: "RTR7_ERR_TFTP_PACKET",
        reason: error.message,
        bytes: packet.length,
      },
      `skipped a malformed packet (${packet.length} bytes): ${error.message}`,
    );
  });

  server.on("request-error", (remote, error) => {
    const peer = formatPeer(remote.address, remote.port);
    log.warn({ peer, event: "tftp-failed", err: error }, `could not start a transfer: ${error.message}`);
  });

  let closing: Promise<void> | undefined;
  const close = async (): Promise<void> => {
    busyPoll.stop();
    const socketClosed = new Promise<void>((resolve) => server.once("close", resolve));
    server.close();
    for (const request of transfers.keys()) request.abort("Server shutting down");
    await Promise.all([socketClosed, ...transfers.values()]);
    log.info({ event: "tftp-closed" }, `closed; served ${formatSize(served)}`);
  };
  return {
    close: () => (closing ??= close()),
    bytesServed: () => served,
  };
}

/** Starts writing a file to a transfer; undefined for an empty file (nothing to read). */
function send(
  file: ServedFile,
  response: PackageResponse,
  onReadError: (error: Error) => void,
): { destroy(): void } | undefined {
  response.setSize(file.size);
  if (file.size === 0) {
    response.end();
    return undefined;
  }
  const source = file.open();
  source.once("error", onReadError);
  source.pipe(response);
  return source;
}

function formatPeer(address: string, port: number): string {
  return address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`;
}

/** The file name of an RRQ or WRQ packet, as sent (latin1, up to the first NUL). */
function requestedName(packet: Buffer): string {
  const end = packet.indexOf(0, 2);
  return packet.toString("latin1", 2, end === -1 ? packet.length : end);
}

/** A client-chosen name made safe for a terminal: no control bytes, bounded length. */
function printable(name: string): string {
  const shown = name.length > 120 ? `${name.slice(0, 120)}...` : name;
  return shown.replace(/[^\x20-\x7e]/g, (char) => `\\x${char.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

function formatSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KiB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

function checkRange(name: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new Rtr7Error("RTR7_ERR_USAGE", `TFTP ${name} ${value}: want an integer from ${min} to ${max}`);
  }
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, entry]) => entry !== undefined)) as Partial<T>;
}
