// A process-mode unit (`rtr7 lab unit`) in a network namespace, driven from
// a "workstation" namespace with curl, the way safe-update will drive it:
// the gokrazy update API (features, hashes of what reached the slot, 400,
// 401, 409, truncated uploads refused at switch and testboot, the active
// slot never written), try-boot (testboot + reboot runs the new slot; no
// commit by the deadline, back on the old one; commit, it stays), and the
// supervisor restarting a killed service while a crashing one harms nobody.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { sha256OfFile } from "../../lib/wire/manifest.js";
import { readSupervisorState } from "../../router/supervisor/state.js";
import { isRoot, Netns } from "../helpers/netns.js";
import { haveTool } from "../../lab/processes.js";
import { startLabUnitPair, type LabUnitPair } from "../helpers/lab-unit-pair.js";
import { removeUnitImages, unitImages } from "../helpers/unit-images.js";
import type { Started } from "../../lab/processes.js";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";

const unitAddress = "10.90.0.2";
const workstationAddress = "10.90.0.1";
const hostname = "lab1";
const tools = ["curl", "mksquashfs", "unsquashfs", "mkfs.fat", "mcopy", "syslinux"];

async function cannotRun(): Promise<string | undefined> {
  if (!isRoot()) return "needs root: network namespaces and port 80";
  for (const tool of tools) if (!(await haveTool(tool))) return `needs ${tool}: run scripts/setup.sh`;
  return undefined;
}
const skip = await cannotRun();

interface Reply {
  status: number;
  body: string;
}

