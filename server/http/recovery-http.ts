// The recovery server's HTTP side (fastify), on router7's port 7773: the
// images and the manifest for the unit, and the unit's progress, success and
// failure reports. Reports must carry the run's session token as a bearer
// token; a wrong or missing one gets 403 before the body is even parsed, and
// changes nothing. The unit's update API password (GET /credentials) is
// handed out with the same token only, never logged, and never cached by
// anything between. Images are served from a FileMap only (no directory), with
// HEAD, Content-Length and single-range requests, because recovery-init and
// curl resume and probe with them. Errors are answered in rtr7's one JSON
// shape with the catalogue's status (lib/http-error.ts).
//
// Whom the files and the password are for is the caller's `refuse` hook
// (server/pxe/unit-access.ts in a recovery: the locked unit's address only);
// a refused peer gets 403 RTR7_ERR_RECOVERY_PEER, logged with the peer. The
// reports stay checked by the token alone. A signed release's manifest.json
// is served as the bytes its manifest.json.minisig signs (that file is one
// of `files`), and GET /trusted-keys gives the workstation's public keys,
// behind the token and the unit's address, as /credentials is.
//
// Report bodies are JSON whatever their Content-Type says, or none: busybox
// wget labels them as a form or as text, and router7's recovery-init posts
// its success as `http.Post(url, "", nil)`, an empty body with an empty
// Content-Type. So every body is read as text (up to the limit), an empty one
// is no body at all, and only the success report, whose fields are all
// optional, takes no body as `{}`.
import { timingSafeEqual } from "node:crypto";
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from "fastify";
import parseRange from "range-parser";
import { Rtr7Error } from "../../lib/errors.js";
import { installErrorHandlers, replyWithError, requestLine } from "../../lib/http-error.js";
import { formatBytes, type Logger } from "../../lib/log.js";
import { sendFileRange } from "./send-file.js";
import { defaultTransferLimits, TransferGate, type TransferLimits } from "./transfers.js";
import type { FileMap, ServedFile } from "../../lib/served-files.js";
import type { Manifest } from "../../lib/wire/manifest.js";
import { trustedKeysPath, type TrustedKeysReply } from "../../lib/wire/trusted-keys.js";
import {
  credentialsPath,
  failureReportSchema,
  progressReportSchema,
  successReportSchema,
  type FailureReport,
  type ProgressReport,
  type CredentialsReply,
  type SuccessReport,
} from "../../lib/wire/report.js";

export interface RecoveryHttpOptions {
  /** mbr.img, boot.img, root.img and, only with --backup, backup.tar.gz. */
  files: FileMap;
  manifest: Manifest;
  token: string;
  log: Logger;
  /**
   * The unit's update API password, for GET /credentials (asked once per
   * request: the caller keeps it stable). Without it that path is 404.
   */
  password?: () => Promise<string>;
  /**
   * manifest.json's exact bytes when the release is signed (the signature
   * covers them, so they are served as they are); default `manifest` as JSON.
   */
  manifestBytes?: Buffer;
  /**
   * The workstation's public keys for GET /trusted-keys (behind the token),
   * for a unit that trusts none. Without it that path is 404.
   */
  trustedKeys?: () => Promise<string[]>;
  /** `rtr7 recover --new-key`: the reply says `replace`, so the unit's trusted keys give way to these. */
  replaceTrustedKeys?: boolean;
  onProgress?: (report: ProgressReport, peer: string) => void;
  onSuccess?: (report: SuccessReport, peer: string) => void;
  onFailure?: (report: FailureReport, peer: string) => void;
  /** Caps on image downloads (server/http/transfers.ts); default 8 in all, 2 per address, 60 s idle. */
  transfers?: Partial<TransferLimits>;
  /** Addresses the overall cap never turns away: the unit this recovery's DHCP answers. */
  priorityPeers?: readonly string[];
  /**
   * Why `peerAddress` may not have `path` (a file, the manifest, the
   * password), or undefined to serve it; default: serve all.
   */
  refuse?: (peerAddress: string, path: string) => string | undefined;
}

