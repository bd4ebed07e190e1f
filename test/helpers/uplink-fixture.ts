// What the uplink's tests (test/unit/uplink.test.ts) run against, all on
// loopback: a real aedes broker over node:tls with a certificate made by
// lib/tls/unit-certificate.ts (units authenticated, held to their own
// topics by lib/wire/jobs.ts's rule), a small HTTPS file server for
// releases (Range, cuts on demand, bytes served counted, backup PUTs), a
// monitor client that records every message, signed releases, and a fake
// installer that records what it is asked to do.
import { createHash, randomBytes } from "node:crypto";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { PassThrough, type Readable } from "node:stream";
import tls from "node:tls";
import { Aedes } from "aedes";
import mqtt, { type MqttClient } from "mqtt";
import { makeUnitCertificate, type UnitCertificate } from "../../lib/tls/unit-certificate.js";
import { generateSigningKey, type SigningKey } from "../../lib/trust/minisign.js";
import { signManifest } from "../../lib/trust/release-signature.js";
import { unitMayPublish, unitMaySubscribe, type JobDocument } from "../../lib/wire/jobs.js";
import type { BootState, ImageSink, Installer, SignedRelease } from "../../router/uplink/installer.js";
import type { ManifestImage } from "../../lib/wire/manifest.js";

export const serverUser = { username: "fleet-server", password: "server-secret" };

export interface TestBroker {
  port: number;
  cert: UnitCertificate;
  broker: Aedes;
  /** TCP connections the broker's port accepted (a refused client may end its handshake before the server's side does). */
  handshakes: number;
  /** CONNECT packets that reached the broker (its authenticate hook). */
  connects: string[];
  passwords: Map<string, string>;
  close(): Promise<void>;
}

export async function startBroker(cert: UnitCertificate): Promise<TestBroker> {
  const passwords = new Map<string, string>([[serverUser.username, serverUser.password]]);
  const connects: string[] = [];
  const broker = await Aedes.createBroker({
    authenticate: (client, username, password, done) => {
      connects.push(username ?? "");
      const ok =
        username !== undefined && passwords.get(username) === password?.toString() && client.id === username;
      if (ok) done(null, true);
      else done(Object.assign(new Error("bad credential"), { returnCode: 4 }), false);
    },
    authorizePublish: (client, packet, callback) => {
      const user = client?.id ?? serverUser.username;
      if (user === serverUser.username || unitMayPublish(user, packet.topic)) callback(null);
      else callback(new Error(`${user} may not publish ${packet.topic}`));
    },
    authorizeSubscribe: (client, subscription, callback) => {
      if (client.id === serverUser.username || unitMaySubscribe(client.id, subscription.topic))
        callback(null, subscription);
      else callback(new Error(`${client.id} may not subscribe ${subscription.topic}`));
    },
  });
  const server = tls.createServer({ key: cert.key, cert: cert.cert }, (socket) => broker.handle(socket));
  const result: TestBroker = {
    port: 0,
    cert,
    broker,
    handshakes: 0,
    connects,
    passwords,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        broker.close(() => undefined);
      }),
  };
  server.on("connection", () => (result.handshakes += 1));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  result.port = (server.address() as AddressInfo).port;
  return result;
}

export interface Message {
  topic: string;
  payload: string;
  retain: boolean;
}

/** A client with the server's credential that records every message under rtr7/units/. */
export class Monitor {
  readonly messages: Message[] = [];
  private constructor(readonly client: MqttClient) {}

