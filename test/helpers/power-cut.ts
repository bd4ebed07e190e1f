// Power cuts for a QEMU unit that boots its own disk, shared by
// test/e2e/power-cut-qemu.test.ts and test/bench/power-cut.bench.ts:
//  - the unit runs with a QMP socket, which tells how many bytes the
//    emulated disk has taken (the write progress a cut is timed by, and the
//    bytes an update writes) and can throttle the disk's writes so that a
//    short write lasts long enough for a cut to land inside it;
//  - its NIC has no option ROM: the unit can boot its disk and nothing else,
//    so a unit that would need PXE fails instead of being rescued;
//  - a cut is SIGKILL of QEMU: the disk file is left as the emulated disk
//    had it (writes still in the guest's page cache are lost);
//  - the update's steps are sent from inside the namespace with curl, one
//    at a time, so a cut can come between any two of them or inside one;
//  - after a cut, the unit must come back on its own on a committed slot,
//    healthy, with /perm's marker files as they were put there (read back
//    through backupd).
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { appendFile, copyFile, mkdir, readFile, rm } from "node:fs/promises";
import { createConnection, type Socket } from "node:net";
import path from "node:path";
import type { Netns } from "../../lab/netns.js";
import { run, type Started } from "../../lab/processes.js";
import { diskUnitArgs } from "../../lab/qemu.js";
import { newestKernel } from "../../lib/host-kernel.js";
import type { HealthReport } from "../../lib/wire/health.js";
import { unitHealth } from "./qemu-unit.js";

