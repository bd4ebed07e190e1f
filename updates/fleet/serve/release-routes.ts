// The release store over HTTPS (fastify), for units and for `rtr7 fleet
// publish`:
//   GET|HEAD /releases/VERSION/FILE         anyone; Range (one range: 206 and
//                                           Content-Range; unsatisfiable:
//                                           416), streamed by server/http/
//                                           send-file.ts's buffer ring
//   PUT  /api/releases/VERSION/files/FILE   admin; the file's bytes as the body
//   POST /api/releases/VERSION/publish      admin; checks and publishes
//   GET  /api/releases                      admin; the published versions
// Downloads are not authenticated, on purpose: what a unit trusts is the
// release's signature, checked on the unit against its own keys, not the
// server; the images hold no secret (a unit's password and keys live on its
// /perm, never in a release); and a release is meant to be servable from a
// CDN or any static server just as well (a job's baseUrl), which a unit
// could not send its credential to. A per-unit check on every Range request
// would add work and a credential on the wire for no integrity gained.
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import parseRange from "range-parser";
import type { Readable } from "node:stream";
import { stat } from "node:fs/promises";
import { Rtr7Error } from "../../../lib/errors.js";
import { sendJson } from "../../../lib/http-error.js";
import type { Logger } from "../../../lib/log.js";
import { sendFileRange } from "../../../server/http/send-file.js";
import { TransferGate } from "../../../server/http/transfers.js";
import type { ReleaseStore } from "./release-store.js";

export interface ReleaseRoutesOptions {
  store: ReleaseStore;
  /** The admin's guard (basic-auth.ts's requireBasicAuth). */
  admin: (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
  log: Logger;
  /** Downloads at once, in all and per unit; default 64 and 4. */
  maxTransfers?: number;
  maxTransfersPerPeer?: number;
}

type FileParams = { version: string; file: string };

/** Uploads arrive as application/octet-stream (release files) or application/gzip (backups), streamed, never buffered. */
export function acceptRawBodies(app: FastifyInstance): void {
  for (const type of ["application/octet-stream", "application/gzip"])
    if (!app.hasContentTypeParser(type))
      app.addContentTypeParser(type, (_request, payload, done) => done(null, payload));
}

export function registerReleaseRoutes(app: FastifyInstance, options: ReleaseRoutesOptions): void {
  const { store, log } = options;
  const gate = new TransferGate({
    maxTransfers: options.maxTransfers ?? 64,
    maxTransfersPerPeer: options.maxTransfersPerPeer ?? 4,
    idleMs: 60_000,
  });

  const download = async (
    request: FastifyRequest<{ Params: FileParams }>,
    reply: FastifyReply,
  ): Promise<FastifyReply> => {
    const { version, file: name } = request.params;
    const file = store.filePath(version, name);
    const info = await stat(file).catch(() => {
      throw new Rtr7Error("RTR7_ERR_HTTP_NOT_FOUND", `no release file ${version}/${name}`);
    });
    const size = info.size;
    void reply.header("accept-ranges", "bytes").type("application/octet-stream");
    let range: { start: number; end: number } | undefined;
    const header = request.headers.range;
    if (header !== undefined) {
      const parsed = parseRange(size, header, { combine: true });
      if (parsed === -1) return reply.code(416).header("content-range", `bytes */${size}`).send();
      if (parsed !== -2 && parsed.type === "bytes" && parsed.length === 1) range = parsed[0];
    }
    const length = range ? range.end - range.start + 1 : size;
    void reply.header("content-length", length);
    if (range) void reply.code(206).header("content-range", `bytes ${range.start}-${range.end}/${size}`);
    if (request.method === "HEAD" || length === 0) return reply.send("");
    const peer = request.ip;
    const admission = gate.admit(peer);
    if (!admission.admitted) {
      void reply.header("retry-after", 5);
      throw new Rtr7Error(
        "RTR7_ERR_HTTP_BUSY",
        `GET /releases/${version}/${name}: not now: ${admission.reason}`,
      );
    }
    void reply.hijack();
    reply.raw.writeHead(reply.statusCode, reply.getHeaders() as Record<string, string | number | string[]>);
    const start = range?.start ?? 0;
    sendFileRange(reply.raw, file, start, range?.end ?? size - 1, {
      pool: gate.pool,
      idleMs: gate.limits.idleMs,
    })
      .finally(admission.release)
      .then(
        (bytes) => {
          store.noteServed(version, name, bytes);
          log.info(
            {
              subsystem: "fleet-serve",
              peer,
              file: `${version}/${name}`,
              bytes,
              ...(range ? { range: header } : {}),
            },
            bytes === length
              ? `sent ${version}/${name}`
              : `${version}/${name}: the client went away after ${bytes} bytes`,
          );
        },
        (error: Error) => {
          log.warn(
            { subsystem: "fleet-serve", peer, file: `${version}/${name}`, err: error.message },
            "send failed",
          );
          reply.raw.destroy(error);
        },
      );
    return reply;
  };

  // fastify answers HEAD through the GET route (exposeHeadRoutes); download sends no body for it.
  app.get<{ Params: FileParams }>("/releases/:version/:file", download);
  acceptRawBodies(app);

  app.put<{ Params: FileParams }>(
    "/api/releases/:version/files/:file",
    { onRequest: options.admin, bodyLimit: 2 * 1024 ** 3 },
    async (request, reply) => {
      const { version, file } = request.params;
      const bytes = await store.stageFile(version, file, request.body as Readable);
      log.info({ subsystem: "fleet-serve", peer: request.ip, file: `${version}/${file}`, bytes }, "staged");
      return sendJson(reply, { version, file, bytes });
    },
  );

  app.post<{ Params: { version: string } }>(
    "/api/releases/:version/publish",
    { onRequest: options.admin },
    async (request, reply) => {
      const published = await store.commit(request.params.version);
      log.info(
        { subsystem: "fleet-serve", peer: request.ip, version: published.version, key: published.keyId },
        `published release ${published.version}`,
      );
      return sendJson(reply, published);
    },
  );

  app.get("/api/releases", { onRequest: options.admin }, async (_request, reply) =>
    sendJson(reply, { releases: await store.versions() }),
  );
}
