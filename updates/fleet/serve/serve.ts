// `rtr7 fleet serve`: the remote fleet's server, one long-running process
// over a data directory DATA:
//   DATA/tls/                 its TLS pair (server-certificate.ts), for HTTPS and the embedded broker
//   DATA/admin-credential.json the admin's credential (admin-credential.ts)
//   DATA/trusted-keys/*.pub   the fleet keys a published release must be signed by (server-keys.ts)
//   DATA/releases/            the release store (release-store.ts)
//   DATA/backups/HOST/        the units' last backups (backups.ts)
//   DATA/fleet.sqlite         rollouts (updates/fleet/store.ts)
//   DATA/jobs.sqlite          jobs and the inventory (job-store.ts)
//   DATA/units.sqlite         unit credentials (unit-credentials.ts)
// It serves HTTPS (fastify): releases (release-routes.ts), the units' backup
// uploads with their own credential, and the admin's JSON API: GET
// /api/units, POST /api/units/HOST/enroll, POST /api/rollouts, GET
// /api/rollouts/ID. The broker is whatever `broker` starts: the embedded one
// (broker.ts) or an external one at a URL; the server connects to it as its
// own user (job-channel.ts) and resumes the rollouts a kill interrupted.
import { chmod, mkdir } from "node:fs/promises";
import path from "node:path";
import Fastify, { type FastifyInstance } from "fastify";
import type { Readable } from "node:stream";
import { Rtr7Error } from "../../../lib/errors.js";
import { installErrorHandlers, sendJson } from "../../../lib/http-error.js";
import type { Logger } from "../../../lib/log.js";
import type { PublicKey } from "../../../lib/trust/minisign.js";
import { checkedHostname } from "../../../lib/wire/names.js";
import { FleetStore, type RolloutSettings } from "../store.js";
import { ensureAdminCredential } from "./admin-credential.js";
import { requireBasicAuth, sameSecret } from "./basic-auth.js";
import { BackupStore } from "./backups.js";
import { JobChannel } from "./job-channel.js";
import { JobStore } from "./job-store.js";
import { acceptRawBodies, registerReleaseRoutes } from "./release-routes.js";
import { ReleaseStore } from "./release-store.js";
import { ensureServerCertificate } from "./server-certificate.js";
import { addServerKey, serverKeys } from "./server-keys.js";
import type { ServerAccess } from "./server-client.js";
import { ServerRollouts } from "./server-rollouts.js";
import { UnitCredentials } from "./unit-credentials.js";

/** A broker the server uses: where it is and how the server's own client reaches it. */
export interface Broker {
  /** What units are told (mqtts://HOST:PORT). */
  url: string;
  /** What the server's client connects to (the same, or loopback for the embedded one). */
  connectUrl: string;
  /** TLS options for the server's client (MQTT.js). */
  mqttOptions?: Record<string, unknown>;
  close(): Promise<void>;
}

export interface BrokerContext {
  dataDir: string;
  tls: { key: string; cert: string; fingerprint256: string };
  credentials: UnitCredentials;
  log: Logger;
}

export interface FleetServeOptions {
  dataDir: string;
  host: string;
  port: number;
  /** https://HOST:PORT units reach this server at; default from host and port. */
  publicUrl?: string;
  /** Starts (or names) the broker once the credentials and TLS pair exist. */
  broker: (context: BrokerContext) => Promise<Broker>;
  log: Logger;
  /** Backups kept per unit; default 5. */
  keepBackups?: number;
  /** Nothing heard from a unit for this long ends its job TIMED_OUT; default 10 min. */
  jobTimeoutMs?: number;
  /** Public key files (minisign's) to add to DATA/trusted-keys/ first. */
  trustKeys?: string[];
}

export interface FleetServer {
  url: string;
  access: ServerAccess;
  broker: Broker;
  releases: ReleaseStore;
  jobs: JobStore;
  fleet: FleetStore;
  rollouts: ServerRollouts;
  app: FastifyInstance;
  close(): Promise<void>;
}

type RolloutBody = Partial<RolloutSettings> & { version?: string };

function rolloutSettings(body: RolloutBody): RolloutSettings {
  const count = (value: unknown, fallback: number, min: number): number => {
    if (value === undefined) return fallback;
    if (!Number.isSafeInteger(value) || (value as number) < min)
      throw new Rtr7Error(
        "RTR7_ERR_USAGE",
        `rollout: ${JSON.stringify(value)} is not a whole number ≥ ${min}`,
      );
    return value as number;
  };
  if (body.maxFailureRate !== undefined && !(body.maxFailureRate >= 0 && body.maxFailureRate <= 1))
    throw new Rtr7Error("RTR7_ERR_USAGE", "rollout: maxFailureRate must be between 0 and 1");
  return {
    select: typeof body.select === "string" ? body.select : "*",
    canary: count(body.canary, 1, 0),
    parallel: count(body.parallel, 4, 1),
    maxFailures: count(body.maxFailures, 0, 0),
    ...(body.maxFailureRate !== undefined ? { maxFailureRate: body.maxFailureRate } : {}),
    soakMs: count(body.soakMs, 120_000, 0),
    healthTimeoutMs: count(body.healthTimeoutMs, 120_000, 0),
    kexec: body.kexec !== false,
    allowDowngrade: body.allowDowngrade === true,
  };
}