/** A QMP connection (QEMU's JSON monitor protocol), one command at a time. */
export class QmpClient {
  private buffer = "";
  private nextId = 1;
  private readonly waiting = new Map<
    number,
    { resolve: (value: unknown) => void; reject: (error: Error) => void }
  >();
  private closed: Error | undefined;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      this.buffer += chunk;
      let newline: number;
      while ((newline = this.buffer.indexOf("\n")) >= 0) {
        const line = this.buffer.slice(0, newline).trim();
        this.buffer = this.buffer.slice(newline + 1);
        if (line !== "") this.onMessage(line);
      }
    });
    const fail = (error: Error): void => {
      this.closed ??= error;
      for (const waiter of this.waiting.values()) waiter.reject(this.closed);
      this.waiting.clear();
    };
    socket.on("error", fail);
    socket.on("close", () => fail(new Error("QMP: QEMU closed the connection")));
  }

  /** Connects to QEMU's `-qmp unix:PATH,server=on,wait=off`, retrying while QEMU starts. */
  static async connect(socketPath: string, timeoutMs = 30_000): Promise<QmpClient> {
    const giveUpAt = Date.now() + timeoutMs;
    for (;;) {
      try {
        const socket = await new Promise<Socket>((resolve, reject) => {
          const attempt = createConnection(socketPath);
          attempt.once("connect", () => resolve(attempt));
          attempt.once("error", reject);
        });
        const client = new QmpClient(socket);
        await client.execute("qmp_capabilities");
        return client;
      } catch (error) {
        if (Date.now() > giveUpAt)
          throw new Error(`QMP: cannot connect to ${socketPath} within ${timeoutMs} ms`, { cause: error });
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }

  private onMessage(line: string): void {
    let message: { id?: number; return?: unknown; error?: { desc?: string } };
    try {
      message = JSON.parse(line) as typeof message;
    } catch {
      return;
    }
    if (typeof message.id !== "number") return; // the greeting and events
    const waiter = this.waiting.get(message.id);
    if (!waiter) return;
    this.waiting.delete(message.id);
    if (message.error)
      waiter.reject(new Error(`QMP: ${message.error.desc ?? JSON.stringify(message.error)}`));
    else waiter.resolve(message.return);
  }

  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    if (this.closed) return Promise.reject(this.closed);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: (value) => resolve(value as T), reject });
      this.socket.write(
        JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id }) + "\n",
      );
    });
  }

  /** Bytes the guest has written to its disk(s) since QEMU started (query-blockstats wr_bytes). */
  async writtenBytes(): Promise<number> {
    const stats = await this.execute<{ stats: { wr_bytes: number } }[]>("query-blockstats");
    return stats.reduce((sum, device) => sum + device.stats.wr_bytes, 0);
  }

  /** Limits the disk's writes to `bytesPerSecond` (0: no limit). */
  async throttleWrites(bytesPerSecond: number): Promise<void> {
    const devices =
      await this.execute<{ device: string; qdev?: string; inserted?: unknown }[]>("query-block");
    for (const device of devices.filter((entry) => entry.inserted !== undefined)) {
      await this.execute("block_set_io_throttle", {
        ...(device.qdev ? { id: device.qdev } : { device: device.device }),
        bps: 0,
        bps_rd: 0,
        bps_wr: bytesPerSecond,
        iops: 0,
        iops_rd: 0,
        iops_wr: 0,
      });
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

/**
 * QEMU's arguments for a unit booting `disk` only: diskUnitArgs, a NIC
 * without its iPXE option ROM (no way to boot from the network), and QMP.
 */
export function powerCutUnitArgs(options: {
  tap: string;
  disk: string;
  mac: string;
  qmpSocket: string;
}): string[] {
  return [
    ...diskUnitArgs(options).map((arg) => (arg.startsWith("e1000,") ? `${arg},romfile=` : arg)),
    "-qmp",
    `unix:${options.qmpSocket},server=on,wait=off`,
  ];
}

export interface RunningUnit {
  unit: Started;
  qmp: QmpClient;
  /** Seconds from QEMU's start to `rtr7 init: up`. */
  bootSeconds: number;
}

/** A console line showing that the unit did not boot its disk. */
const noDiskBoot = /No bootable device|Boot failed|iPXE|PXE-|Could not find kernel image|Kernel panic/;

/** Starts QEMU on `disk` and waits for `rtr7 init: up`; fails early when the console shows the disk did not boot. */
export async function startUnit(
  ns: Netns,
  options: { disk: string; mac: string; qmpSocket: string; tap?: string; bootTimeoutMs: number },
): Promise<RunningUnit> {
  await rm(options.qmpSocket, { force: true });
  const started = Date.now();
  const unit = ns.start(
    "qemu-system-x86_64",
    powerCutUnitArgs({
      tap: options.tap ?? "tap0",
      disk: options.disk,
      mac: options.mac,
      qmpSocket: options.qmpSocket,
    }),
  );
  let qmp: QmpClient | undefined;
  try {
    qmp = await QmpClient.connect(options.qmpSocket);
    await Promise.race([
      unit.waitForLine(/rtr7 init: up/, options.bootTimeoutMs),
      unit.waitForLine(noDiskBoot, options.bootTimeoutMs + 1000).then((line) => {
        throw new Error(`the unit did not boot its disk: ${line}\n${unit.output().slice(-3000)}`);
      }),
    ]);
    return { unit, qmp, bootSeconds: (Date.now() - started) / 1000 };
  } catch (error) {
    qmp?.close();
    await powerCut(unit);
    throw error;
  }
}

/** Pulls the plug: SIGKILL of QEMU (its PID: `ip netns exec` execs QEMU), then waits for it to be gone. */
export async function powerCut(unit: Started, qmp?: QmpClient): Promise<void> {
  try {
    process.kill(unit.pid, "SIGKILL");
  } catch {
    // gone already
  }
  await unit.exited(10_000);
  qmp?.close();
}

/** The number of console lines so far: a mark to wait for lines after. */
export function consoleMark(unit: Started): number {
  return unit.output().split("\n").length;
}

/** The first console line after line `mark` that matches `pattern`, and the mark just past it. */
export async function waitForConsole(
  unit: Started,
  pattern: RegExp,
  mark: number,
  timeoutMs: number,
): Promise<{ line: string; next: number }> {
  const giveUpAt = Date.now() + timeoutMs;
  let checked = mark;
  for (;;) {
    const lines = unit.output().split("\n");
    for (; checked < lines.length - 1; checked += 1) {
      const line = lines[checked] ?? "";
      if (pattern.test(line)) return { line, next: checked + 1 };
    }
    if (unit.child.exitCode !== null || unit.child.signalCode !== null)
      throw new Error(
        `QEMU exited before a console line matching ${String(pattern)}\n${unit.output().slice(-3000)}`,
      );
    if (Date.now() > giveUpAt)
      throw new Error(
        `no console line matching ${String(pattern)} within ${timeoutMs} ms\n${unit.output().slice(-3000)}`,
      );
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Polls QMP until the disk has taken `bytes` more than `from`; returns the count then. */
export async function waitForWrites(
  qmp: QmpClient,
  from: number,
  bytes: number,
  timeoutMs: number,
): Promise<number> {
  const giveUpAt = Date.now() + timeoutMs;
  for (;;) {
    const now = await qmp.writtenBytes();
    if (now - from >= bytes) return now;
    if (Date.now() > giveUpAt)
      throw new Error(`the disk took ${now - from} bytes within ${timeoutMs} ms; waited for ${bytes}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** How the update API is reached: from inside `ns`, with the unit's password. */
export interface UnitApi {
  ns: Netns;
  address: string;
  password: string;
}

const auth = (api: UnitApi): string[] => ["-u", `gokrazy:${api.password}`];

export async function sha256OfFile(file: string): Promise<string> {
  return createHash("sha256")
    .update(await readFile(file))
    .digest("hex");
}

/** PUT /update/<target> with the whole file; checks the reply is the file's SHA-256. */
export async function putImage(api: UnitApi, target: "root" | "boot" | "mbr", file: string): Promise<void> {
  // A boot image goes gzip'd, as rtr7's client sends it (the unit lists the gzip feature).
  const compressed = target === "boot" ? await gzippedCopy(file) : undefined;
  const { stdout } = await api.ns.exec(
    "curl",
    [
      "-sS",
      "--fail-with-body",
      "--max-time",
      "600",
      ...auth(api),
      ...(compressed ? ["-H", "Content-Encoding: gzip"] : []),
      "-T",
      compressed ?? file,
      `http://${api.address}/update/${target}`,
    ],
    { timeoutMs: 620_000 },
  );
  const want = await sha256OfFile(file);
  if (stdout.trim() !== want)
    throw new Error(
      `PUT /update/${target}: the unit replied ${JSON.stringify(stdout.slice(0, 200))}, want ${want}`,
    );
}

const gzipped = new Map<string, Promise<string>>();

/** FILE.gz beside FILE, made once per process (level 1, as rtr7's client does). */
function gzippedCopy(file: string): Promise<string> {
  let made = gzipped.get(file);
  if (!made) {
    made = (async () => {
      const copy = `${file}.gz`;
      await pipeline(createReadStream(file), createGzip({ level: 1 }), createWriteStream(copy));
      return copy;
    })();
    gzipped.set(file, made);
  }
  return made;
}

/**
 * PUT /update/<target> with the body fed from here: resolves once
 * `stopAfterBytes` were handed to curl (which sends them chunked), and
 * sends no more. Stop `curl` when done with it.
 */
export async function putPartially(
  api: UnitApi,
  target: "root" | "boot",
  file: string,
  stopAfterBytes: number,
): Promise<{ curl: Started; fed: number }> {
  const curl = api.ns.start("curl", [
    "-sS",
    ...auth(api),
    "-T",
    "-",
    `http://${api.address}/update/${target}`,
  ]);
  const stdin = curl.child.stdin;
  if (!stdin) throw new Error("curl has no stdin");
  stdin.on("error", () => undefined);
  let fed = 0;
  for await (const chunk of createReadStream(file, { highWaterMark: 256 * 1024 })) {
    const bytes = (chunk as Buffer).subarray(0, stopAfterBytes - fed);
    fed += bytes.length;
    if (!stdin.write(bytes)) await new Promise((resolve) => stdin.once("drain", resolve));
    if (fed >= stopAfterBytes) break;
  }
  return { curl, fed };
}

/** POST /update/<action> or /reboot; returns the reply. */
export async function postAction(api: UnitApi, action: "testboot" | "commit" | "reboot"): Promise<string> {
  const url = action === "reboot" ? `http://${api.address}/reboot` : `http://${api.address}/update/${action}`;
  const { stdout } = await api.ns.exec(
    "curl",
    ["-sS", "--fail-with-body", "--max-time", "60", ...auth(api), "-X", "POST", url],
    {
      timeoutMs: 70_000,
    },
  );
  return stdout;
}

/** The same POST, started and left running (a cut will end it). */
export function startAction(api: UnitApi, action: "commit"): Started {
  return api.ns.start("curl", [
    "-sS",
    "--max-time",
    "60",
    ...auth(api),
    "-X",
    "POST",
    `http://${api.address}/update/${action}`,
  ]);
}

/**
 * The host's kernel with 1 MiB of text after it, for a v2 whose boot files
 * differ from v1's (so an update really writes the boot partition). Boot
 * loaders and kexec load the whole file; the kernel ignores what follows its
 * payload.
 */
export async function paddedKernel(dir: string): Promise<string> {
  const kernel = newestKernel();
  const padded = path.join(dir, path.basename(kernel));
  await copyFile(kernel, padded);
  await appendFile(padded, Buffer.alloc(1024 * 1024, "rtr7 power-cut test: a v2 kernel\n"));
  return padded;
}

/** Marker files for /perm: small ones, a nested one and one of 1 MiB, with random contents. */
export function permMarkers(): Record<string, string> {
  return {
    "power-cut/marker.txt": `put there at disk assembly ${randomBytes(8).toString("hex")}\n`,
    "power-cut/deep/er/marker.json": JSON.stringify({ marker: randomBytes(16).toString("hex") }) + "\n",
    "power-cut/large.txt": randomBytes(768 * 1024).toString("base64"),
  };
}

export interface Committed {
  health: HealthReport;
  /** The slot the update API names as committed (its status page). */
  committed: string;
  /** Seconds from the call to a healthy, committed answer. */
  seconds: number;
}

/**
 * After a cut and a restart: waits for the unit to answer healthy and not on
 * trial with one of `versions`, checks that the update API names its slot
 * as the committed one, and that `/perm` still holds each of `permFiles`
 * with the same contents (through backupd's /backup.tar.gz).
 */
export async function checkCommitted(
  api: UnitApi,
  options: {
    versions: string[];
    permFiles: Record<string, string>;
    scratch: string;
    timeoutMs: number;
    context?: () => string;
  },
): Promise<Committed> {
  const started = Date.now();
  let last: HealthReport | undefined;
  let health: HealthReport | undefined;
  while (Date.now() - started < options.timeoutMs) {
    const seen = await unitHealth(api.ns, api.address);
    if (seen) last = seen;
    if (seen && seen.first_error === "" && !seen.trial && options.versions.includes(seen.version)) {
      health = seen;
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  if (!health)
    throw new Error(
      `the unit never answered healthy, not on trial, with ${options.versions.join(" or ")}; last ${JSON.stringify(last)}\n${options.context?.() ?? ""}`,
    );
  const seconds = (Date.now() - started) / 1000;

  const { stdout } = await api.ns.exec(
    "curl",
    [
      "-sS",
      "--fail-with-body",
      "--max-time",
      "20",
      ...auth(api),
      "-H",
      "Accept: application/json",
      `http://${api.address}/`,
    ],
    { timeoutMs: 30_000 },
  );
  const status = JSON.parse(stdout) as { committed?: unknown; running?: { slot?: string; trial?: boolean } };
  if (
    status.committed !== health.slot ||
    status.running?.slot !== health.slot ||
    status.running.trial !== false
  )
    throw new Error(
      `the unit runs slot ${health.slot}, but its update API says committed ${JSON.stringify(status.committed)}, running ${JSON.stringify(status.running)}`,
    );

  await rm(options.scratch, { recursive: true, force: true });
  await mkdir(options.scratch, { recursive: true });
  const archive = path.join(options.scratch, "backup.tar.gz");
  await api.ns.exec(
    "curl",
    [
      "-sS",
      "--fail",
      "--max-time",
      "60",
      ...auth(api),
      "-o",
      archive,
      `http://${api.address}:8077/backup.tar.gz`,
    ],
    { timeoutMs: 70_000 },
  );
  const tree = path.join(options.scratch, "perm");
  await mkdir(tree);
  await run("tar", ["xzf", archive, "-C", tree]);
  for (const [name, content] of Object.entries(options.permFiles)) {
    const got = await readFile(path.join(tree, name), "utf8").catch(() => undefined);
    if (got !== content)
      throw new Error(
        `/perm/${name} ${got === undefined ? "is missing" : `differs (${got.length} bytes, want ${content.length})`} after the cut`,
      );
  }
  await rm(options.scratch, { recursive: true, force: true });
  return { health, committed: String(status.committed), seconds };
}

/** The steps of a whole update, in order. */
export const updateSteps = ["root", "boot", "mbr", "testboot", "reboot", "trial boot", "commit"] as const;
export type UpdateStep = (typeof updateSteps)[number];

/**
 * A whole update to `version` (the images in `imagesDir`) with the update
 * API's steps: root, boot and mbr pushed, testboot, reboot (kexec into the
 * trial), the trial healthy, commit. `onStep` is told as each step begins;
 * once `signal` is aborted (the power was cut), no further step starts.
 */
export async function runUpdate(
  api: UnitApi,
  imagesDir: string,
  version: string,
  onStep: (step: UpdateStep) => Promise<void> | void = () => undefined,
  signal?: AbortSignal,
): Promise<void> {
  const begin = async (step: UpdateStep): Promise<void> => {
    signal?.throwIfAborted();
    await onStep(step);
  };
  for (const target of ["root", "boot", "mbr"] as const) {
    await begin(target);
    await putImage(api, target, path.join(imagesDir, `${target}.img`));
  }
  await begin("testboot");
  await postAction(api, "testboot");
  await begin("reboot");
  await postAction(api, "reboot");
  await begin("trial boot");
  const giveUpAt = Date.now() + 300_000;
  for (;;) {
    signal?.throwIfAborted();
    const health = await unitHealth(api.ns, api.address);
    if (health?.version === version && health.trial && health.first_error === "") break;
    if (Date.now() > giveUpAt) throw new Error(`the unit never answered healthy on ${version}, on trial`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  await begin("commit");
  await postAction(api, "commit");
}