export interface RecoveryHttp {
  app: FastifyInstance;
  /** Bytes of image bodies fully handed to the network so far. */
  bytesServed(): number;
}

const reportBodyLimit = 64 * 1024;

export function buildRecoveryHttp(options: RecoveryHttpOptions): RecoveryHttp {
  const log = options.log.child({ subsystem: "http" });
  const app = Fastify({ logger: false, bodyLimit: reportBodyLimit, return503OnClosing: true });
  let bytesServed = 0;
  const gate = new TransferGate({ ...defaultTransferLimits, ...options.transfers });

  // The Content-Type says nothing here, and fastify would refuse an empty
  // or malformed one (415) before any parser ran: it is dropped, and every
  // body goes to the one parser below.
  app.addHook("onRequest", (request, _reply, done) => {
    delete request.raw.headers["content-type"];
    done();
  });
  // fastify's own JSON parser (it refuses __proto__ and constructor keys);
  // its errors carry status 400 and become RTR7_ERR_HTTP_REQUEST.
  const parseJson = app.getDefaultJsonParser("error", "error");
  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "string" }, (request, body, done) => {
    const text = String(body);
    if (text.trim() === "") {
      done(null, undefined);
      return;
    }
    void parseJson(request, text, done);
  });

  const errorOptions = { log };
  const expected = Buffer.from(`Bearer ${options.token}`);
  const requireToken = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const given = Buffer.from(request.headers.authorization ?? "");
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      await replyWithError(
        request,
        reply,
        new Rtr7Error(
          "RTR7_ERR_REPORT_TOKEN",
          `${requestLine(request)}: wrong or missing session token (Authorization: Bearer <rtr7.token>)`,
        ),
        errorOptions,
      );
    }
  };

  const refuse = options.refuse;
  const requireUnit = async (request: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const path = request.url.split("?")[0] ?? "";
    const reason = refuse?.(request.ip, path);
    if (reason === undefined) return;
    await replyWithError(
      request,
      reply,
      new Rtr7Error("RTR7_ERR_RECOVERY_PEER", `${requestLine(request)} from ${request.ip}: ${reason}`),
      errorOptions,
    );
  };

  installErrorHandlers(app, errorOptions);

  for (const name of options.files.names()) {
    const file = options.files.get(name) as ServedFile;
    // GET and HEAD share one handler: fastify's automatic HEAD route would
    // report Content-Length 0 for a body-less reply.
    app.route({
      method: ["GET", "HEAD"],
      url: `/${name}`,
      onRequest: requireUnit,
      handler: (request, reply) => serveFile(file, request, reply),
    });
  }
  const manifestBytes = options.manifestBytes;
  app.get("/manifest.json", { onRequest: requireUnit }, (_request, reply) =>
    manifestBytes === undefined
      ? reply.send(options.manifest)
      : reply.type("application/json").send(manifestBytes),
  );

  const trustedKeys = options.trustedKeys;
  if (trustedKeys) {
    app.get(trustedKeysPath, { onRequest: [requireUnit, requireToken] }, async (request, reply) => {
      const body: TrustedKeysReply = {
        keys: await trustedKeys(),
        ...(options.replaceTrustedKeys === true ? { replace: true } : {}),
      };
      log.info(
        { peer: request.ip, event: "trusted-keys", keys: body.keys.length },
        `the unit fetched the workstation's public keys (${body.keys.length})`,
      );
      return reply.header("cache-control", "no-store").send(body);
    });
  }

  const password = options.password;
  if (password) {
    app.get(credentialsPath, { onRequest: [requireUnit, requireToken] }, async (request, reply) => {
      const body: CredentialsReply = { password: await password() };
      log.info(
        { peer: request.ip, event: "credentials" },
        "the unit fetched its update API password (not logged)",
      );
      return reply.header("cache-control", "no-store").send(body);
    });
  }

  app.post<{ Body: ProgressReport }>(
    "/progress",
    { onRequest: requireToken, schema: { body: progressReportSchema } },
    (request, reply) => {
      options.onProgress?.(request.body, request.ip);
      return reply.send({ ok: true });
    },
  );
  app.post<{ Body: SuccessReport | undefined }>(
    "/success",
    {
      onRequest: requireToken,
      // No body is an empty report: the schema then checks `{}`.
      preValidation: (request, _reply, done) => {
        request.body ??= {};
        done();
      },
      schema: { body: successReportSchema },
    },
    (request, reply) => {
      reply.raw.once("finish", () => options.onSuccess?.(request.body ?? {}, request.ip));
      return reply.send({ ok: true });
    },
  );
  app.post<{ Body: FailureReport }>(
    "/failure",
    { onRequest: requireToken, schema: { body: failureReportSchema } },
    (request, reply) => {
      reply.raw.once("finish", () => options.onFailure?.(request.body, request.ip));
      return reply.send({ ok: true });
    },
  );

  function serveFile(file: ServedFile, request: FastifyRequest, reply: FastifyReply): FastifyReply {
    void reply.header("accept-ranges", "bytes").type("application/octet-stream");
    let range: { start: number; end: number } | undefined;
    const header = request.headers.range;
    if (header !== undefined) {
      const parsed = parseRange(file.size, header, { combine: true });
      if (parsed === -1) {
        return reply.code(416).header("content-range", `bytes */${file.size}`).send();
      }
      // A malformed Range header is ignored (RFC 9110 14.2); several ranges
      // are answered with the whole file, which the RFC also allows.
      if (parsed !== -2 && parsed.type === "bytes" && parsed.length === 1) range = parsed[0];
    }
    const length = range ? range.end - range.start + 1 : file.size;
    void reply.header("content-length", length);
    if (range) void reply.code(206).header("content-range", `bytes ${range.start}-${range.end}/${file.size}`);
    if (request.method === "HEAD") return reply.send();
    // The peer, read now: once the response has ended the socket may be gone.
    const peer = request.ip;
    const sent = (): void => {
      bytesServed += length;
      log.info(
        {
          peer,
          event: "http-sent",
          file: file.name,
          bytes: length,
          ...(range ? { range: header } : {}),
        },
        `sent ${file.name} (${formatBytes(length)}${range ? `, ${header}` : ""})`,
      );
    };
    // An empty file has no range to read; send an empty body directly.
    if (length === 0) {
      reply.raw.once("finish", sent);
      return reply.send("");
    }
    if (file.diskPath === undefined) {
      reply.raw.once("finish", sent);
      return reply.send(file.open(range));
    }
    const diskPath = file.diskPath;
    const admission = gate.admit(peer, options.priorityPeers?.includes(peer) === true);
    if (!admission.admitted) {
      const retryAfterSeconds = Math.ceil(gate.limits.idleMs / 1000);
      void reply.header("retry-after", retryAfterSeconds).header("connection", "close");
      return replyWithError(
        request,
        reply,
        new Rtr7Error("RTR7_ERR_HTTP_BUSY", `${requestLine(request)}: not now: ${admission.reason}`),
        errorOptions,
      );
    }
    void reply.hijack();
    reply.raw.writeHead(reply.statusCode, reply.getHeaders() as Record<string, string | number | string[]>);
    sendFileRange(reply.raw, diskPath, range?.start ?? 0, range?.end ?? file.size - 1, {
      pool: gate.pool,
      idleMs: gate.limits.idleMs,
    })
      .finally(admission.release)
      .then(
        (bytes) => {
          if (bytes === length) sent();
          else
            log.info(
              { peer, file: file.name, bytes },
              `${file.name}: the client went away after ${formatBytes(bytes)}`,
            );
        },
        (error: Error) => {
          log.warn({ peer, file: file.name, err: error }, `sending ${file.name} failed`);
          reply.raw.destroy(error);
        },
      );
    return reply;
  }

  return { app, bytesServed: () => bytesServed };
}