export async function startFleetServer(options: FleetServeOptions): Promise<FleetServer> {
  const { dataDir, log } = options;
  // It holds backups (with the units' passwords) and credentials.
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await chmod(dataDir, 0o700);
  let publicUrl = options.publicUrl?.replace(/\/+$/, "");
  const tls = await ensureServerCertificate(
    dataDir,
    publicUrl ? new URL(publicUrl).hostname : options.host.replace(/^0\.0\.0\.0$|^::$/, "localhost"),
  );
  if (tls.replaced)
    log.warn(
      { subsystem: "fleet-serve" },
      `made a new TLS pair (${tls.replaced}): enrolled units must be enrolled again`,
    );
  const credentials = new UnitCredentials(path.join(dataDir, "units.sqlite"));
  for (const file of options.trustKeys ?? []) await addServerKey(dataDir, file);
  let trusted: readonly PublicKey[] = [];
  const loadKeys = async (): Promise<void> => {
    trusted = await serverKeys(dataDir, log);
  };
  await loadKeys();
  const releases = new ReleaseStore({ dataDir, trustedKeys: () => trusted });
  const fleet = FleetStore.open(path.join(dataDir, "fleet.sqlite"));
  const jobs = JobStore.open(path.join(dataDir, "jobs.sqlite"));
  const backups = new BackupStore(dataDir, options.keepBackups ?? 5);
  const broker = await options.broker({ dataDir, tls, credentials, log });
  const server = await credentials.serverCredential();
  const channel = await JobChannel.connect({
    brokerUrl: broker.connectUrl,
    username: server.username,
    password: server.password,
    store: jobs,
    log,
    ...(broker.mqttOptions ? { mqttOptions: broker.mqttOptions } : {}),
  });
  const rollouts = new ServerRollouts({
    fleet,
    jobs,
    channel,
    releases,
    publicUrl: () => publicUrl ?? "",
    tlsFingerprint: tls.fingerprint256,
    jobTimeoutMs: options.jobTimeoutMs ?? 600_000,
    log,
  });

  const app = Fastify({ https: { key: tls.key, cert: tls.cert }, bodyLimit: 1024 * 1024 });
  installErrorHandlers(app, { log });
  acceptRawBodies(app);
  // The admin's credential is made once the server's URL (its port) is known.
  const held: { access?: ServerAccess } = {};
  const admin = requireBasicAuth(
    "rtr7 fleet admin",
    (given) =>
      held.access !== undefined &&
      given.username === held.access.credentials.username &&
      sameSecret(given.password, held.access.credentials.password),
  );
  registerReleaseRoutes(app, { store: releases, admin, log });

  app.put<{ Params: { host: string } }>(
    "/units/:host/backups",
    {
      bodyLimit: 1024 ** 3,
      onRequest: requireBasicAuth("rtr7 unit", async (given, request) => {
        const host = (request.params as { host: string }).host;
        return given.username === host && (await credentials.checkUnit(host, given.password));
      }),
    },
    async (request, reply) => {
      const stored = await backups.store(checkedHostname(request.params.host), request.body as Readable);
      log.info({ subsystem: "fleet-serve", peer: stored.hostname, bytes: stored.bytes }, "backup stored");
      return sendJson(reply, { bytes: stored.bytes });
    },
  );
  app.get("/api/units", { onRequest: admin }, (_request, reply) =>
    sendJson(reply, { units: jobs.inventory() }),
  );
  app.post<{ Params: { host: string } }>(
    "/api/units/:host/enroll",
    { onRequest: admin },
    async (request, reply) => {
      const hostname = checkedHostname(request.params.host);
      const password = await credentials.enrollUnit(hostname);
      log.info({ subsystem: "fleet-serve", peer: hostname }, `enrolled ${hostname}`);
      return sendJson(reply, {
        server: broker.url,
        username: hostname,
        password,
        serverFingerprint: tls.fingerprint256,
      });
    },
  );
  app.post<{ Body: RolloutBody }>("/api/rollouts", { onRequest: admin }, async (request, reply) => {
    const body = request.body ?? {};
    if (typeof body.version !== "string")
      throw new Rtr7Error("RTR7_ERR_USAGE", "rollout: name the release's version");
    await loadKeys();
    const id = await rollouts.start({ version: body.version, settings: rolloutSettings(body) });
    return sendJson(reply, { id, units: fleet.units(id).map((unit) => unit.hostname) });
  });
  app.get<{ Params: { id: string } }>("/api/rollouts/:id", { onRequest: admin }, (request, reply) =>
    sendJson(reply, {
      rollout: fleet.requireRollout(request.params.id),
      units: fleet.units(request.params.id),
    }),
  );

  await app.listen({ host: options.host, port: options.port });
  const port = (app.server.address() as { port: number }).port;
  const url = `https://${options.host.includes(":") ? `[${options.host}]` : options.host}:${port}`;
  publicUrl ??= url;
  const access = await ensureAdminCredential(dataDir, publicUrl, tls.fingerprint256);
  held.access = access;
  rollouts.resumeInterrupted();
  log.info(
    { subsystem: "fleet-serve", url, broker: broker.url },
    `rtr7 fleet serve on ${url}, broker ${broker.url}`,
  );
  return {
    url,
    access,
    broker,
    releases,
    jobs,
    fleet,
    rollouts,
    app,
    async close() {
      rollouts.stop();
      await app.close();
      await channel.close();
      await broker.close();
      jobs.close();
      fleet.close();
    },
  };
}

/** Runs the server until SIGINT or SIGTERM, then closes it (the rollouts stay recorded as running, to resume). */
export async function serveUntilSignal(options: FleetServeOptions): Promise<void> {
  const server = await startFleetServer(options);
  await new Promise<void>((resolve) => {
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
  });
  options.log.info({ subsystem: "fleet-serve" }, "stopping");
  await server.close();
}
