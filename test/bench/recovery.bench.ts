// A whole recovery of a QEMU unit's blank 2 GiB disk, timed from QEMU's start
// to its exit (the unit reboots, or powers off, when done; -no-reboot ends
// QEMU), for three cases alternated in one run:
//   rtr7        rtr7 recover with its recovery initramfs, kernel+initrd over TFTP
//   rtr7 http   the same with --boot-over http (lpxelinux fetches them over HTTP)
//   baseline    dnsmasq (DHCP+TFTP) + nginx + a busybox initramfs doing `wget | dd`
// and where the time goes in each, from rtr7's JSON events, dnsmasq's log,
// nginx's access log and the console, each line time-stamped as it arrives.
// Never asserts on time. Needs root, qemu, dnsmasq, nginx and busybox.
import { randomBytes } from "node:crypto";
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, truncate, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Netns } from "../../lab/netns.js";
import { missingPrerequisite, run, type Started } from "../../lab/processes.js";
import { recoveryUnitArgs } from "../../lab/qemu.js";
import { modulesDirFor } from "../../lab/smoke-initramfs.js";
import { baselineMarks, buildBaselineInitramfs } from "../../lab/baseline-initramfs.js";
import { newestKernel } from "../../lib/host-kernel.js";
import { httpLoaderFile } from "../../server/pxe/boot-files.js";
import { diskIdentifier, partitionTableBytes, planLayout } from "../../lib/wire/disk-layout.js";
import { silentLogger } from "../../lib/log.js";
import { recoverArgs } from "../helpers/scratch.js";
import { median } from "./harness.js";

const hostname = "router7";
const unitMac = "52:54:00:12:34:58";
const serverCidr = "10.78.0.254/24";
const serverAddress = "10.78.0.254";
const unitAddress = "10.78.0.1";
const httpPort = 7773;
const nginxPort = 8080;
const diskBytes = 2 * 1024 ** 3;
const MiB = 1024 * 1024;
const runTimeoutMs = 420_000;
const rounds = Number(process.env.RTR7_BENCH_RECOVERY_ROUNDS ?? 2);
/** Comma-separated subset of the cases to run (default all), e.g. "rtr7,baseline". */
const onlyCases = process.env.RTR7_BENCH_RECOVERY_CASES?.split(",");

type CaseName = "rtr7" | "rtr7 http" | "baseline";

/** One timed run: wall time and named phases (ms), in order. */
interface Timing {
  wallMs: number;
  phases: [string, number][];
  /** kernel + initramfs transfer, ms (from the loader's config to the initramfs sent). */
  kernelInitrdMs?: number;
}

interface Stamped {
  at: number;
  line: string;
}

/** Time-stamps every output line of a started process as it arrives. */
function stampLines(started: Started): Stamped[] {
  const lines: Stamped[] = [];
  for (const stream of [started.child.stdout, started.child.stderr]) {
    let partial = "";
    stream?.on("data", (chunk: string | Buffer) => {
      partial += chunk.toString();
      const parts = partial.split(/\r?\n/);
      partial = parts.pop() ?? "";
      const at = Date.now();
      for (const line of parts) lines.push({ at, line });
    });
  }
  return lines;
}

function missing(): Promise<string | undefined> {
  return missingPrerequisite(
    ["qemu-system-x86_64", "dnsmasq", "nginx", "busybox"],
    "network namespaces and a tap device",
  );
}

interface Lab {
  work: string;
  www: string;
  tftpRoot: string;
  disk: string;
  kernel: string;
  ns: Netns;
  images: { mbr: string; boot: string; root: string; backup: string };
}

async function makeImages(www: string, work: string): Promise<Lab["images"]> {
  const images = {
    mbr: path.join(www, "mbr.img"),
    boot: path.join(www, "boot.img"),
    root: path.join(www, "root.img"),
    backup: path.join(work, "backup.tar.gz"),
  };
  const mbr = randomBytes(512);
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  await writeFile(images.mbr, mbr, { mode: 0o644 });
  await writeFile(images.boot, randomBytes(16 * MiB), { mode: 0o644 });
  await writeFile(images.root, randomBytes(64 * MiB), { mode: 0o644 });
  const tree = path.join(work, "perm-source");
  await mkdir(path.join(tree, "dhcp4d"), { recursive: true });
  await writeFile(path.join(tree, "dhcp4d", "leases.json"), '{"leases":[]}\n');
  await writeFile(path.join(tree, "gokr-pw.txt"), "hunter2\n");
  await run("tar", ["czf", images.backup, "-C", tree, "."]);
  return images;
}

