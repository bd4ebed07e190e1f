// The uplink's real Installer: the unit's own update API (and backupd) over
// loopback, the same routes rtr7 safe-update drives from a workstation, so
// a remote job goes through every check a LAN update does: the update lock,
// the signed-release gate (release-gate.ts verifies the manifest again and
// compares each upload with it), the read-back of each slot (uploads.ts),
// and boot-control's testboot, commit and kexec reboot. Loopback never
// leaves the unit, so it is plain HTTP with the update API's password from
// /perm/gokr-pw.txt. Images go root, boot, mbr (job-runner.ts orders them),
// each streamed as it downloads; the API's reply (the SHA-256 of what the
// unit read back) must be the manifest's.
import http, { type IncomingMessage } from "node:http";
import { PassThrough, pipeline, type Readable } from "node:stream";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { Rtr7Error } from "../../lib/errors.js";
import { imageFiles, type ImageRole } from "../../lib/wire/images.js";
import type { ManifestImage } from "../../lib/wire/manifest.js";
import { isSlot } from "../unit.js";
import { passwordFileName } from "../update-api/password.js";
import type { BootState, ImageSink, Installer, SignedRelease } from "./installer.js";

export interface UpdateApiInstallerOptions {
  /** Where the update API and backupd answer: loopback on a unit, ADDR in process mode. */
  host: string;
  ports: { update: number; backupd: number };
  perm: string;
  /** When the unit (or process-mode boot) started (ms since the epoch). */
  bootedAtMs: number;
  /** diagd's first_error ("" when healthy). */
  health: () => Promise<string>;
}

function installError(what: string, why: string): Rtr7Error {
  return new Rtr7Error("RTR7_ERR_UPDATE_REQUEST", `${what}: ${why}`);
}

async function bodyText(response: IncomingMessage, limit = 64 * 1024): Promise<string> {
  let text = "";
  for await (const chunk of response) {
    text += (chunk as Buffer).toString("utf8");
    if (text.length > limit) break;
  }
  return text.slice(0, limit);
}

export function roleOf(name: string): ImageRole | undefined {
  return (Object.keys(imageFiles) as ImageRole[]).find((role) => imageFiles[role] === name);
}

export class UpdateApiInstaller implements Installer {
  constructor(private readonly options: UpdateApiInstallerOptions) {}

  private async authorization(): Promise<string> {
    const password = (await readFile(path.join(this.options.perm, passwordFileName), "utf8")).trim();
    return `Basic ${Buffer.from(`gokrazy:${password}`).toString("base64")}`;
  }

  /** One request; the body is a Buffer, a stream, or none. Resolves with the response. */
  private async request(
    method: "GET" | "PUT" | "POST",
    port: number,
    url: string,
    body?: Buffer | Readable,
    headers: Record<string, string> = {},
  ): Promise<IncomingMessage> {
    const authorization = await this.authorization();
    return new Promise((resolve, reject) => {
      const request = http.request({
        timeout: 10 * 60_000,
        method,
        host: this.options.host,
        port,
        path: url,
        headers: {
          authorization,
          host: `${this.options.host.includes(":") ? `[${this.options.host}]` : this.options.host}:${port}`,
          ...(Buffer.isBuffer(body) ? { "content-length": String(body.length) } : {}),
          ...headers,
        },
      });
      request.once("error", reject);
      request.once("response", resolve);
      if (body === undefined) request.end();
      else if (Buffer.isBuffer(body)) request.end(body);
      // A body that fails (an aborted download) destroys the request, so the API marks the slot incomplete.
      else pipeline(body, request, () => undefined);
    });
  }

  private async call(
    method: "GET" | "PUT" | "POST",
    url: string,
    body?: Buffer,
    headers?: Record<string, string>,
  ): Promise<string> {
    const response = await this.request(method, this.options.ports.update, url, body, headers);
    const text = await bodyText(response);
    if (response.statusCode !== 200)
      throw installError(`${method} ${url}`, `HTTP ${response.statusCode ?? "?"}: ${text.trim()}`);
    return text;
  }

  async bootState(): Promise<BootState> {
    const text = await this.call("GET", "/", undefined, { accept: "application/json" });
    const facts = JSON.parse(text) as {
      version?: unknown;
      running?: { slot?: unknown; trial?: unknown };
      committed?: unknown;
    };
    const slot = facts.running?.slot;
    const committed = facts.committed;
    if (!isSlot(slot) || !isSlot(committed) || typeof facts.running?.trial !== "boolean")
      throw installError("GET /", `no running and committed slot in ${text.slice(0, 200)}`);
    return {
      version: typeof facts.version === "string" ? facts.version : "unknown",
      slot,
      trial: facts.running.trial,
      committedSlot: committed,
      uptimeSeconds: Math.round((Date.now() - this.options.bootedAtMs) / 1000),
    };
  }

  health(): Promise<string> {
    return this.options.health();
  }

  async backup(): Promise<Readable> {
    const response = await this.request("GET", this.options.ports.backupd, "/backup.tar.gz");
    if (response.statusCode !== 200) {
      response.resume();
      throw installError("GET /backup.tar.gz", `HTTP ${response.statusCode ?? "?"}`);
    }
    return response;
  }

  async acceptManifest(release: SignedRelease): Promise<void> {
    await this.call("PUT", "/update/manifest", Buffer.from(JSON.stringify(release)), {
      "content-type": "application/json",
    });
  }

  openImage(image: ManifestImage): Promise<ImageSink> {
    const role = roleOf(image.name);
    if (role === undefined) return Promise.reject(installError(image.name, "not an image this unit takes"));
    const url = `/update/${role}`;
    const body = new PassThrough();
    const reply = this.request("PUT", this.options.ports.update, url, body, {
      "content-length": String(image.size),
      "content-type": "application/octet-stream",
    }).then(async (response) => ({
      status: response.statusCode ?? 0,
      text: (await bodyText(response)).trim(),
    }));
    // A refusal before the body is read must not be an unhandled rejection.
    reply.catch(() => undefined);
    return Promise.resolve({
      write: async (chunk: Buffer) => {
        if (!body.write(chunk)) await new Promise((resolve) => body.once("drain", resolve));
      },
      finish: async () => {
        body.end();
        const { status, text } = await reply;
        if (status !== 200) throw installError(`PUT ${url}`, `HTTP ${status}: ${text}`);
        if (text !== image.sha256)
          throw installError(
            `PUT ${url}`,
            `the unit read back SHA-256 ${text}, the manifest says ${image.sha256}`,
          );
      },
      abort: (reason: string) => {
        body.destroy(new Error(reason));
        return Promise.resolve();
      },
    });
  }

  async testboot(deadlineMs: number): Promise<void> {
    await this.call("POST", "/update/testboot", Buffer.from(`deadline=${Math.ceil(deadlineMs / 1000)}s`), {
      "content-type": "application/x-www-form-urlencoded",
    });
  }

  async reboot(): Promise<void> {
    await this.call("POST", "/reboot");
  }

  async commit(): Promise<void> {
    await this.call("POST", "/update/commit");
  }

  async rollback(): Promise<void> {
    // On trial with no testboot pending, a reboot runs the committed slot.
    await this.call("POST", "/reboot");
  }
}
