// One simulated unit for `npm run bench`'s fleet rollouts (lab/sim-fleet.ts
// hosts hundreds of them in one process): the three HTTP services of a real
// unit on its own loopback address, speaking the same wire protocol, with
// the disk and the boot loader replaced by a few fields.
//   update API (80)   basic auth (user gokrazy); GET /update/features (the
//                     real list, gzip included); PUT /update/root|boot|
//                     bootonly|mbr streamed (inflated when gzip'd) and
//                     answered with the SHA-256 or CRC-32 hex, as
//                     lib/disk/hash.ts formats them; POST /update/testboot
//                     (the real form parser), switch, commit and /reboot
//                     (the real form parser, kexec=off refused while a trial
//                     is pending, as router/boot/boot-control.ts does); one
//                     update step at a time (409); errors in rtr7's one JSON
//                     body (lib/http-error.ts) with the catalogue's status.
//   diagd (7733)      GET /health.json: a HealthReport of this unit's state.
//   backupd (8077)    GET /backup.tar.gz (basic auth): one shared archive.
// A root upload fills the inactive slot; the version it then reports is
// looked up by the image's SHA-256 in the releases' manifests. A reboot
// closes all three listeners and destroys their open sockets (connection
// refused, as from a rebooting unit), and after `downMs` listens again on
// the trial slot (after testboot) or the committed one; a trial not
// committed within its deadline falls back by itself, as a real unit does.
// node:http directly, not fastify: a fastify instance per service per unit
// costs far more memory, and the sim must not be the bottleneck of a bench
// with 1500 listeners in one process.
import http, { type IncomingMessage, type ServerResponse } from "node:http";
import { Rtr7Error, describeError } from "../lib/errors.js";
import type { Logger } from "../lib/log.js";
import type { HealthReport } from "../lib/wire/health.js";
import {
  updateFeatures,
  updateHashHeader,
  uploadTargets,
  type UploadTarget,
} from "../lib/wire/update-protocol.js";
import { basicAuthChecker, basicRealm } from "../router/update-api/basic-auth.js";
import { parseRebootForm, parseTestbootForm } from "../router/update-api/reboot-form.js";
import { requestedHashAlgorithm } from "../router/update-api/write-target.js";
import { readForm, receiveBody, requireMethod, sendError, sendJson, sendText } from "./sim-fleet-http.js";

/** A unit's features but `signed`: the simulated units hold no keys and have no /update/trust or /update/manifest. */
const simFeaturesText = updateFeatures
  .filter((feature) => feature !== "signed")
  .map((feature) => `${feature},`)
  .join("");

type Slot = "a" | "b";
const other = (slot: Slot): Slot => (slot === "a" ? "b" : "a");

/** What every unit of a fleet shares. */
export interface SimShared {
  ports: { update: number; diagd: number; backupd: number };
  /** SHA-256 of a release's root.img → the version it reports. */
  versionBySha: ReadonlyMap<string, string>;
  backup: Buffer;
  downMs: number;
  /** Whether this unit reports `version` as unhealthy. */
  unhealthy: (hostname: string, version: string) => boolean;
  log?: Logger;
  stats: SimStats;
}

export interface SimStats {
  requests: number;
  uploads: number;
  uploadBytes: number;
  reboots: number;
  fallbacks: number;
}

interface SlotState {
  version: string;
  /** False while an upload writes it, or after one failed. */
  bootable: boolean;
}

const defaultTrialDeadlineMs = 10 * 60 * 1000;

export class SimUnit {
  private readonly slots: Record<Slot, SlotState>;
  private committed: Slot = "a";
  private running: Slot = "a";
  private trial = false;
  private pending: { slot: Slot; deadlineMs: number } | undefined;
  private bootedAt = Date.now();
  private busy: string | undefined;
  private up = false;
  private stopped = false;
  private trialTimer: NodeJS.Timeout | undefined;
  private downTimer: NodeJS.Timeout | undefined;
  private readonly servers: http.Server[];
  private readonly authorized: (header: string | undefined) => boolean;