async function freshDisk(lab: Lab): Promise<void> {
  await rm(lab.disk, { force: true });
  await writeFile(lab.disk, "");
  await truncate(lab.disk, diskBytes);
}

/** A run's result; the kernel+initramfs time runs from the config being sent to the initramfs being sent. */
function runResult(
  startedAt: number,
  endedAt: number,
  phases: [string, number][],
  configSent: number | undefined,
  initrdSent: number | undefined,
) {
  return {
    wallMs: endedAt - startedAt,
    phases,
    ...(configSent !== undefined && initrdSent !== undefined
      ? { kernelInitrdMs: initrdSent - configSent }
      : {}),
  };
}

function startUnit(lab: Lab): { unit: Started; console: Stamped[]; startedAt: number } {
  const startedAt = Date.now();
  const unit = lab.ns.start(
    "qemu-system-x86_64",
    recoveryUnitArgs({ tap: "tap0", mac: unitMac, disk: lab.disk }),
  );
  return { unit, console: stampLines(unit), startedAt };
}

/** Turns named instants (ms since epoch, in order) into phases between them. */
function phasesBetween(
  start: number,
  marks: [string, number | undefined][],
  end: number,
): [string, number][] {
  const phases: [string, number][] = [];
  let previous = start;
  for (const [name, at] of [...marks, ["until QEMU exits", end] as [string, number]]) {
    if (at === undefined) continue;
    phases.push([name, at - previous]);
    previous = at;
  }
  return phases;
}

interface JsonEvent {
  event?: string;
  time?: string;
  file?: string;
  step?: string;
  message?: string;
  image?: string;
  [key: string]: unknown;
}

async function runRtr7(lab: Lab, bootOver: "tftp" | "http"): Promise<Timing> {
  await freshDisk(lab);
  const recover = lab.ns.start(
    process.execPath,
    recoverArgs({
      interfaceName: "tap0",
      hostname,
      images: lab.images,
      kernel: lab.kernel,
      initrd: "default",
      extra: [
        "--json",
        `--backup=${lab.images.backup}`,
        `--boot-over=${bootOver}`,
        `--http-port=${httpPort}`,
        `--timeout=${Math.round(runTimeoutMs / 1000) - 30}s`,
      ],
    }),
    // The unit's password comes from here, not from (or into) the user's ~/.config.
    { env: { ...process.env, RTR7_PASSWORD: "recovery-bench" } },
  );
  try {
    await recover.waitForLine(/"event":"start"/, 240_000);
    const { unit, console, startedAt } = startUnit(lab);
    const code = await unit.exited(runTimeoutMs);
    const endedAt = Date.now();
    const recoverCode = await recover.exited(30_000);
    if (recoverCode !== 0) {
      throw new Error(
        `rtr7 recover exited ${String(recoverCode)}:\n${recover.output().slice(-2000)}\n--- unit:\n${unit.output().slice(-2000)}`,
      );
    }
    void code;
    const events: JsonEvent[] = recover
      .output()
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as JsonEvent);
    const at = (predicate: (event: JsonEvent) => boolean): number | undefined => {
      const found = events.find(predicate);
      return found?.time === undefined ? undefined : Date.parse(found.time);
    };
    const sent = (file: string) =>
      at((event) => (event.event === "tftp-sent" || event.event === "http-sent") && event.file === file);
    const kernelAt = console.find((entry) => /Linux version/.test(entry.line))?.at;
    const marks: [string, number | undefined][] = [
      ["firmware + DHCP, until pxelinux.0 sent", sent("pxelinux.0")],
      ["pxelinux: ldlinux.c32 + config", sent("pxelinux.cfg/default")],
      [`vmlinuz over ${bootOver.toUpperCase()}`, sent("vmlinuz")],
      [`initrd over ${bootOver.toUpperCase()}`, sent("initrd")],
      ["kernel starts (console)", kernelAt],
    ];
    // Step changes the unit reported, once each, in order: each step lasts
    // until the next one is reported, the last one until success.
    const steps: { label: string; at: number }[] = [];
    const seen = new Set<string>();
    for (const event of events) {
      if (event.event !== "progress" || event.message === undefined || event.time === undefined) continue;
      const key = `${event.step}:${event.message}`;
      if (seen.has(key)) continue;
      seen.add(key);
      const image = event.step === "write" ? /^writing (\S+)/.exec(event.message)?.[1] : undefined;
      steps.push({
        label: image ? `write ${image}` : `${event.step}: ${event.message.replace(/^.*; /, "")}`,
        at: Date.parse(event.time),
      });
    }
    steps.forEach((step, index) => {
      marks.push([
        index === 0 ? "kernel+initramfs boot until first report" : (steps[index - 1]?.label ?? ""),
        step.at,
      ]);
    });
    marks.push([steps.at(-1)?.label ?? "until success", at((event) => event.event === "success")]);
    const phases = phasesBetween(startedAt, marks, endedAt).map(([name, ms]): [string, number] => [
      name === "until QEMU exits" ? "reboot after success" : name,
      ms,
    ]);
    return runResult(startedAt, endedAt, phases, sent("pxelinux.cfg/default"), sent("initrd"));
  } finally {
    await recover.stop();
  }
}

