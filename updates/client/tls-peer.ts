// The TLS half of talking to a unit whose certificate is pinned: open the
// TLS connection (no CA, no name check: the unit's certificate is
// self-signed, and the pin is what is trusted), wait for the handshake, and
// compare the certificate the peer presented with the pin before the
// caller writes a single byte of its request. A different certificate
// destroys the socket and is RTR7_ERR_UNIT_CERT_CHANGED, naming the unit,
// the address, the pinned and the presented fingerprint; so an
// Authorization header never reaches a man in the middle. `peerFingerprint`
// only looks (the first contact, `rtr7 fleet trust`): handshake, read the
// certificate, close.
import net from "node:net";
import tls from "node:tls";
import { Rtr7Error } from "../../lib/errors.js";
import { sameFingerprint } from "../../lib/tls/unit-certificate.js";
import { hostPort, unreachableError } from "./unit-errors.js";

/** The certificate a unit is expected to present. */
export interface UnitPin {
  /** "AB:CD:..." as openssl and node's fingerprint256 print it. */
  fingerprint256: string;
  /** The unit's hostname, for the error's hint (`rtr7 fleet trust H`). */
  hostname: string;
}

export interface TlsOpenOptions {
  host: string;
  port: number;
  /** Names the exchange in errors: "GET /update/features". */
  step: string;
  /** The handshake must end within this. */
  timeoutMs: number;
  /** Opens the TCP connection the TLS runs over (tests count sockets); default a new one. */
  connect?: (options: { host: string; port: number }) => net.Socket;
}

/** A TLS connection to the unit, handshake done; the caller destroys it. */
function openTls(options: TlsOpenOptions): Promise<tls.TLSSocket> {
  const where = hostPort(options.host, options.port);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      ...(options.connect
        ? { socket: options.connect({ host: options.host, port: options.port }) }
        : { host: options.host, port: options.port }),
      // SNI takes names only, never an address.
      ...(net.isIP(options.host) === 0 ? { servername: options.host } : {}),
      rejectUnauthorized: false,
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        unreachableError(
          where,
          options.step,
          new Error(`no TLS handshake within ${(options.timeoutMs / 1000).toFixed(1)} s`),
          "timeout",
        ),
      );
    }, options.timeoutMs);
    const onError = (error: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(unreachableError(where, options.step, error));
    };
    socket.on("error", onError);
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      socket.off("error", onError);
      // Until its user (http.request) listens: an error then is that user's to see.
      socket.on("error", () => undefined);
      resolve(socket);
    });
  });
}

function presentedFingerprint(socket: tls.TLSSocket): string {
  return socket.getPeerCertificate().fingerprint256 ?? "";
}

/** The certificate the unit presents at host:port, by its SHA-256 fingerprint. */
export async function peerFingerprint(options: TlsOpenOptions): Promise<string> {
  const socket = await openTls(options);
  try {
    return presentedFingerprint(socket);
  } finally {
    socket.destroy();
  }
}

export function certChangedError(pin: UnitPin, where: string, presented: string): Rtr7Error {
  return new Rtr7Error(
    "RTR7_ERR_UNIT_CERT_CHANGED",
    `${pin.hostname} at ${where}: the unit's TLS certificate changed: pinned SHA-256 ${pin.fingerprint256}, presented ${presented || "none"}; nothing was sent`,
    {
      hint: `If the change is yours (a new unit, a new /perm), accept the new certificate with \`rtr7 fleet trust ${pin.hostname}\`; otherwise something else answers at ${where}: find out what before sending it a password.`,
    },
  );
}

/** A TLS connection whose peer presented the pinned certificate; else it is closed and this throws. */
export async function pinnedSocket(options: TlsOpenOptions & { pin: UnitPin }): Promise<tls.TLSSocket> {
  const socket = await openTls(options);
  const presented = presentedFingerprint(socket);
  if (!sameFingerprint(presented, options.pin.fingerprint256)) {
    socket.destroy();
    throw certChangedError(options.pin, hostPort(options.host, options.port), presented);
  }
  return socket;
}