  constructor(
    readonly hostname: string,
    readonly address: string,
    version: string,
    password: string,
    private readonly shared: SimShared,
  ) {
    this.slots = { a: { version, bootable: true }, b: { version, bootable: true } };
    this.authorized = basicAuthChecker(password);
    const update = http.createServer((request, response) => this.serve(request, response, false));
    // "Expect: 100-continue": invited only when the body is read, so a refusal costs no body byte.
    update.on("checkContinue", (request: IncomingMessage, response: ServerResponse) =>
      this.serve(request, response, true),
    );
    const diagd = http.createServer((request, response) => this.serveDiagd(request, response));
    const backupd = http.createServer((request, response) => this.serveBackupd(request, response));
    this.servers = [update, diagd, backupd];
  }

  /** Listens on all three ports. */
  async start(): Promise<void> {
    const { ports } = this.shared;
    const order = [ports.update, ports.diagd, ports.backupd];
    await Promise.all(
      this.servers.map(
        (server, index) =>
          new Promise<void>((resolve, reject) => {
            server.once("error", reject);
            server.listen({ host: this.address, port: order[index], backlog: 64 }, () => {
              server.off("error", reject);
              resolve();
            });
          }),
      ),
    );
    this.up = true;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.trialTimer);
    clearTimeout(this.downTimer);
    await this.closeServers();
  }

  /** What the unit runs now, for the bench's final check. */
  state(): { version: string; slot: Slot; trial: boolean; committed: Slot; up: boolean } {
    const version = this.slots[this.running].version;
    return { version, slot: this.running, trial: this.trial, committed: this.committed, up: this.up };
  }

  health(): HealthReport {
    const version = this.slots[this.running].version;
    const bad = this.shared.unhealthy(this.hostname, version);
    const check = {
      name: "sim",
      status: bad ? ("failed" as const) : ("ok" as const),
      detail: bad ? `the sim marks ${version} unhealthy` : "simulated",
      ms: 0,
    };
    return {
      first_error: bad ? `${check.name}: ${check.detail}` : "",
      hostname: this.hostname,
      version,
      slot: this.running,
      trial: this.trial,
      uptime_seconds: Math.max(0, Math.floor((Date.now() - this.bootedAt) / 1000)),
      checks: [check],
    };
  }

  private closeServers(): Promise<void> {
    return Promise.all(
      this.servers.map(
        (server) =>
          new Promise<void>((resolve) => {
            if (!server.listening) return resolve();
            server.close(() => resolve());
            server.closeAllConnections();
          }),
      ),
    ).then(() => undefined);
  }

  /** Down for downMs (connections refused), then up on the trial slot or the committed one. */
  private reboot(): void {
    if (this.stopped) return;
    this.shared.stats.reboots += 1;
    this.up = false;
    clearTimeout(this.trialTimer);
    const downAt = Date.now();
    void this.closeServers().then(() => {
      if (this.stopped) return;
      const wait = Math.max(0, this.shared.downMs - (Date.now() - downAt));
      this.downTimer = setTimeout(() => void this.boot(), wait);
    });
  }

  private async boot(): Promise<void> {
    const pending = this.pending;
    this.pending = undefined;
    this.busy = undefined;
    this.running = pending ? pending.slot : this.committed;
    this.trial = pending !== undefined;
    this.bootedAt = Date.now();
    if (pending) {
      const slot = pending.slot;
      this.trialTimer = setTimeout(() => {
        if (!this.trial || this.running !== slot) return;
        this.shared.stats.fallbacks += 1;
        this.shared.log?.info({ unit: this.hostname, slot }, "trial not committed in time: falling back");
        this.reboot();
      }, pending.deadlineMs);
      this.trialTimer.unref();
    }
    try {
      await this.start();
    } catch (error) {
      this.shared.log?.error(
        { unit: this.hostname, err: error },
        `listening again failed: ${describeError(error)}`,
      );
    }
  }

  // --- the update API ---

  private serve(request: IncomingMessage, response: ServerResponse, expectContinue: boolean): void {
    this.shared.stats.requests += 1;
    this.route(request, response, expectContinue).catch((error: unknown) =>
      this.fail(request, response, error),
    );
  }

  private async route(request: IncomingMessage, response: ServerResponse, expectContinue: boolean) {
    const [pathname = "", query = ""] = (request.url ?? "").split("?", 2);
    const line = `${request.method} ${pathname}`;
    if (!this.authorized(request.headers.authorization)) {
      response.setHeader("www-authenticate", `Basic realm="${basicRealm}"`);
      throw new Rtr7Error(
        "RTR7_ERR_UPDATE_AUTH",
        `${line}: ${request.headers.authorization === undefined ? "no credentials" : "wrong credentials"} (HTTP Basic, user gokrazy)`,
      );
    }
    const invite = () => {
      if (expectContinue) response.writeContinue();
      expectContinue = false;
    };
    const json = /\bapplication\/json\b/i.test(request.headers.accept ?? "");
    if (pathname === "/update/features") {
      if (json) return sendJson(response, 200, { features: simFeaturesText, EEPROM: null });
      return sendText(response, 200, simFeaturesText);
    }
    const target = pathname.startsWith("/update/") ? pathname.slice("/update/".length) : "";
    if ((uploadTargets as readonly string[]).includes(target)) {
      requireMethod(request, response, "PUT", line);
      const hash = await this.locked(line, () => this.upload(request, target as UploadTarget, invite));
      return sendText(response, 200, hash);
    }
    const action = { "/update/switch": "switch", "/update/testboot": "testboot", "/update/commit": "commit" }[
      pathname
    ] as "switch" | "testboot" | "commit" | undefined;
    if (action) {
      requireMethod(request, response, "POST", line);
      const form = await readForm(request, query, invite, line);
      const deadlineMs = action === "testboot" ? parseTestbootForm(form.query, form.body) : undefined;
      const { slot, message } = await this.locked(line, () => Promise.resolve(this.act(action, deadlineMs)));
      if (json) return sendJson(response, 200, { ok: true, slot, message });
      return sendText(response, 200, `${message}\n`);
    }
    if (pathname === "/reboot") {
      requireMethod(request, response, "POST", line);
      const form = await readForm(request, query, invite, line);
      const { kexec } = parseRebootForm(form.query, form.body);
      this.acquire(line);
      if (this.pending && !kexec) {
        this.busy = undefined;
        throw new Rtr7Error(
          "RTR7_ERR_UPDATE_REQUEST",
          `reboot with kexec=off: slot ${this.pending.slot} is waiting for a one-shot trial boot, which needs kexec ` +
            `(the boot loader only ever boots the committed slot)`,
        );
      }
      // The reply goes out first; the lock stays held until the unit is down.
      response.once("close", () => this.reboot());
      return sendText(response, 200, `rebooting (kexec ${kexec ? "on" : "off"})\n`);
    }
    if (pathname === "/" && request.method === "GET")
      return sendJson(response, 200, { ...this.state(), hostname: this.hostname, busy: this.busy });
    throw new Rtr7Error("RTR7_ERR_HTTP_NOT_FOUND", `${line}: no such file or endpoint`);
  }

  private acquire(what: string): void {
    if (this.busy !== undefined)
      throw new Rtr7Error("RTR7_ERR_UPDATE_BUSY", `${what}: refused, ${this.busy} is in progress`);
    this.busy = what;
  }

  private async locked<T>(what: string, work: () => Promise<T>): Promise<T> {
    this.acquire(what);
    try {
      return await work();
    } finally {
      this.busy = undefined;
    }
  }

  private act(action: "switch" | "testboot" | "commit", deadlineMs: number | undefined) {
    if (action === "commit") {
      const slot = this.running;
      this.committed = slot;
      this.trial = false;
      this.pending = undefined;
      clearTimeout(this.trialTimer);
      return { slot, message: `slot ${slot} is committed` };
    }
    const slot = other(this.running);
    if (!this.slots[slot].bootable)
      throw new Rtr7Error("RTR7_ERR_SLOT_INVALID", `slot ${slot} is not bootable: its last upload failed`);
    if (action === "switch") {
      this.committed = slot;
      this.pending = undefined;
      return { slot, message: `slot ${slot} is now the default: the next boot runs it` };
    }
    const ms = deadlineMs ?? defaultTrialDeadlineMs;
    this.pending = { slot, deadlineMs: ms };
    return {
      slot,
      message: `the next reboot runs slot ${slot} once, on trial; commit it within ${Math.round(ms / 1000)} s once it is healthy`,
    };
  }

  /** Streams the body, hashing it; a root image names the inactive slot's new version. */
  private async upload(request: IncomingMessage, target: UploadTarget, invite: () => void): Promise<string> {
    const algorithm = requestedHashAlgorithm(request.headers[updateHashHeader]);
    const encoding = String(request.headers["content-encoding"] ?? "")
      .trim()
      .toLowerCase();
    if (!["", "identity", "gzip", "x-gzip"].includes(encoding))
      throw new Rtr7Error("RTR7_ERR_UPDATE_REQUEST", `PUT /update/${target}: Content-Encoding not supported`);
    const slot = other(this.running);
    if (target === "root") this.slots[slot].bootable = false;
    invite();
    const { bytes, sha256, hex } = await receiveBody(
      request,
      encoding !== "" && encoding !== "identity",
      algorithm,
      `PUT /update/${target}`,
    );
    this.shared.stats.uploads += 1;
    this.shared.stats.uploadBytes += bytes;
    if (target === "root")
      this.slots[slot] = {
        version: this.shared.versionBySha.get(sha256) ?? `unknown-${sha256.slice(0, 12)}`,
        bootable: true,
      };
    return hex;
  }

  private fail(request: IncomingMessage, response: ServerResponse, thrown: unknown): void {
    sendError(request, response, thrown);
  }

  // --- diagd and backupd ---

  private serveDiagd(request: IncomingMessage, response: ServerResponse): void {
    this.shared.stats.requests += 1;
    const pathname = (request.url ?? "").split("?")[0];
    if (pathname === "/health.json" && request.method === "GET") {
      response.setHeader("cache-control", "no-store");
      return sendJson(response, 200, this.health(), "application/json; charset=utf-8");
    }
    this.fail(
      request,
      response,
      new Rtr7Error("RTR7_ERR_HTTP_NOT_FOUND", `${request.method} ${pathname}: no such file or endpoint`),
    );
  }

  private serveBackupd(request: IncomingMessage, response: ServerResponse): void {
    this.shared.stats.requests += 1;
    const pathname = (request.url ?? "").split("?")[0];
    if (!this.authorized(request.headers.authorization)) {
      response.setHeader("www-authenticate", `Basic realm="${basicRealm}"`);
      return this.fail(
        request,
        response,
        new Rtr7Error("RTR7_ERR_UPDATE_AUTH", `${request.method} ${pathname}: wrong or no credentials`),
      );
    }
    if (pathname === "/backup.tar.gz" && request.method === "GET") {
      response.writeHead(200, {
        "content-type": "application/gzip",
        "content-length": this.shared.backup.length,
      });
      response.end(this.shared.backup);
      return;
    }
    this.fail(
      request,
      response,
      new Rtr7Error("RTR7_ERR_HTTP_NOT_FOUND", `${request.method} ${pathname}: no such file or endpoint`),
    );
  }
}