async function startNginx(lab: Lab): Promise<{ nginx: Started; accessLog: string }> {
  const accessLog = path.join(lab.work, `access-${Date.now()}.log`);
  const config = path.join(lab.work, "nginx.conf");
  await writeFile(
    config,
    `daemon off;
worker_processes 1;
user root;
pid ${lab.work}/nginx.pid;
error_log ${lab.work}/error.log;
events {}
http {
  log_format bench '$msec $request_time $uri $body_bytes_sent';
  access_log ${accessLog} bench;
  sendfile on;
  client_body_temp_path ${lab.work}/body;
  proxy_temp_path ${lab.work}/proxy;
  fastcgi_temp_path ${lab.work}/fastcgi;
  uwsgi_temp_path ${lab.work}/uwsgi;
  scgi_temp_path ${lab.work}/scgi;
  server { listen ${serverAddress}:${nginxPort}; root ${lab.www}; }
}
`,
  );
  const nginx = lab.ns.start("nginx", ["-c", config, "-e", `${lab.work}/error.log`]);
  return { nginx, accessLog };
}

async function runBaseline(lab: Lab): Promise<Timing> {
  await freshDisk(lab);
  const { nginx, accessLog } = await startNginx(lab);
  const dnsmasq = lab.ns.start("dnsmasq", [
    "--no-daemon",
    "--conf-file=/dev/null",
    "--user=root",
    "--pid-file=",
    "--port=0",
    "--interface=tap0",
    "--bind-interfaces",
    `--dhcp-range=${unitAddress},${unitAddress},255.255.255.0,1h`,
    `--dhcp-leasefile=${path.join(lab.work, "dnsmasq.leases")}`,
    "--dhcp-boot=pxelinux.0",
    "--enable-tftp",
    `--tftp-root=${lab.tftpRoot}`,
    "--log-dhcp",
    "--log-facility=-",
  ]);
  const dnsmasqLines = stampLines(dnsmasq);
  try {
    await dnsmasq.waitForLine(/TFTP root is|started, version/, 10_000);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const { unit, console, startedAt } = startUnit(lab);
    await unit.exited(runTimeoutMs);
    const endedAt = Date.now();
    const consoleLines = console.map((entry) => entry.line).join("\n");
    if (consoleLines.includes(baselineMarks.failed) || !consoleLines.includes(baselineMarks.done)) {
      throw new Error(`baseline unit did not finish:\n${unit.output().slice(-3000)}`);
    }
    const logAt = (pattern: RegExp) => dnsmasqLines.find((entry) => pattern.test(entry.line))?.at;
    const consoleAt = (text: string) => console.find((entry) => entry.line.includes(text))?.at;
    const tftpSent = (name: string) => logAt(new RegExp(`sent \\S*/${name.replace(/\./g, "\\.")} to`));
    // nginx: $msec is when the response ended; $request_time how long it took.
    const access = (await readFile(accessLog, "utf8").catch(() => ""))
      .split("\n")
      .map((line) => line.split(" "))
      .filter((fields) => fields.length === 4)
      .map(([msec, seconds, uri]) => ({ uri, end: Number(msec) * 1000, ms: Number(seconds) * 1000 }));
    const served = (uri: string) => access.find((entry) => entry.uri === uri);
    const marks: [string, number | undefined][] = [
      ["firmware + DHCP, until pxelinux.0 sent", tftpSent("pxelinux.0")],
      ["pxelinux: ldlinux.c32 + config", tftpSent("pxelinux.cfg/default")],
      ["vmlinuz over TFTP", tftpSent("vmlinuz")],
      ["initrd over TFTP", tftpSent("initrd")],
      ["kernel starts (console)", consoleAt("Linux version")],
      ["kernel boot until init runs", consoleAt(baselineMarks.init)],
      ["modules + udhcpc", consoleAt(baselineMarks.network)],
      ["mbr.img + partition table + rereadpt", consoleAt(baselineMarks.boot)],
      ["write boot.img (wget | dd)", consoleAt(baselineMarks.root)],
      ["write root.img (wget | dd)", consoleAt(baselineMarks.done)],
    ];
    const phases = phasesBetween(startedAt, marks, endedAt).map(([name, ms]): [string, number] => [
      name === "until QEMU exits" ? "poweroff" : name,
      ms,
    ]);
    for (const uri of ["/boot.img", "/root.img"]) {
      const entry = served(uri);
      if (entry) phases.push([`  (nginx: ${uri.slice(1)} request took)`, entry.ms]);
    }
    return runResult(startedAt, endedAt, phases, tftpSent("pxelinux.cfg/default"), tftpSent("initrd"));
  } finally {
    await dnsmasq.stop();
    await nginx.stop();
  }
}

