// How the workstation's commands (`rtr7 fleet publish`, `rtr7 fleet enroll`)
// talk to `rtr7 fleet serve`: HTTPS to its URL, its self-signed certificate
// checked against the pinned fingerprint before a byte is sent (the same
// pinned socket as the units': updates/client/tls-peer.ts), and the admin's
// credential in the Authorization header only. An error reply in rtr7's one
// shape comes back as that Rtr7Error.
import http from "node:http";
import type { Readable } from "node:stream";
import { Rtr7Error } from "../../../lib/errors.js";
import { parseErrorBody } from "../../../lib/http-error.js";
import { pinnedSocket } from "../../client/tls-peer.js";
import { authorizationHeader, type BasicCredentials } from "./basic-auth.js";

/** What the workstation keeps to reach the server: DATA/admin-credential.json, copied over. */
export interface ServerAccess {
  /** https://HOST:PORT */
  url: string;
  /** The server certificate's SHA-256 fingerprint (AB:CD:...). */
  tlsFingerprint: string;
  credentials: BasicCredentials;
}

export interface ServerReply {
  status: number;
  text: string;
}

export async function serverRequest(
  access: ServerAccess,
  method: string,
  route: string,
  body?: Buffer | Readable | string,
  timeoutMs = 30_000,
): Promise<ServerReply> {
  const url = new URL(route, access.url);
  const port = Number(url.port || 443);
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const socket = await pinnedSocket({
    host,
    port,
    timeoutMs,
    step: `${method} ${url.pathname}`,
    pin: { fingerprint256: access.tlsFingerprint, hostname: host },
  });
  return new Promise((resolve, reject) => {
    const request = http.request(
      {
        method,
        host,
        port,
        path: url.pathname + url.search,
        createConnection: () => socket,
        headers: {
          authorization: authorizationHeader(access.credentials),
          ...(typeof body === "string" ? { "content-type": "application/json" } : {}),
          ...(body !== undefined && typeof body !== "string"
            ? { "content-type": "application/octet-stream" }
            : {}),
        },
        timeout: timeoutMs,
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          const status = response.statusCode ?? 0;
          if (status >= 400) {
            const error = parseErrorBody(response.headers["content-type"], text);
            return reject(
              error
                ? new Rtr7Error(error.code, error.message, { hint: error.hint })
                : new Rtr7Error(
                    "RTR7_ERR_HTTP_REQUEST",
                    `${method} ${url.pathname}: HTTP ${status}: ${text.slice(0, 200)}`,
                  ),
            );
          }
          resolve({ status, text });
        });
        response.on("error", reject);
      },
    );
    request.on("timeout", () =>
      request.destroy(new Error(`${method} ${url.pathname}: no answer within ${timeoutMs} ms`)),
    );
    request.on("error", reject);
    if (body === undefined || typeof body === "string" || Buffer.isBuffer(body)) request.end(body);
    else body.pipe(request);
  });
}
