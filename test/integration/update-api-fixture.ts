// A unit in a scratch directory for the update API's integration tests:
// file-backed UnitPaths (sparse 64 MiB root slots, a real 100 MiB FAT boot
// partition holding a rendered syslinux.cfg, a 512-byte MBR with a partition
// table), a BootControl that keeps committed/running/trial in memory and
// records every call (the mtools-based one is tested elsewhere), the API
// listening on 127.0.0.1:<ephemeral>, and curl as the client. When the test
// ends: the server is closed, the running slot is checked to hold exactly
// what it held before, the log is checked to hold no credentials, and the
// directory is removed.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, open, readFile, rm, truncate, writeFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import type { TestContext } from "node:test";
import { createLogger } from "../../lib/log.js";
import { run } from "../../lab/processes.js";
import type { BootControl, RebootOptions } from "../../router/boot/boot-control.js";
import { renderBootConfig, slotBootConfig, slotKernelParameters } from "../../lib/wire/boot-config.js";
import type { Slot, UnitPaths } from "../../router/unit.js";
import { listenUnitApp } from "../../router/http-guard/serve.js";
import { buildUpdateApi, type UpdateApiDeps, type UpdateEvent } from "../../router/update-api/server.js";
import { readSlotStates, type SlotState } from "../../router/update-api/slot-state.js";
import { fileBackedUnitPaths } from "../helpers/unit-paths.js";
import { spawnSync } from "node:child_process";

export const MiB = 1024 * 1024;
export const rootSlotBytes = 64 * MiB;
export const bootBytes = 100 * MiB;
export const mtoolsEnv = { ...process.env, MTOOLS_SKIP_CHECK: "1" };

export class FakeBootControl implements BootControl {
  readonly calls: string[] = [];

  constructor(readonly state: { running: Slot; trial: boolean; committed: Slot }) {}

  running(): { slot: Slot; trial: boolean } {
    return { slot: this.state.running, trial: this.state.trial };
  }
  committedSlot(): Promise<Slot> {
    return Promise.resolve(this.state.committed);
  }
  switchTo(slot: Slot): Promise<void> {
    this.calls.push(`switchTo ${slot}`);
    this.state.committed = slot;
    return Promise.resolve();
  }
  testboot(slot: Slot): Promise<void> {
    this.calls.push(`testboot ${slot}`);
    return Promise.resolve();
  }
  commit(): Promise<Slot> {
    this.calls.push("commit");
    this.state.committed = this.state.running;
    this.state.trial = false;
    return Promise.resolve(this.state.running);
  }
  checkReboot(): Promise<void> {
    return Promise.resolve();
  }

  reboot(options: RebootOptions): Promise<void> {
    this.calls.push(`reboot kexec=${options.kexec}`);
    return Promise.resolve();
  }
  keepDefault(committed: Slot): Promise<void> {
    this.calls.push(`keepDefault ${committed}`);
    return Promise.resolve();
  }
}

export function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

export async function sha256File(file: string): Promise<string> {
  return sha256(await readFile(file));
}

