// The uplink on a real suite: a process-mode unit (`rtr7 lab unit`, on a
// loopback address, no namespace) enrolled in an aedes broker over TLS takes
// an update job for a signed fleet release served over HTTPS, and updates
// itself through its own update API (update-api-installer.ts): manifest,
// root, boot and mbr streamed into the inactive slot, testboot, the lab's
// kexec reboot, healthy, soak, commit, SUCCEEDED, running v2 committed;
// then a v3 whose diagd checks a closed port: not healthy in time, rolled
// back by a reboot into v2, FAILED "fell back to uplink-v2: ...".
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { missingPrerequisite, start, type Started } from "../../lab/processes.js";
import { formatPublicKey, generateSigningKey } from "../../lib/trust/minisign.js";
import { signManifest } from "../../lib/trust/release-signature.js";
import type { JobDocument } from "../../lib/wire/jobs.js";
import { cliEntry } from "../helpers/paths.js";
import { removeUnitImages, unitImages } from "../helpers/unit-images.js";
import {
  makeUnitCertificate,
  Monitor,
  startBroker,
  startFileServer,
  type FileServer,
  type TestBroker,
} from "../helpers/uplink-fixture.js";

const hostname = "uplink-lab";
const address = "127.0.0.77";
const skip = await missingPrerequisite(
  ["mksquashfs", "unsquashfs", "mkfs.fat", "mcopy", "syslinux"],
  "the unit's services listen on port 80",
);

let broker: TestBroker;
let files: FileServer;
let monitor: Monitor;
let unit: Started | undefined;
let dir: string;

before(async () => {
  if (skip) return;
  broker = await startBroker(await makeUnitCertificate("fleet.test"));
  files = await startFileServer(await makeUnitCertificate("releases.test"));
  monitor = await Monitor.connect(broker.port);
});

