// The npm `tftp` package (gagle/node-tftp 0.1.2), typed: only the parts the
// server uses. The package ships no types, and it must be the patched copy
// (patches/tftp+0.1.2.patch, applied by patch-package after npm install; see
// patches/README.md): unpatched, one short packet or an EMFILE crashes the
// process, a duplicate ACK multiplies the packets sent, `a/../b` is served as
// `b`, and there is no hook for the busy poll. Loading it here checks that
// the patch is in place.
import type { RemoteInfo } from "node:dgram";
import type { EventEmitter } from "node:events";
import { createRequire } from "node:module";
import type { Writable } from "node:stream";
import { Rtr7Error } from "../../lib/errors.js";

/** A TFTP error as the package sends it: an RFC 1350 code and its text. */
export interface PackageTftpError {
  code: number;
  message: string;
}

export interface PackageServerOptions {
  host: string;
  port: number;
  denyPUT: boolean;
  /** Largest blksize granted (RFC 2348). */
  blockSize: number;
  /** Largest windowsize granted (RFC 7440). */
  windowSize: number;
  /** Retransmission timeout in milliseconds, unless the client asks for one (RFC 2349). */
  timeout: number;
  retries: number;
  /** Patched in: called after every packet a transfer sends. */
  onSend?: () => void;
}

/** What a transfer negotiated, known when the request is emitted. */
export interface PackageStats {
  blockSize: number;
  windowSize: number;
  remoteAddress: string;
  remotePort: number;
}

/**
 * The request side of a transfer. Emits "close" when the transfer ends, then
 * "error" (failed: timeout, the client's ERROR) or "abort" (we aborted) if it
 * did not complete.
 */
export interface PackageRequest extends EventEmitter {
  readonly method: "GET" | "PUT";
  /** The file name exactly as the client sent it (patched: not normalised). */
  readonly file: string;
  readonly stats: PackageStats;
  /** Ends the transfer with an ERROR packet; a message from the RFC list keeps its code. */
  abort(message?: string): void;
}

/** The response side of a read transfer: write the file's bytes to it. */
export interface PackageResponse extends Writable {
  /** Must be called once, before writing: the tsize answered (RFC 2349). */
  setSize(size: number): void;
}

export interface PackageServer extends EventEmitter {
  listen(): void;
  close(): void;
  on(event: "listening" | "close", listener: () => void): this;
  on(event: "error", listener: (error: Error) => void): this;
  /** Patched in: a request refused or skipped on the listening socket, and the error answered. */
  on(event: "reject", listener: (remote: RemoteInfo, error: PackageTftpError, packet: Buffer) => void): this;
  /** Patched in: a transfer that failed before it reached the request listener (EMFILE). */
  on(event: "request-error", listener: (remote: RemoteInfo, error: Error) => void): this;
}

interface TftpPackage {
  createServer(
    options: PackageServerOptions,
    listener: (request: PackageRequest, response: PackageResponse) => void,
  ): PackageServer;
  /** The RFC 1350 error texts the package maps back to their codes. */
  ENOENT: string;
  EACCESS: string;
  EIO: string;
}

const require = createRequire(import.meta.url);

export function loadTftpPackage(): TftpPackage {
  const tftp = require("tftp") as TftpPackage;
  const serverClass = require("tftp/lib/server") as { prototype: Record<string, unknown> };
  if (typeof serverClass.prototype._reject !== "function") {
    throw new Rtr7Error(
      "RTR7_ERR_TOOL_MISSING",
      "load the npm tftp package: it is not patched (patches/tftp+0.1.2.patch is missing from node_modules/tftp)",
      { hint: "Run npm ci (or scripts/setup.sh): its postinstall step applies the patches in patches/." },
    );
  }
  return tftp;
}