describe("rtr7 lab unit: update API, try-boot and supervisor in process mode", { skip }, () => {
  let pair: LabUnitPair | undefined;
  let workstation: Netns;
  let dir: string;
  let unit: Started;
  let password: string;
  let v1: string;
  let v2: string;

  /** curl from the workstation namespace; -w appends the status code. */
  async function curl(args: string[], timeoutMs = 60_000): Promise<Reply> {
    const result = await workstation.exec(
      "curl",
      ["-sS", "-w", "\n%{http_code}", "--max-time", "50", ...args],
      {
        timeoutMs,
      },
    );
    const text = result.stdout;
    const cut = text.lastIndexOf("\n");
    return { status: Number(text.slice(cut + 1)), body: text.slice(0, cut) };
  }
  const api = (method: string, route: string, extra: string[] = [], user = `gokrazy:${password}`) =>
    curl(["-X", method, "-u", user, ...extra, `http://${unitAddress}${route}`]);

  async function health(): Promise<
    { version: string; slot: string; trial: boolean; first_error: string } | undefined
  > {
    const reply = await curl(["--max-time", "3", `http://${unitAddress}:7733/health.json`]).catch(
      () => undefined,
    );
    if (!reply || reply.status !== 200) return undefined;
    return JSON.parse(reply.body) as { version: string; slot: string; trial: boolean; first_error: string };
  }
  async function waitForHealth(
    want: { version: string; slot: string; trial: boolean },
    timeoutMs: number,
  ): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    while (Date.now() < deadline) {
      const seen = await health();
      last = seen;
      if (seen && seen.version === want.version && seen.slot === want.slot && seen.trial === want.trial)
        return;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    throw new Error(
      `unit never reported ${JSON.stringify(want)}; last ${JSON.stringify(last)}\n${unit.output().slice(-3000)}`,
    );
  }
  const root = (slot: "a" | "b") => path.join(dir, `root-${slot}.img`);
  async function prefixSha256(file: string, bytes: number): Promise<string> {
    return createHash("sha256")
      .update((await readFile(file)).subarray(0, bytes))
      .digest("hex");
  }

  before(async () => {
    const crasher = await mkdtemp(path.join(tmpdir(), "rtr7-services-"));
    await writeFile(
      path.join(crasher, "services.json"),
      JSON.stringify({
        services: [{ name: "crasher", command: ["/bin/busybox", "sh", "-c", "echo crashing; exit 3"] }],
      }),
    );
    [v1, v2] = await Promise.all([
      unitImages({
        hostname,
        version: "v1",
        add: [{ source: path.join(crasher, "services.json"), destination: "/etc/rtr7/services.json" }],
      }),
      unitImages({ hostname, version: "v2" }),
    ]);
    await rm(crasher, { recursive: true, force: true });
    pair = await startLabUnitPair({
      label: "labunit",
      hostname,
      imagesDir: v1,
      unitAddress,
      workstationAddress,
      permFiles: { "data/keep.txt": "survives every update\n" },
    });
    ({ workstation, unit, password } = pair);
    dir = pair.dir;
    await waitForHealth({ version: "v1", slot: "a", trial: false }, 30_000);
  });

  after(async () => {
    await pair?.destroy();
    await removeUnitImages();
  });

  test("update API: features, hashes of what reached the slot, 400, 401, 409, truncation; the active slot untouched", async () => {
    const activeBefore = await sha256OfFile(root("a"));

    const text = await api("GET", "/update/features");
    assert.equal(text.status, 200);
    assert.equal(text.body, "partuuid,updatehash,gzip,signed,");
    const json = await api("GET", "/update/features", ["-H", "Accept: application/json"]);
    assert.deepEqual(JSON.parse(json.body), { features: "partuuid,updatehash,gzip,signed,", EEPROM: null });

    const image = path.join(v2, "root.img");
    const { sha256, size } = await sha256OfFile(image);
    const put = await api("PUT", "/update/root", ["--data-binary", `@${image}`]);
    assert.equal(put.status, 200, put.body);
    assert.equal(put.body.trim(), sha256);
    assert.equal(await prefixSha256(root("b"), size), sha256, "the reply is the hash of what reached slot b");

    const crc = await api("PUT", "/update/root", [
      "--data-binary",
      `@${image}`,
      "-H",
      "X-Gokrazy-Update-Hash: crc32",
    ]);
    assert.equal(crc.status, 200, crc.body);
    const { crc32 } = await import("node:zlib");
    const slotCrc = crc32((await readFile(root("b"))).subarray(0, size))
      .toString(16)
      .padStart(8, "0");
    assert.equal(crc.body.trim(), slotCrc);

    assert.equal((await api("GET", "/update/root")).status, 400);
    assert.equal((await api("POST", "/update/boot")).status, 400);

    const slotB = await prefixSha256(root("b"), size);
    const wrong = await api(
      "PUT",
      "/update/root",
      ["--data-binary", `@${path.join(v1, "root.img")}`],
      "gokrazy:wrong",
    );
    assert.equal(wrong.status, 401);
    const none = await curl(["-X", "PUT", "--data-binary", "x", `http://${unitAddress}/update/root`]);
    assert.equal(none.status, 401);
    assert.equal(await prefixSha256(root("b"), size), slotB, "a refused upload wrote nothing");

    // One update at a time: a slowed upload holds the lock while a second one is refused.
    const slow = api("PUT", "/update/root", ["--data-binary", `@${image}`, "--limit-rate", "8M"]);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const second = await api("PUT", "/update/mbr", ["--data-binary", `@${path.join(v2, "mbr.img")}`]);
    assert.equal(second.status, 409, second.body);
    assert.equal((await slow).status, 200);

    // A body that ends early: the slot is marked invalid and cannot be booted.
    const authorization = Buffer.from(`gokrazy:${password}`).toString("base64");
    const script = `
      const socket = require("node:net").connect(80, "${unitAddress}", () => {
        socket.write("PUT /update/root HTTP/1.1\\r\\nHost: ${unitAddress}\\r\\nAuthorization: Basic ${authorization}\\r\\n" +
          "Content-Type: application/octet-stream\\r\\nContent-Length: 50000000\\r\\n\\r\\n");
        socket.write(Buffer.alloc(1 << 20, 7));
        setTimeout(() => socket.destroy(), 500);
      });`;
    await workstation.exec(process.execPath, ["-e", script]);
    await new Promise((resolve) => setTimeout(resolve, 500));
    for (const route of ["/update/switch", "/update/testboot"]) {
      const refused = await api("POST", route);
      assert.ok(refused.status >= 400 && refused.status < 500, `${route}: ${refused.status} ${refused.body}`);
      assert.match(refused.body, /RTR7_ERR_SLOT_INVALID/);
    }
    assert.equal((await api("GET", "/update/features")).status, 200, "still serving");
    assert.deepEqual(await sha256OfFile(root("a")), activeBefore, "the active slot was never written");
    assert.deepEqual(await health().then((h) => h?.slot), "a");
  });

  test("try-boot: the new slot runs once; without a commit it falls back; committed, it stays", async () => {
    for (const [route, file] of [
      ["/update/root", "root.img"],
      ["/update/boot", "boot.img"],
    ] as const) {
      const reply = await api("PUT", route, ["--data-binary", `@${path.join(v2, file)}`]);
      assert.equal(reply.status, 200, `${route}: ${reply.body}`);
    }
    assert.equal((await api("POST", "/update/testboot", ["-d", "deadline=6s"])).status, 200);
    assert.equal((await api("POST", "/reboot")).status, 200);
    await waitForHealth({ version: "v2", slot: "b", trial: true }, 60_000);
    // No commit: past the deadline the unit reboots into the committed slot a.
    await waitForHealth({ version: "v1", slot: "a", trial: false }, 60_000);
    const metrics = await curl([`http://${unitAddress}:7733/metrics`]);
    assert.match(metrics.body, /^rtr7_rollbacks_total 1$/m);
    assert.equal(
      await readFile(path.join(dir, "perm", "data", "keep.txt"), "utf8"),
      "survives every update\n",
    );

    // Again, and commit this time: it stays on b, even across a firmware reboot.
    assert.equal((await api("POST", "/update/testboot", ["-d", "deadline=30s"])).status, 200);
    assert.equal((await api("POST", "/reboot")).status, 200);
    await waitForHealth({ version: "v2", slot: "b", trial: true }, 60_000);
    const commit = await api("POST", "/update/commit");
    assert.equal(commit.status, 200, commit.body);
    await waitForHealth({ version: "v2", slot: "b", trial: false }, 10_000);
    assert.equal((await api("POST", "/reboot", ["-d", "kexec=off"])).status, 200);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await waitForHealth({ version: "v2", slot: "b", trial: false }, 60_000);
    assert.equal(
      await readFile(path.join(dir, "perm", "data", "keep.txt"), "utf8"),
      "survives every update\n",
    );
  });

  test("supervisor: a killed service is back within its backoff; a crashing one harms nobody", async () => {
    // v1 brought a service that crashes at start; v2 (running now) does not:
    // go back to v1's slot a for this test.
    assert.equal((await api("POST", "/update/switch")).status, 200);
    assert.equal((await api("POST", "/reboot", ["-d", "kexec=off"])).status, 200);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    await waitForHealth({ version: "v1", slot: "a", trial: false }, 60_000);

    const run = path.join(dir, "run");
    const diagd = (await readSupervisorState(run))?.services.find((service) => service.name === "diagd");
    assert.ok(diagd?.pid, "diagd runs");
    process.kill(diagd.pid, "SIGKILL");
    const deadline = Date.now() + 15_000;
    let back: number | undefined;
    while (Date.now() < deadline && back === undefined) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      const now = (await readSupervisorState(run))?.services.find((service) => service.name === "diagd");
      if (now?.pid && now.pid !== diagd.pid && (await health())) back = now.pid;
    }
    assert.ok(back, "diagd came back with a new pid and answers");

    // The crasher's backoff grows (1 s, 2 s, ...); it is retried while the rest serve.
    const crasherDeadline = Date.now() + 20_000;
    let crasher;
    do {
      await new Promise((resolve) => setTimeout(resolve, 250));
      crasher = (await readSupervisorState(run))?.services.find((service) => service.name === "crasher");
    } while ((crasher?.restarts ?? 0) < 2 && Date.now() < crasherDeadline);
    assert.ok((crasher?.restarts ?? 0) >= 2, `crasher restarted: ${JSON.stringify(crasher)}`);
    assert.equal((await api("GET", "/update/features")).status, 200);
    const backup = await curl([
      "-u",
      `gokrazy:${password}`,
      "-o",
      "/dev/null",
      `http://${unitAddress}:8077/backup.tar.gz`,
    ]);
    assert.equal(backup.status, 200);
    assert.match(
      (await curl([`http://${unitAddress}:7733/metrics`])).body,
      /rtr7_supervisor_restarts_total\{service="crasher"\} [1-9]/,
    );
  });
});