after(async () => {
  if (skip) return;
  await unit?.stop(15_000);
  await monitor.close();
  await files.close();
  await broker.close();
  await removeUnitImages();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function signed(images: string, key: ReturnType<typeof generateSigningKey>, at: number): Promise<void> {
  const manifest = await readFile(path.join(images, "manifest.json"));
  await writeFile(path.join(images, "manifest.json.minisig"), signManifest(manifest, key, at));
}

test(
  "a process-mode unit takes a signed release from a job and runs it committed; an unhealthy one falls back, FAILED",
  { skip, timeout: 300_000 },
  async () => {
    const key = generateSigningKey();
    const now = Date.now();
    dir = await mkdtemp(path.join(tmpdir(), "rtr7-uplink-lab-"));
    const closedPort = path.join(dir, "diagd-closed-port.json");
    await writeFile(closedPort, JSON.stringify({ tcp: ["127.0.0.1:1"] }));
    const [v1, v2, v3] = await Promise.all([
      unitImages({ version: "uplink-v1", buildTime: new Date(now - 60_000).toISOString() }),
      unitImages({ version: "uplink-v2", buildTime: new Date(now).toISOString() }),
      unitImages({
        version: "uplink-v3",
        buildTime: new Date(now + 60_000).toISOString(),
        add: [{ source: closedPort, destination: "/etc/rtr7/diagd.json" }],
      }),
    ]);
    await signed(v1, key, now - 60_000);
    await signed(v2, key, now);
    await signed(v3, key, now + 60_000);
    for (const [name, images] of [
      ["v2", v2],
      ["v3", v3],
    ] as const) {
      const release = { name, version: `uplink-${name}`, files: new Map<string, Buffer>(), images: [] };
      for (const file of await readdir(images))
        release.files.set(file, await readFile(path.join(images, file)));
      files.releases.set(name, release);
    }

    const password = "uplink-lab-password";
    broker.passwords.set(hostname, password);
    await mkdir(path.join(dir, "perm", "rtr7", "trusted-keys"), { recursive: true });
    await writeFile(
      path.join(dir, "perm", "rtr7", "trusted-keys", `${key.publicKey.keyId}.pub`),
      formatPublicKey(key.publicKey),
    );
    await writeFile(
      path.join(dir, "perm", "rtr7", "uplink.json"),
      JSON.stringify({
        server: `mqtts://127.0.0.1:${broker.port}`,
        username: hostname,
        password,
        serverFingerprint: broker.cert.fingerprint256,
      }),
    );
    unit = start(
      process.execPath,
      [
        cliEntry,
        "lab",
        "unit",
        "--dir",
        dir,
        "--hostname",
        hostname,
        "--address",
        address,
        "--image-dir",
        v1,
      ],
      {
        env: { ...process.env, XDG_CONFIG_HOME: path.join(dir, "config") },
      },
    );
    await unit.waitForLine(/rtr7 init: up:/, 90_000);
    const stateOf = (): Record<string, unknown> | undefined => {
      const last = monitor.messages.filter((m) => m.topic === `rtr7/units/${hostname}/state`).at(-1);
      return last ? (JSON.parse(last.payload) as Record<string, unknown>) : undefined;
    };
    await monitor.waitFor("the unit's state", () => stateOf()?.version === "uplink-v1", 60_000);
    const doc: JobDocument = {
      jobId: "lab-job-1",
      operation: "update",
      rolloutId: "lab",
      release: {
        version: "uplink-v2",
        baseUrl: `https://127.0.0.1:${files.port}/releases/v2/`,
        tlsFingerprint: files.cert.fingerprint256,
      },
      soakMs: 2000,
      healthTimeoutMs: 60_000,
      timeoutMs: 600_000,
      allowDowngrade: false,
      createdAt: new Date().toISOString(),
    };
    await monitor.publishJob(hostname, doc);
    const end = await monitor
      .waitFor(
        "the job's end",
        () => monitor.updates(hostname, doc.jobId).find((u) => u.state !== "IN_PROGRESS"),
        240_000,
      )
      .catch((error: unknown) => {
        throw new Error(
          `${String(error)}\n${unit?.output().slice(-6000) ?? ""}\n${JSON.stringify(monitor.updates(hostname, doc.jobId))}`,
        );
      });
    assert.equal(end.state, "SUCCEEDED", `${JSON.stringify(end)}\n${unit.output().slice(-6000)}`);
    const steps = monitor
      .updates(hostname, doc.jobId)
      .filter((u) => u.state === "IN_PROGRESS" && u.progress === undefined)
      .map((u) => u.step);
    assert.deepEqual(steps, [
      "health",
      "backup",
      "manifest",
      "download",
      "testboot",
      "reboot",
      "healthy",
      "soak",
      "commit",
    ]);
    await monitor.waitFor(
      "v2 committed",
      () => stateOf()?.version === "uplink-v2" && stateOf()?.trial === false,
      30_000,
    );
    const bad: JobDocument = {
      ...doc,
      jobId: "lab-job-2",
      release: {
        ...doc.release,
        version: "uplink-v3",
        baseUrl: `https://127.0.0.1:${files.port}/releases/v3/`,
      },
      healthTimeoutMs: 5000,
    };
    await monitor.publishJob(hostname, bad);
    const failed = await monitor
      .waitFor(
        "the second job's end",
        () => monitor.updates(hostname, bad.jobId).find((u) => u.state !== "IN_PROGRESS"),
        240_000,
      )
      .catch((error: unknown) => {
        throw new Error(
          `${String(error)}\n${unit?.output().slice(-6000) ?? ""}\n${JSON.stringify(monitor.updates(hostname, bad.jobId))}`,
        );
      });
    assert.equal(failed.state, "FAILED", JSON.stringify(failed));
    assert.match(String(failed.reason), /^fell back to uplink-v2: not healthy within 5 s: .*127\.0\.0\.1:1/);
    assert.equal(failed.version, "uplink-v2");
    await monitor.waitFor(
      "v2 committed again",
      () => stateOf()?.version === "uplink-v2" && stateOf()?.trial === false,
      30_000,
    );
  },
);