async function prepareBaseline(lab: Lab): Promise<void> {
  await mkdir(path.join(lab.tftpRoot, "pxelinux.cfg"), { recursive: true });
  await copyFile("/usr/lib/PXELINUX/pxelinux.0", path.join(lab.tftpRoot, "pxelinux.0"));
  await copyFile("/usr/lib/syslinux/modules/bios/ldlinux.c32", path.join(lab.tftpRoot, "ldlinux.c32"));
  await copyFile(lab.kernel, path.join(lab.tftpRoot, "vmlinuz"));
  const layout = planLayout(diskBytes);
  const [boot, root] = layout.partitions;
  await buildBaselineInitramfs({
    out: path.join(lab.tftpRoot, "initrd"),
    modulesDir: modulesDirFor(lab.kernel),
    partitionTable: partitionTableBytes(layout, diskIdentifier(hostname)),
    bootOffsetMiB: boot.byteOffset / MiB,
    rootOffsetMiB: root.byteOffset / MiB,
  });
  await writeFile(
    path.join(lab.tftpRoot, "pxelinux.cfg", "default"),
    [
      "DEFAULT baseline",
      "PROMPT 0",
      "TIMEOUT 0",
      "SERIAL 0 115200",
      "LABEL baseline",
      "  KERNEL vmlinuz",
      `  APPEND initrd=initrd rdinit=/init console=ttyS0,115200n8 panic=10 bench.server=${serverAddress} bench.port=${nginxPort}`,
      "",
    ].join("\n"),
  );
}

const seconds = (ms: number) => (ms / 1000).toFixed(1);

function printCase(name: CaseName, timings: Timing[]): void {
  console.log(`\n${name}: wall ${timings.map((timing) => `${seconds(timing.wallMs)} s`).join(", ")}`);
  // Phases of the run nearest the median.
  const middle = median(timings.map((timing) => timing.wallMs));
  const typical = [...timings].sort(
    (a, b) => Math.abs(a.wallMs - middle) - Math.abs(b.wallMs - middle),
  )[0] as Timing;
  console.log(`  breakdown of the ${seconds(typical.wallMs)} s run:`);
  for (const [phase, ms] of typical.phases)
    console.log(`    ${phase.padEnd(52)} ${seconds(ms).padStart(6)} s`);
}

