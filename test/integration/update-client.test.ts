// The unit target (openUnit) against a real process-mode unit (`rtr7 lab
// unit`) in a network namespace, called from a "workstation" namespace
// through a small driver (update-client-driver.ts): features; root pushed
// with SHA-256 and with CRC-32, each confirmed hash equal to the local
// file's and the slot holding those bytes; a wrong password refused as
// RTR7_ERR_UPDATE_AUTH; health() with the unit's report, and undefined for
// a closed port; a backup GNU tar can list; testboot + reboot, then commit,
// seen in health; a busy unit refused at once or waited for; and a push
// whose link is cut mid-way failing as RTR7_ERR_UNIT_UNREACHABLE after the
// idle timeout instead of hanging. Every failure is checked for the secret
// it was given (the real password, or a distinctive wrong one): not in the
// message, not in any cause, not in the driver's log.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdir, open, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { crc32 } from "node:zlib";
import { createHash } from "node:crypto";
import { run, haveTool, type Started } from "../../lab/processes.js";
import { sha256OfFile } from "../../lib/wire/manifest.js";
import type { HealthReport } from "../../lib/wire/health.js";
import { isRoot, Netns } from "../helpers/netns.js";
import { startLabUnitPair, type LabUnitPair } from "../helpers/lab-unit-pair.js";
import { repoPath } from "../helpers/paths.js";
import { removeUnitImages, unitImages } from "../helpers/unit-images.js";
import { curlPushArgs } from "../helpers/curl.js";

const unitAddress = "10.92.0.2";
const workstationAddress = "10.92.0.1";
const hostname = "client1";
const tools = ["curl", "tar", "mksquashfs", "unsquashfs", "mkfs.fat", "mcopy", "syslinux"];
const driver = repoPath("dist/test/integration/update-client-driver.js");

async function cannotRun(): Promise<string | undefined> {
  if (!isRoot()) return "needs root: network namespaces and port 80";
  for (const tool of tools) if (!(await haveTool(tool))) return `needs ${tool}: run scripts/setup.sh`;
  return undefined;
}
const skip = await cannotRun();

interface Outcome {
  ok: boolean;
  result?: unknown;
  code?: string;
  message?: string;
  details?: unknown;
  causes?: unknown[];
  log?: string;
}

/** The whole outcome (message, causes with their stacks, the log) holds neither the secret nor its header. */
function assertNoSecret(outcome: Outcome, secret: string): void {
  const text = JSON.stringify(outcome);
  const header = Buffer.from(`gokrazy:${secret}`).toString("base64");
  assert.ok(!text.includes(secret), `the password leaked: ${text}`);
  assert.ok(!text.includes(header), `the Authorization header leaked: ${text}`);
}