  static async connect(port: number): Promise<Monitor> {
    const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, {
      rejectUnauthorized: false,
      protocolVersion: 4,
      clientId: serverUser.username,
      ...serverUser,
      reconnectPeriod: 0,
    });
    const monitor = new Monitor(client);
    client.on("message", (topic, payload, packet) =>
      monitor.messages.push({ topic, payload: payload.toString("utf8"), retain: packet.retain }),
    );
    await client.subscribeAsync("rtr7/units/#", { qos: 1 });
    return monitor;
  }

  /** Job updates of `hostname`'s job `jobId`, parsed. */
  updates(hostname: string, jobId: string): Record<string, unknown>[] {
    return this.messages
      .filter((message) => message.topic === `rtr7/units/${hostname}/jobs/${jobId}/update`)
      .map((message) => JSON.parse(message.payload) as Record<string, unknown>);
  }

  async waitFor<T>(what: string, probe: () => T | undefined | false, timeoutMs = 5000): Promise<T> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const value = probe();
      if (value !== undefined && value !== false) return value;
      if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  async publishJob(hostname: string, payload: string | JobDocument): Promise<void> {
    await this.client.publishAsync(
      `rtr7/units/${hostname}/jobs/next`,
      typeof payload === "string" ? payload : JSON.stringify(payload),
      { qos: 1, retain: true },
    );
  }

  async close(): Promise<void> {
    await this.client.endAsync(true);
  }
}

export interface Release {
  name: string;
  version: string;
  files: Map<string, Buffer>;
  images: ManifestImage[];
}

/** A fleet release of two random images, signed by `key` (unsigned without one). */
export function makeRelease(
  name: string,
  version: string,
  key: SigningKey | undefined,
  rootSize = 1024 * 1024,
): Release {
  const images = new Map<string, Buffer>([
    ["root.img", randomBytes(rootSize)],
    ["boot.img", randomBytes(128 * 1024)],
  ]);
  const entries = [...images].map(([image, bytes]) => ({
    name: image,
    size: bytes.length,
    sha256: createHash("sha256").update(bytes).digest("hex"),
  }));
  const manifest = Buffer.from(
    JSON.stringify({ version, anyUnit: true, buildTime: new Date().toISOString(), images: entries }, null, 2),
  );
  const files = new Map(images);
  files.set("manifest.json", manifest);
  if (key) files.set("manifest.json.minisig", Buffer.from(signManifest(manifest, key, Date.now())));
  return { name, version, files, images: entries };
}

export { generateSigningKey };

export interface FileServer {
  port: number;
  cert: UnitCertificate;
  releases: Map<string, Release>;
  /** Bytes of file bodies served, by URL path. */
  served: Map<string, number>;
  /** Range headers seen, by URL path. */
  ranges: Map<string, string[]>;
  /** The first GET of a path in here sends only this many bytes, then the connection is cut. */
  cuts: Map<string, number>;
  /** Paths whose server answers a Range request with the whole file (200), as a server without Range does. */
  ignoreRange: Set<string>;
  /** Backups received: path → bytes, with the authorization header seen. */
  backups: Map<string, { bytes: number; authorization: string | undefined }>;
  close(): Promise<void>;
}

const chunkSize = 64 * 1024;