async function main(): Promise<void> {
  const skip = await missing();
  if (skip) {
    console.log(`recovery benchmark skipped: ${skip}`);
    return;
  }
  const haveHttpLoader = existsSync(httpLoaderFile);
  const work = await mkdtemp(path.join(tmpdir(), "rtr7-bench-recovery-"));
  await chmod(work, 0o755);
  const www = path.join(work, "www");
  const tftpRoot = path.join(work, "tftp");
  await mkdir(www, { mode: 0o755 });
  await mkdir(tftpRoot, { mode: 0o755 });
  const ns = await Netns.create("rbench");
  const lab: Lab = {
    work,
    www,
    tftpRoot,
    disk: path.join(work, "disk.img"),
    kernel: newestKernel(),
    ns,
    images: await makeImages(www, work),
  };
  const results = new Map<CaseName, Timing[]>();
  try {
    await ns.addTap("tap0", serverCidr);
    console.log("building (or reading from the cache) rtr7's recovery initramfs...");
    const { buildRecoveryInitramfs } = await import("../../updates/image/initramfs/builder.js");
    const built = await buildRecoveryInitramfs({ kernel: lab.kernel, log: silentLogger() });
    await prepareBaseline(lab);
    const baselineInitrdBytes = (await readFile(path.join(tftpRoot, "initrd"))).length;
    console.log(
      `images: mbr 512 B, boot 16 MiB, root 64 MiB (random), backup ${(await readFile(lab.images.backup)).length} B; ` +
        `rtr7 initramfs ${(built.bytes / MiB).toFixed(1)} MiB, baseline initramfs ${(baselineInitrdBytes / MiB).toFixed(1)} MiB; ` +
        `${rounds} round(s), alternating; each run ~1-3 min under software emulation`,
    );
    const cases: [CaseName, () => Promise<Timing>][] = [
      ["rtr7", () => runRtr7(lab, "tftp")],
      ["baseline", () => runBaseline(lab)],
    ];
    if (haveHttpLoader) cases.push(["rtr7 http", () => runRtr7(lab, "http")]);
    else console.log(`rtr7 http case skipped: ${httpLoaderFile} is missing (Debian's pxelinux)`);
    for (let round = 1; round <= rounds; round += 1) {
      for (const [name, runCase] of cases) {
        if (onlyCases && !onlyCases.includes(name)) continue;
        process.stdout.write(`round ${round}: ${name}... `);
        try {
          const timing = await runCase();
          console.log(`${seconds(timing.wallMs)} s`);
          results.set(name, [...(results.get(name) ?? []), timing]);
        } catch (error) {
          console.log(`failed: ${(error as Error).message.slice(0, 3000)}`);
        }
      }
    }
  } finally {
    await ns.destroy();
    await rm(work, { recursive: true, force: true });
  }
  report(results);
}

function report(results: Map<CaseName, Timing[]>): void {
  console.log("\nRecovery of a blank 2 GiB disk, QEMU start → QEMU exit (software emulation, one machine)");
  for (const [name, timings] of results) printCase(name, timings);
  const wall = (name: CaseName) => {
    const timings = results.get(name);
    return timings && timings.length > 0 ? median(timings.map((timing) => timing.wallMs)) : undefined;
  };
  const transfer = (name: CaseName) => {
    const values = (results.get(name) ?? []).flatMap((timing) =>
      timing.kernelInitrdMs === undefined ? [] : [timing.kernelInitrdMs],
    );
    return values.length > 0 ? median(values) : undefined;
  };
  console.log(
    `\n${"case".padEnd(12)} ${"median wall".padStart(12)} ${"kernel+initrd transfer".padStart(24)}`,
  );
  for (const name of ["rtr7", "rtr7 http", "baseline"] as CaseName[]) {
    const value = wall(name);
    if (value === undefined) continue;
    const moved = transfer(name);
    console.log(
      `${name.padEnd(12)} ${`${seconds(value)} s`.padStart(12)} ${(moved === undefined ? "?" : `${seconds(moved)} s`).padStart(24)}`,
    );
  }
  const ours = wall("rtr7");
  const peer = wall("baseline");
  if (ours !== undefined && peer !== undefined) {
    console.log(
      `\nrtr7 / baseline wall time: ${(ours / peer).toFixed(2)}x. The baseline does less: no image` +
        " verification (no manifest, no hash read-back), no /perm file system, no backup restore," +
        " no progress or success report, no session token, and a 1 MB busybox initramfs instead of rtr7's node one.",
    );
  }
  const tftp = transfer("rtr7");
  const http = transfer("rtr7 http");
  const httpWall = wall("rtr7 http");
  if (tftp !== undefined && http !== undefined && ours !== undefined && httpWall !== undefined) {
    console.log(
      `kernel+initramfs: TFTP ${seconds(tftp)} s, HTTP (lpxelinux) ${seconds(http)} s → ` +
        `${http < tftp ? `HTTP saves ${seconds(tftp - http)} s (${(tftp / http).toFixed(1)}x faster)` : `HTTP is not faster (${seconds(http - tftp)} s slower)`}; ` +
        `whole recovery ${seconds(ours)} s vs ${seconds(httpWall)} s.`,
    );
  }
}

await main();
