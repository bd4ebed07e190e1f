// backupd, router7's backup service, on port 8077: `GET /backup.tar.gz`
// streams a gzip'd tar of /perm (archive.ts), which safe-update saves before
// every update and a recovery restores. Runs as its own process, started by
// the supervisor as `service backupd`.
//
// The archive holds /perm/gokr-pw.txt (a recovery restores the unit's
// identity from it), and that password is all it takes to push an image to
// the unit. So, unlike router7's backupd, this one answers only a client
// with the update API's own credentials (HTTP Basic, user gokrazy, the
// password read from /perm/gokr-pw.txt as the update API reads it); anyone
// else gets 401 before the archive is even begun. Errors are answered in
// rtr7's one JSON shape (lib/http-error.ts).
//
// A failure in the middle of the archive cannot be reported with a status
// code (it went out with the first byte), so the connection is cut instead:
// the client sees a broken download, not a clean-looking short archive.
import Fastify, { type FastifyInstance } from "fastify";
import { describeError } from "../../lib/errors.js";
import { installErrorHandlers } from "../../lib/http-error.js";
import { formatBytes, type Logger } from "../../lib/log.js";
import type { RunningService, ServiceMain } from "../services.js";
import type { ServiceConfig } from "../unit.js";
import { installPasswordGuard } from "../http-guard/password-guard.js";
import { defaultConnectionCaps } from "../http-guard/connection-caps.js";
import { guardUnitApp, listenUnitApp } from "../http-guard/serve.js";
import { unitTlsListen } from "../http-guard/unit-tls.js";
import { readOrCreatePassword } from "../update-api/password.js";
import { ArchiveAbortedError, createArchive } from "./archive.js";

export interface BackupdOptions {
  config: ServiceConfig;
  log: Logger;
  /** The update API's password (/perm/gokr-pw.txt): a backup is served only with it. */
  password: string;
  now?: () => Date;
}

export function buildBackupdApp(options: BackupdOptions): FastifyInstance {
  const { config, log } = options;
  const now = options.now ?? (() => new Date());
  // On SIGTERM a download in progress is cut rather than waited for (the
  // client sees a broken download and can fetch again).
  const app = Fastify({ logger: false, return503OnClosing: true, forceCloseConnections: true });
  const errorOptions = { log };
  guardUnitApp(app, config, log);
  installPasswordGuard(app, { password: options.password, errorOptions, what: "the update API's password" });
  installErrorHandlers(app, errorOptions);

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
  return app;
}

/** backup-<hostname>-<YYYY-MM-DD>.tar.gz, with anything but [A-Za-z0-9.-] in the hostname made "_". */
export function backupFileName(hostname: string, date: Date): string {
  const safeHostname = hostname.replace(/[^A-Za-z0-9.-]/g, "_") || "unit";
  return `backup-${safeHostname}-${date.toISOString().slice(0, 10)}.tar.gz`;
}

export const backupdMain: ServiceMain = async (config, log) => {
  // The supervisor made the password before starting the services; this
  // reads it (or, started on its own, makes it as the update API would).
  const { password } = await readOrCreatePassword(config.paths.perm);
  const app = buildBackupdApp({ config, log, password });
  const tls = await unitTlsListen(config, "backupd", log);
  await listenUnitApp(app, config, config.ports.backupd, "backupd", log, defaultConnectionCaps, tls);
  return { close: () => app.close() } satisfies RunningService;
};