export async function startFileServer(cert: UnitCertificate): Promise<FileServer> {
  const state: FileServer = {
    port: 0,
    cert,
    releases: new Map(),
    served: new Map(),
    ranges: new Map(),
    cuts: new Map(),
    ignoreRange: new Set(),
    backups: new Map(),
    close: () => Promise.resolve(),
  };
  const server = https.createServer({ key: cert.key, cert: cert.cert }, (request, response) => {
    const url = new URL(request.url ?? "/", "https://x");
    if (request.method === "PUT" && url.pathname.startsWith("/backups/")) {
      let bytes = 0;
      request.on("data", (chunk: Buffer) => (bytes += chunk.length));
      request.on("end", () => {
        state.backups.set(url.pathname, { bytes, authorization: request.headers.authorization });
        response.writeHead(204).end();
      });
      return;
    }
    const match = /^\/releases\/([^/]+)\/([^/]+)$/.exec(url.pathname);
    const body = match ? state.releases.get(match[1] ?? "")?.files.get(match[2] ?? "") : undefined;
    if (request.method !== "GET" || body === undefined) {
      response.writeHead(404).end();
      return;
    }
    let start = 0;
    const range = request.headers.range;
    if (range !== undefined && state.ignoreRange.has(url.pathname)) {
      state.ranges.set(url.pathname, [...(state.ranges.get(url.pathname) ?? []), range]);
      response.writeHead(200, { "content-length": body.length });
    } else if (range !== undefined) {
      state.ranges.set(url.pathname, [...(state.ranges.get(url.pathname) ?? []), range]);
      start = Number(/^bytes=(\d+)-$/.exec(range)?.[1] ?? 0);
      response.writeHead(206, {
        "content-length": body.length - start,
        "content-range": `bytes ${start}-${body.length - 1}/${body.length}`,
      });
    } else response.writeHead(200, { "content-length": body.length });
    const cut = state.cuts.get(url.pathname);
    state.cuts.delete(url.pathname);
    const end = cut === undefined ? body.length : Math.min(body.length, start + cut);
    let offset = start;
    const pump = (): void => {
      while (offset < end) {
        const piece = body.subarray(offset, Math.min(end, offset + chunkSize));
        offset += piece.length;
        state.served.set(url.pathname, (state.served.get(url.pathname) ?? 0) + piece.length);
        if (offset === end && cut !== undefined) {
          response.write(piece, () => response.socket?.destroy());
          return;
        }
        if (!response.write(piece)) {
          response.once("drain", pump);
          return;
        }
      }
      response.end();
    };
    pump();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  state.port = (server.address() as AddressInfo).port;
  state.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return state;
}

export { chunkSize };

/** An installer that records each call; images go into memory. */
export class FakeInstaller implements Installer {
  readonly calls: string[] = [];
  readonly images = new Map<string, Buffer>();
  healthValue = "";
  manifest: SignedRelease | undefined;
  constructor(public boot: BootState) {}

  /** bootState() fails this many times first (the update API not up yet at boot). */
  bootStateFailures = 0;
  bootState(): Promise<BootState> {
    if (this.bootStateFailures > 0) {
      this.bootStateFailures -= 1;
      return Promise.reject(new Error("connect ECONNREFUSED 127.0.0.1:80"));
    }
    return Promise.resolve({ ...this.boot });
  }
  health(): Promise<string> {
    return Promise.resolve(this.healthValue);
  }
  backup(): Promise<Readable> {
    this.calls.push("backup");
    const stream = new PassThrough();
    stream.end(randomBytes(4096));
    return Promise.resolve(stream);
  }
  acceptManifest(release: SignedRelease): Promise<void> {
    this.calls.push("acceptManifest");
    this.manifest = release;
    return Promise.resolve();
  }
  openImage(image: ManifestImage): Promise<ImageSink> {
    this.calls.push(`openImage ${image.name}`);
    const chunks: Buffer[] = [];
    return Promise.resolve({
      write: (chunk: Buffer) => {
        chunks.push(chunk);
        return Promise.resolve();
      },
      finish: () => {
        this.calls.push(`finish ${image.name}`);
        this.images.set(image.name, Buffer.concat(chunks));
        return Promise.resolve();
      },
      abort: (reason: string) => {
        this.calls.push(`abort ${image.name}: ${reason}`);
        return Promise.resolve();
      },
    });
  }
  testboot(deadlineMs: number): Promise<void> {
    this.calls.push(`testboot ${deadlineMs}`);
    return Promise.resolve();
  }
  reboot(): Promise<void> {
    this.calls.push("reboot");
    return Promise.resolve();
  }
  commit(): Promise<void> {
    this.calls.push("commit");
    return Promise.resolve();
  }
  rollback(): Promise<void> {
    this.calls.push("rollback");
    return Promise.resolve();
  }
  /** The calls that write something (everything but backup). */
  writes(): string[] {
    return this.calls.filter((call) => call !== "backup");
  }
}

export { makeUnitCertificate };
