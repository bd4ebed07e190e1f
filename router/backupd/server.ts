// backupd, router7's backup service, on port 8077: `GET /backup.tar.gz`
// streams a gzip'd tar of /perm (archive.ts), which safe-update saves before
// every update and a recovery restores. Runs as its own process, started by
// the supervisor as `service backupd`.
//
// A failure in the middle of the archive cannot be reported with a status
// code (it went out with the first byte), so the connection is cut instead:
// the client sees a broken download, not a clean-looking short archive.
import Fastify, { type FastifyInstance } from "fastify";
import { Rtr7Error, describeError } from "../../lib/errors.js";
import { formatBytes, type Logger } from "../../lib/log.js";
import type { RunningService, ServiceMain } from "../services.js";
import type { ServiceConfig } from "../unit.js";
import { ArchiveAbortedError, createArchive } from "./archive.js";

export interface BackupdOptions {
  config: ServiceConfig;
  log: Logger;
  now?: () => Date;
}

export function buildBackupdApp(options: BackupdOptions): FastifyInstance {
  const { config, log } = options;
  const now = options.now ?? (() => new Date());
  // On SIGTERM a download in progress is cut rather than waited for (the
  // client sees a broken download and can fetch again).
  const app = Fastify({ logger: false, return503OnClosing: true, forceCloseConnections: true });

  app.get("/backup.tar.gz", (request, reply) => {
    const peer = request.ip;
    const started = performance.now();
    const archive = createArchive({ root: config.paths.perm, log: log.child({ peer }) });
    log.info({ peer, event: "backup-start" }, `backup of ${config.paths.perm} requested`);
    archive.done.then(
      (stats) => {
        const seconds = (performance.now() - started) / 1000;
        log.info(
          { peer, event: "backup-done", ...stats, seconds },
          `backup archived: ${stats.files} files, ${stats.directories} directories, ${formatBytes(stats.bytes)} in ${seconds.toFixed(1)} s` +
            (stats.skipped > 0 ? ` (${stats.skipped} entries skipped)` : ""),
        );
      },
      (error: unknown) => {
        if (error instanceof ArchiveAbortedError)
          log.warn({ peer, event: "backup-aborted" }, "backup download ended by the client before its end");
        else
          log.error(
            { peer, event: "backup-failed", err: error },
            `backup failed, connection cut: ${describeError(error)}`,
          );
      },
    );
    return reply
      .header("content-type", "application/gzip")
      .header("content-disposition", `attachment; filename="${backupFileName(config.hostname, now())}"`)
      .header("cache-control", "no-store")
      .send(archive.stream);
  });
  app.setErrorHandler((error: { message: string }, request, reply) => {
    log.warn({ peer: request.ip, url: request.url }, `request failed: ${error.message}`);
    void reply.code(500).send({ error: "backup failed", message: error.message });
  });
  return app;
}

/** backup-<hostname>-<YYYY-MM-DD>.tar.gz, with anything but [A-Za-z0-9.-] in the hostname made "_". */
export function backupFileName(hostname: string, date: Date): string {
  const safeHostname = hostname.replace(/[^A-Za-z0-9.-]/g, "_") || "unit";
  return `backup-${safeHostname}-${date.toISOString().slice(0, 10)}.tar.gz`;
}

export const backupdMain: ServiceMain = async (config, log) => {
  const app = buildBackupdApp({ config, log });
  const { address, ports } = config;
  try {
    await app.listen({ host: address, port: ports.backupd });
  } catch (error) {
    throw new Rtr7Error(
      "RTR7_ERR_LISTEN",
      `backupd: listen on tcp ${address}:${ports.backupd}: ${describeError(error)}`,
      { cause: error },
    );
  }
  log.info({ event: "listening", address, port: ports.backupd }, "backupd listening");
  return { close: () => app.close() } satisfies RunningService;
};
