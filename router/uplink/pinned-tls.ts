// A TLS connection whose server certificate is checked against a pinned
// SHA-256 fingerprint, handshake first: the caller gets the socket only
// once the certificate is the pinned one, so no byte of MQTT (CONNECT, with
// the unit's password) or HTTP is ever written to an impostor. The server's
// certificate is self-signed (lib/tls/unit-certificate.ts), so chain
// checks are off and the pin is the whole check; a mismatch is
// RTR7_ERR_UPLINK_TLS naming both fingerprints.
import net from "node:net";
import tls from "node:tls";
import { Rtr7Error } from "../../lib/errors.js";
import { sameFingerprint } from "../../lib/tls/unit-certificate.js";

export interface PinnedTarget {
  host: string;
  port: number;
  /** AB:CD:... as openssl prints it (case and separators aside). */
  fingerprint: string;
  timeoutMs?: number;
}

export function pinnedTlsConnect(target: PinnedTarget): Promise<tls.TLSSocket> {
  const where = `${target.host}:${target.port}`;
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: target.host,
      port: target.port,
      ...(net.isIP(target.host) === 0 ? { servername: target.host } : {}),
      rejectUnauthorized: false,
    });
    const timer = setTimeout(
      () => fail(new Error(`${where}: no TLS handshake within ${target.timeoutMs ?? 15_000} ms`)),
      target.timeoutMs ?? 15_000,
    );
    const fail = (error: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(error);
    };
    socket.once("error", fail);
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      socket.off("error", fail);
      const seen = socket.getPeerCertificate().fingerprint256;
      if (typeof seen !== "string" || !sameFingerprint(seen, target.fingerprint)) {
        socket.destroy();
        reject(
          new Rtr7Error(
            "RTR7_ERR_UPLINK_TLS",
            `${where} presented certificate ${seen || "(none)"}, not the pinned ${target.fingerprint}: refused before anything was sent`,
          ),
        );
        return;
      }
      resolve(socket);
    });
  });
}