describe("the unit target against a process-mode unit", { skip }, () => {
  let pair: LabUnitPair | undefined;
  let unitNs: Netns;
  let workstation: Netns;
  let dir: string;
  let unit: Started;
  let password: string;
  let v1: string;
  let v2: string;

  /** One client call from the workstation namespace. */
  async function call(command: Record<string, unknown>, timeoutMs = 120_000): Promise<Outcome> {
    const full = { endpoint: { host: unitAddress, port: 80 }, password, ...command };
    const { stdout } = await workstation.exec(process.execPath, [driver, JSON.stringify(full)], {
      timeoutMs,
    });
    const last = stdout.trim().split("\n").pop() ?? "";
    return JSON.parse(last) as Outcome;
  }
  async function ok<T>(command: Record<string, unknown>): Promise<T> {
    const outcome = await call(command);
    assert.ok(outcome.ok, `${String(command.op)}: ${outcome.code}: ${outcome.message}`);
    return outcome.result as T;
  }
  async function waitForHealth(want: Partial<HealthReport>, timeoutMs: number): Promise<HealthReport> {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    while (Date.now() < deadline) {
      const seen = await ok<HealthReport | null>({ op: "health" });
      last = seen;
      if (seen && Object.entries(want).every(([key, value]) => seen[key as keyof HealthReport] === value))
        return seen;
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    throw new Error(
      `unit never reported ${JSON.stringify(want)}; last ${JSON.stringify(last)}\n${unit.output().slice(-3000)}`,
    );
  }
  async function slotPrefix(slot: "a" | "b", bytes: number): Promise<Buffer> {
    const handle = await open(path.join(dir, `root-${slot}.img`), "r");
    try {
      const buffer = Buffer.alloc(bytes);
      const { bytesRead } = await handle.read(buffer, 0, bytes, 0);
      return buffer.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  }

  before(async () => {
    [v1, v2] = await Promise.all([
      unitImages({ hostname, version: "v1" }),
      unitImages({ hostname, version: "v2" }),
    ]);
    pair = await startLabUnitPair({
      label: "ucunit",
      hostname,
      imagesDir: v1,
      unitAddress,
      workstationAddress,
      permFiles: { "data/keep.txt": "survives every update\n" },
    });
    ({ unitNs, workstation, unit, password } = pair);
    dir = pair.dir;
    await waitForHealth({ version: "v1", slot: "a", trial: false }, 30_000);
  });

  after(async () => {
    await pair?.destroy();
    await removeUnitImages();
  });

  test("features: the unit's list, crc32 because it lists updatehash", async () => {
    assert.deepEqual(await ok({ op: "features" }), {
      raw: "partuuid,updatehash,gzip,signed,",
      hash: "crc32",
      partuuid: true,
    });
  });

  test("push root with SHA-256 and CRC-32: the confirmed hash is the local file's, the slot holds its bytes", async () => {
    const image = path.join(v2, "root.img");
    const local = await readFile(image);
    const { sha256, size } = await sha256OfFile(image);

    const viaSha = await ok<{ bytes: number; hash: string; ms: number; lastProgress: number }>({
      op: "push",
      target: "root",
      file: image,
      hash: "sha256",
    });
    assert.equal(viaSha.bytes, size);
    assert.equal(viaSha.hash, sha256);
    assert.equal(viaSha.lastProgress, size, "progress reached the whole size");
    assert.equal(
      createHash("sha256")
        .update(await slotPrefix("b", size))
        .digest("hex"),
      sha256,
    );

    // Slot b is overwritten first, so the second push must write it again.
    await ok({ op: "push", target: "root", file: path.join(v1, "root.img"), hash: "sha256" });
    const viaCrc = await ok<{ bytes: number; hash: string }>({
      op: "push",
      target: "root",
      file: image,
      hash: "crc32",
    });
    assert.equal(viaCrc.hash, crc32(local).toString(16).padStart(8, "0"));
    assert.ok((await slotPrefix("b", size)).equals(local), "slot b holds the pushed image");
  });

  test("a wrong password is RTR7_ERR_UPDATE_AUTH, writes nothing, and is never shown", async (t) => {
    const before = await slotPrefix("b", 1 << 20);
    const wrong = `wrong-${randomBytes(12).toString("hex")}`;
    const refused = await call({
      op: "push",
      target: "root",
      file: path.join(v1, "root.img"),
      hash: "sha256",
      password: wrong,
    });
    assert.equal(refused.code, "RTR7_ERR_UPDATE_AUTH", refused.message);
    t.diagnostic(`${refused.code}: ${refused.message}`);
    assert.match(refused.message ?? "", /HTTP 401/);
    assert.ok(
      (refused.causes ?? []).length >= 1 && refused.log !== undefined,
      "causes and log were captured",
    );
    assertNoSecret(refused, wrong);
    assertNoSecret(refused, password);
    const commit = await call({ op: "commit", password: wrong });
    assert.equal(commit.code, "RTR7_ERR_UPDATE_AUTH");
    assertNoSecret(commit, wrong);
    assert.ok((await slotPrefix("b", 1 << 20)).equals(before));
  });

  test("the real password is never shown when a call fails: a closed port, a refused request", async () => {
    const closed = await call({ op: "commit", endpoint: { host: unitAddress, port: 81 } });
    assert.equal(closed.code, "RTR7_ERR_UNIT_UNREACHABLE", closed.message);
    assertNoSecret(closed, password);
    // Not a PUT target: the unit refuses it, with the right password.
    const refused = await call({ op: "push", target: "nosuch", file: path.join(v1, "mbr.img") });
    assert.equal(refused.ok, false);
    assert.ok(refused.code?.startsWith("RTR7_ERR_"), refused.message);
    assertNoSecret(refused, password);
  });

  test("health: the unit's report; undefined for a closed port", async () => {
    const report = await ok<HealthReport>({ op: "health" });
    assert.equal(report.first_error, "");
    assert.equal(report.hostname, hostname);
    assert.equal(report.version, "v1");
    assert.equal(report.slot, "a");
    const closed = await ok<null>({
      op: "health",
      endpoint: { host: unitAddress, port: 80, diagdPort: 7799 },
    });
    assert.equal(closed, null);
  });

  test("backup: a checked archive GNU tar lists, with /perm's files", async () => {
    const destination = path.join(dir, "workstation", "backup.tar.gz");
    await mkdir(path.dirname(destination), { recursive: true });
    const result = await ok<{ bytes: number; progressCalls: number }>({ op: "backup", destination });
    assert.ok(result.bytes > 0 && result.progressCalls > 0);
    const listed = (await run("tar", ["tzf", destination])).stdout.split("\n");
    assert.ok(
      listed.some((name) => /(^|\/)data\/keep\.txt$/.test(name)),
      listed.join("\n"),
    );
    assert.deepEqual((await readFile(destination)).length, result.bytes);
  });

  test("testboot + reboot runs the new slot on trial; commit keeps it", async () => {
    // Slot b holds v2's root (pushed above); its boot partition follows.
    await ok({ op: "push", target: "boot", file: path.join(v2, "boot.img"), hash: "crc32" });
    const trial = await ok<string>({ op: "testboot", deadlineMs: 90_000 });
    assert.match(trial, /slot b/);
    assert.match(await ok<string>({ op: "reboot", kexec: true }), /rebooting/);
    await waitForHealth({ version: "v2", slot: "b", trial: true }, 60_000);
    assert.match(await ok<string>({ op: "commit" }), /slot b is committed/);
    await waitForHealth({ version: "v2", slot: "b", trial: false }, 10_000);
  });

  test("a busy unit: refused before any byte with no retry time; waited for with some", async () => {
    const image = path.join(v1, "root.img");
    const slow = workstation.start(
      "curl",
      curlPushArgs(password, image, `http://${unitAddress}/update/root`, ["--limit-rate", "20M"]),
    );
    await new Promise((resolve) => setTimeout(resolve, 700));
    const refused = await call({ op: "push", target: "mbr", file: path.join(v2, "mbr.img"), busyRetryMs: 0 });
    assert.equal(refused.code, "RTR7_ERR_UPDATE_BUSY", refused.message);
    assert.equal((refused.details as { lastProgress: number }).lastProgress, 0, "no byte was sent");
    assertNoSecret(refused, password);
    const waited = await ok<{ hash: string }>({
      op: "push",
      target: "mbr",
      file: path.join(v2, "mbr.img"),
      hash: "sha256",
      busyRetryMs: 60_000,
    });
    assert.equal(waited.hash, (await sha256OfFile(path.join(v2, "mbr.img"))).sha256);
    assert.equal(await slow.exited(30_000), 0, "the slow upload finished first");
  });

  test("a push whose link is cut mid-way fails as RTR7_ERR_UNIT_UNREACHABLE after the idle timeout", async (t) => {
    const big = path.join(dir, "workstation", "big.img");
    await writeFile(big, randomBytes(64 * 1024 * 1024));
    const outcome = await call(
      {
        op: "push",
        target: "root",
        file: big,
        hash: "sha256",
        idleTimeoutMs: 3000,
        cutAfterBytes: 4 * 1024 * 1024,
        cutCommand: ["ip", "-n", unitNs.name, "link", "set", "lan0", "down"],
      },
      60_000,
    );
    const details = outcome.details as { cut: boolean; lastProgress: number };
    t.diagnostic(`${outcome.code}: ${outcome.message}`);
    assert.equal(outcome.code, "RTR7_ERR_UNIT_UNREACHABLE", outcome.message);
    assert.ok(details.cut, "the link was cut during the upload");
    assert.ok(details.lastProgress < 64 * 1024 * 1024, "the upload did not finish");
    assert.match(outcome.message ?? "", /10\.92\.0\.2:80/);
    assert.match(outcome.message ?? "", /no progress/);
    assertNoSecret(outcome, password);
  });
});