/** The first `length` bytes of a file. */
export async function head(file: string, length: number): Promise<Buffer> {
  const handle = await open(file, "r");
  try {
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await handle.read(buffer, 0, length, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/** Polls `check` until it returns true; fails naming `what` after 15 s. */
export async function waitFor(what: string, check: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`waited 15 s for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A squashfs image of a directory holding `randomContentBytes` of incompressible data. */
export async function makeSquashfs(dir: string, name: string, randomContentBytes: number): Promise<string> {
  const source = path.join(dir, `${name}-tree`);
  await mkdir(path.join(source, "etc"), { recursive: true });
  await writeFile(path.join(source, "etc", "hostname"), `${name}\n`);
  await writeFile(path.join(source, "payload.bin"), randomBytes(randomContentBytes));
  const image = path.join(dir, `${name}.squashfs`);
  await run("mksquashfs", [source, image, "-noappend", "-quiet", "-no-progress"]);
  return image;
}

/**
 * A 100 MiB FAT32 boot image holding syslinux.cfg (DEFAULT defaultSlot) and
 * a stand-in kernel for each slot; `legacy`: as rtr7 laid it out before
 * per-slot kernels (one /vmlinuz, a syslinux.cfg of 450 bytes with comments).
 */
export async function makeBootImage(
  dir: string,
  name: string,
  defaultSlot: Slot,
  options: { diskId?: number; legacy?: boolean } = {},
): Promise<string> {
  const diskId = options.diskId ?? 0x1234abcd;
  const image = path.join(dir, `${name}.img`);
  await writeFile(image, "");
  await truncate(image, bootBytes);
  await run("mkfs.fat", ["-F", "32", "--invariant", "-n", "RTR7BOOT", image]);
  const config = path.join(dir, `${name}-syslinux.cfg`);
  const kernel = path.join(dir, `${name}-vmlinuz`);
  await writeFile(kernel, randomBytes(256 * 1024));
  const initrd = path.join(dir, `${name}-initrd.img`);
  await writeFile(initrd, randomBytes(64 * 1024));
  if (options.legacy) {
    await writeFile(config, legacyBootConfig(diskId, defaultSlot));
    await runMtools("mcopy", ["-i", image, config, "::syslinux.cfg"]);
    await runMtools("mcopy", ["-i", image, kernel, "::vmlinuz"]);
    await runMtools("mcopy", ["-i", image, initrd, "::initrd.img"]);
    return image;
  }
  await writeFile(config, renderBootConfig(slotBootConfig({ diskId, defaultSlot })));
  await runMtools("mcopy", ["-i", image, config, "::syslinux.cfg"]);
  for (const slot of ["a", "b"]) {
    await runMtools("mmd", ["-i", image, `::${slot}`]);
    await runMtools("mcopy", ["-i", image, kernel, `::${slot}/vmlinuz`]);
    await runMtools("mcopy", ["-i", image, initrd, `::${slot}/initrd.img`]);
  }
  return image;
}

/** syslinux.cfg as rtr7 wrote it before per-slot kernels, byte for byte. */
export function legacyBootConfig(diskId: number, defaultSlot: Slot): string {
  const lines = [
    "# rtr7 boot configuration. DEFAULT names the committed root slot;",
    "# the unit's update API rewrites that line on switch and commit.",
    `DEFAULT ${defaultSlot}`,
    "PROMPT 0",
    "TIMEOUT 0",
    "SERIAL 0 115200",
  ];
  for (const slot of ["a", "b"] as const)
    lines.push(
      `LABEL ${slot}`,
      "  LINUX /vmlinuz",
      "  INITRD /initrd.img",
      `  APPEND ${slotKernelParameters(diskId, slot)}`,
    );
  return lines.join("\n") + "\n";
}

export async function runMtools(command: string, args: string[]): Promise<string> {
  const { execFile } = await import("node:child_process");
  return new Promise((resolve, reject) => {
    execFile(command, args, { env: mtoolsEnv, encoding: "utf8" }, (error, stdout, stderr) => {
      if (error) reject(new Error(`${command} ${args.join(" ")}: ${stderr || error.message}`));
      else resolve(stdout);
    });
  });
}

/** A 512-byte sector: random boot code, disk id 0x1234abcd, four partition entries, 0x55AA. */
export function makeMbrSector(): Buffer {
  const sector = randomBytes(512);
  sector.writeUInt32LE(0x1234abcd, 440);
  sector.writeUInt16LE(0, 444);
  sector[510] = 0x55;
  sector[511] = 0xaa;
  return sector;
}

export interface CurlResult {
  status: number;
  body: string;
  headers: Record<string, string>;
  /** Bytes curl sent as the request body (0 when it was never invited to). */
  uploaded: number;
}

export interface TestUnit {
  dir: string;
  paths: UnitPaths;
  boot: FakeBootControl;
  password: string;
  baseUrl: string;
  port: number;
  events: UpdateEvent[];
  /** curl's `-u gokrazy:PASSWORD`. */
  auth: string[];
  curl(args: string[]): Promise<CurlResult>;
  /** Resolves with the first event (already seen or coming) that matches. */
  waitForEvent(match: (event: UpdateEvent) => boolean): Promise<UpdateEvent>;
  slotState(slot: Slot): Promise<SlotState | undefined>;
  /** Fails unless GET /update/features still answers 200. */
  assertStillServing(): Promise<void>;
}

export async function startUnit(
  t: TestContext,
  boot: { running: Slot; trial: boolean; committed: Slot },
  runningImage: string,
  /** Overrides of the API's dependencies (the upload limits, say). */
  extra: Partial<UpdateApiDeps> = {},
): Promise<TestUnit> {
  const dir = await mkdtemp(path.join(tmpdir(), "rtr7-update-api-"));
  const paths = await fileBackedUnitPaths(dir);
  for (const slot of ["a", "b"] as const) {
    await writeFile(paths.roots[slot], "");
    await truncate(paths.roots[slot], rootSlotBytes);
  }
  // The running slot holds a real image, the inactive one whatever was there before.
  await writeFile(paths.roots[boot.running], await readFile(runningImage), { flag: "r+" });
  await writeFile(paths.roots[boot.running === "a" ? "b" : "a"], randomBytes(8192), { flag: "r+" });
  const bootImage = await makeBootImage(dir, "boot-initial", boot.committed);
  await rm(paths.boot, { force: true });
  await writeFile(paths.boot, await readFile(bootImage));
  await rm(bootImage);
  await writeFile(paths.mbr, makeMbrSector());

  const control = new FakeBootControl({ ...boot });
  const password = randomBytes(18).toString("base64url");
  const logLines: string[] = [];
  const log = createLogger({ json: true, level: "debug", stream: { write: (line) => logLines.push(line) } });
  const events: UpdateEvent[] = [];
  const waiters: { match: (event: UpdateEvent) => boolean; resolve: (event: UpdateEvent) => void }[] = [];
  const app = buildUpdateApi({
    paths,
    boot: control,
    password,
    log,
    statusPage: () =>
      Promise.resolve({
        hostname: "router-under-test",
        version: "v2024-test",
        model: "process",
        services: [
          { name: "diagd", state: "running", pid: 4242, restarts: 0 },
          { name: "<script>alert(1)</script>", state: "backoff", restarts: 3, lastExit: "1" },
        ],
      }),
    onEvent: (event) => {
      events.push(event);
      for (const waiter of [...waiters]) {
        if (waiter.match(event)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(event);
        }
      }
    },
    ...extra,
  });
  // As the suite listens: with the connection caps.
  await listenUnitApp(app, { address: "127.0.0.1" }, 0, "update API", log);
  const port = (app.server.address() as AddressInfo).port;
  const runningHashBefore = await sha256File(paths.roots[boot.running]);

  t.after(async () => {
    try {
      await app.close();
      assert.equal(
        await sha256File(paths.roots[boot.running]),
        runningHashBefore,
        `the running slot ${boot.running} changed`,
      );
      const credentials = Buffer.from(`gokrazy:${password}`).toString("base64");
      for (const line of logLines) {
        assert.ok(!line.includes(password), `the password reached the log: ${line}`);
        assert.ok(!line.includes(credentials), `the Authorization header reached the log: ${line}`);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  let requestNumber = 0;
  const baseUrl = `http://127.0.0.1:${port}`;
  const unit: TestUnit = {
    dir,
    paths,
    boot: control,
    password,
    baseUrl,
    port,
    events,
    auth: ["-u", `gokrazy:${password}`],
    async curl(args) {
      requestNumber += 1;
      const bodyFile = path.join(dir, `curl-${requestNumber}.body`);
      const headerFile = path.join(dir, `curl-${requestNumber}.headers`);
      const { stdout } = await run("curl", [
        "-sS",
        "-o",
        bodyFile,
        "-D",
        headerFile,
        "-w",
        "%{http_code} %{size_upload}",
        ...args,
      ]);
      const [status = "", uploaded = ""] = stdout.trim().split(" ");
      const headers: Record<string, string> = {};
      // With "100 Continue" first, the last header block is the final answer.
      const blocks = (await readFile(headerFile, "utf8")).trim().split(/\r?\n\r?\n/);
      for (const line of (blocks[blocks.length - 1] ?? "").split(/\r?\n/).slice(1)) {
        const colon = line.indexOf(":");
        if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
      }
      const body = await readFile(bodyFile, "utf8").catch(() => "");
      await rm(bodyFile, { force: true });
      await rm(headerFile, { force: true });
      return { status: Number(status), body, headers, uploaded: Number(uploaded) };
    },
    waitForEvent(match) {
      const seen = events.find(match);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("no matching update event within 15 s")), 15_000);
        waiters.push({
          match,
          resolve: (event) => {
            clearTimeout(timer);
            resolve(event);
          },
        });
      });
    },
    async slotState(slot) {
      return (await readSlotStates(paths.perm))[slot];
    },
    async assertStillServing() {
      const features = await unit.curl([...unit.auth, `${baseUrl}/update/features`]);
      assert.equal(features.status, 200, "the server stopped answering");
      assert.equal(features.body, "partuuid,updatehash,gzip,signed,");
    },
  };
  return unit;
}

/** Why the update API's image tests cannot run here, or undefined when they can. */
export function missingImageTool(): string | undefined {
  const missing = ["mksquashfs", "mcopy", "curl"].find(
    (tool) => spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0,
  );
  return missing === undefined ? undefined : `needs ${missing}: run scripts/setup.sh`;
}

/**
 * A unit running a 1 MiB squashfs on committed slot a (startUnit), and a
 * second image, `next`, for a real update; all removed when the test ends.
 */
export async function unitWithNextImage(
  t: TestContext,
  label: string,
  extra: Partial<UpdateApiDeps> = {},
): Promise<{ unit: TestUnit; next: string }> {
  const dir = await mkdtemp(path.join(tmpdir(), `rtr7-update-${label}-`));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const running = await makeSquashfs(dir, "running", MiB);
  const next = await makeSquashfs(dir, "next", MiB);
  const unit = await startUnit(t, { running: "a", trial: false, committed: "a" }, running, extra);
  return { unit, next };
}
