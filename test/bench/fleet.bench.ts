// `rtr7 fleet update` at scale: a release rolled out to 50 and to 500
// simulated units (lab/sim-fleet.ts: the update API, diagd and backupd of a
// real unit, each on its own loopback address 127.0.x.y, all of them in one
// child process so their CPU and memory are counted apart from the CLI's).
// The CLI runs as it would for a user (node bin/run.js fleet update
// --release DIR --select 'sim-*' --canary 0 --parallel P --soak 0s --json),
// reaching the units through its inventory file. In the same run:
//   - one unit's time: a rollout to one unit, the median of five;
//   - 50 and 500 units, each at --parallel 10 and at --parallel 50;
// and for each: the rollout's wall time against the ideal, ceil(units /
// parallel) × one unit's time (goal: within 1.2x), and each unit's own
// time in it; the CLI's peak RSS and how it grows per unit from 50 to 500
// units at the same --parallel (goal: under 100 KiB a unit); the
// state store's size (fleet.sqlite with its -wal and -shm, after the CLI
// exits, and in brackets as the CLI saw it at its end); the sims' CPU
// time, to show they are not the bottleneck; and whether every unit ended
// healthy and committed on the new version (asked with rtr7's own client).
// Needs root (the units listen on port 80) and the squashfs tools. Sized by
//   RTR7_BENCH_FLEET_UNITS        the large fleet (default 500)
//   RTR7_BENCH_FLEET_SMALL        the small fleet (default 50)
//   RTR7_BENCH_FLEET_SLOW_UNITS   units of the --parallel 10 run on the large fleet (default all)
//   RTR7_BENCH_FLEET_DOWN_MS      how long a sim unit's reboot keeps it down (default 2000: a
//                                 quick kexec; router7's units are gone ~13 s. At 300 ms a unit
//                                 takes 0.6 s and the CLI's ~30 ms of CPU per unit decides a wave of 50)
//   RTR7_BENCH_FLEET_ROUNDS       one-unit rollouts for the median (default 5)
//   RTR7_BENCH_FLEET_CLI          the CLI's entry script (default bin/run.js; another build to compare)
// Never asserts on time.
import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { availableParallelism, tmpdir } from "node:os";
import path from "node:path";
import { haveTool, missingPrerequisite } from "../../lab/processes.js";
import { makeSimRelease } from "../../lab/sim-fleet-release.js";
import { cliEntry, repoPath } from "../helpers/paths.js";
import { fleetHealth, startSimFleetProcess, type SimFleetProcess } from "../helpers/sim-fleet-process.js";
import { median } from "./harness.js";

const env = process.env;
const largeCount = Number(env.RTR7_BENCH_FLEET_UNITS ?? 500);
const smallCount = Math.min(Number(env.RTR7_BENCH_FLEET_SMALL ?? 50), largeCount);
const slowCount = Math.min(Number(env.RTR7_BENCH_FLEET_SLOW_UNITS ?? largeCount), largeCount);
const downMs = Number(env.RTR7_BENCH_FLEET_DOWN_MS ?? 2000);
const rounds = Number(env.RTR7_BENCH_FLEET_ROUNDS ?? 5);
const password = "sim-fleet-bench-password";
const firstAddress = "127.0.1.1";
const commandModule = repoPath("dist/cli/commands/fleet/update.js");
const cliScript = env.RTR7_BENCH_FLEET_CLI ?? cliEntry;

interface Rollout {
  label: string;
  units: number;
  parallel: number;
  version: string;
  status: string;
  /** The CLI process, start to exit. */
  processMs: number;
  /** The rollout's own time (rollout-end's wallMs), else the process's. */
  rolloutMs: number;
  peakRssKiB: number;
  cliCpuMs: number | undefined;
  simCpuMs: number;
  storeBytes: number;
  /** The store as the CLI saw it at its end, its WAL not yet checkpointed. */
  storeBytesAtEnd: number | undefined;
  /** Each unit's own time, unit-start to unit-end (median, max). */
  unitMs: { median: number; max: number } | undefined;
  /** Trials the sims saw fall back by themselves. */
  fallbacks: number;
  /** Units healthy and committed on the version afterwards. */
  onVersion: number;
  notOnVersion: string[];
  exitCode: number | string;
}

/** fleet.sqlite with its -wal and -shm, in bytes. */
async function storeSize(updatesDir: string): Promise<number> {
  let total = 0;
  for (const suffix of ["", "-wal", "-shm"]) {
    const info = await stat(path.join(updatesDir, `fleet.sqlite${suffix}`)).catch(() => undefined);
    total += info?.size ?? 0;
  }
  return total;
}

/** Runs the CLI under GNU time (its CPU and peak RSS measured from outside); its stdout, exit and times. */
function runCli(
  args: string[],
  childEnv: NodeJS.ProcessEnv,
  timeFile: string | undefined,
  timeoutMs: number,
) {
  return new Promise<{ stdout: string; stderr: string; code: number | string; ms: number }>((resolve) => {
    const node = [process.execPath, cliScript, ...args];
    const [command, ...rest] = timeFile
      ? ["/usr/bin/time", "-f", "%e %U %S %M", "-o", timeFile, ...node]
      : node;
    const started = performance.now();
    const child = spawn(command as string, rest, { env: childEnv, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill("SIGTERM"), timeoutMs);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ stdout, stderr, code: code ?? signal ?? "unknown", ms: performance.now() - started });
    });
  });
}

function jsonLines(output: string): Record<string, unknown>[] {
  return output
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => {
      try {
        return JSON.parse(line) as Record<string, unknown>;
      } catch {
        return {};
      }
    });
}

/** Each unit's time from its unit-start event to its unit-end event. */
function unitTimes(events: Record<string, unknown>[]): { median: number; max: number } | undefined {
  const started = new Map<string, number>();
  const times: number[] = [];
  for (const event of events) {
    if (typeof event.unit !== "string" || typeof event.time !== "string") continue;
    if (event.event === "unit-start") started.set(event.unit, Date.parse(event.time));
    const start = started.get(event.unit);
    if (event.event === "unit-end" && start !== undefined) times.push(Date.parse(event.time) - start);
  }
  return times.length === 0 ? undefined : { median: median(times), max: Math.max(...times) };
}

async function main(): Promise<void> {
  const missing = await missingPrerequisite(
    ["mksquashfs", "unsquashfs"],
    "the simulated units listen on port 80",
  );
  if (missing) return console.log(`fleet bench skipped: ${missing}`);
  if (!existsSync(commandModule))
    return console.log(
      `fleet bench skipped: \`rtr7 fleet update\` is not built (${commandModule} is missing)`,
    );
  const useTime = await haveTool("/usr/bin/time");

  const work = await mkdtemp(path.join(tmpdir(), "rtr7-fleet-bench-"));
  let sims: SimFleetProcess | undefined;
  try {
    // v1 the units start on; one more release per rollout, so every rollout changes every unit it touches.
    const versions = ["v1", ...Array.from({ length: rounds + 4 }, (_unused, index) => `v${index + 2}`)];
    const releases = await Promise.all(
      versions.map((version) => makeSimRelease(path.join(work, "releases", version), version)),
    );
    const simStarted = performance.now();
    sims = await startSimFleetProcess({ count: largeCount, firstAddress, releases, downMs }, password);
    console.log(
      `${largeCount} simulated units up in ${((performance.now() - simStarted) / 1000).toFixed(1)} s (${firstAddress} on), reboots down for ${downMs} ms`,
    );
    const fleet = sims;
    const configHome = path.join(work, "config");
    await mkdir(path.join(configHome, "rtr7"), { recursive: true });
    let nextRelease = 1;

    const rollout = async (label: string, units: number, parallel: number): Promise<Rollout> => {
      const release = releases[nextRelease] as string;
      const version = versions[nextRelease] as string;
      nextRelease += 1;
      const chosen = fleet.units.slice(0, units);
      const inventory = { units: chosen.map(({ hostname, address }) => ({ hostname, address })) };
      await writeFile(path.join(configHome, "rtr7", "fleet.json"), `${JSON.stringify(inventory, null, 2)}\n`);
      const updatesDir = path.join(work, `updates-${nextRelease}`);
      await mkdir(updatesDir, { recursive: true });
      const timeFile = useTime ? path.join(work, `time-${nextRelease}.txt`) : undefined;
      const before = await fleet.stats();
      const cli = await runCli(
        [
          "fleet",
          "update",
          "--release",
          release,
          "--select",
          "sim-*",
          "--canary",
          "0",
          "--parallel",
          String(parallel),
          "--soak",
          "0s",
          "--no-browse",
          "--json",
          "--updates-dir",
          updatesDir,
          "--health-timeout",
          "30s",
        ],
        { ...process.env, XDG_CONFIG_HOME: configHome, RTR7_PASSWORD: password },
        timeFile,
        30 * 60_000,
      );
      const after = await fleet.stats();
      const events = jsonLines(`${cli.stdout}\n${cli.stderr}`);
      const end = events.filter((event) => event.event === "rollout-end").at(-1);
      if (!end)
        console.log(
          `  ${label}: no rollout-end event (exit ${cli.code}); last output:\n${(cli.stdout + cli.stderr).split("\n").slice(-15).join("\n")}`,
        );
      const time = timeFile
        ? (await readFile(timeFile, "utf8")).trim().split("\n").at(-1)?.split(" ").map(Number)
        : undefined;
      const reports = await fleetHealth(chosen);
      const notOnVersion = chosen
        .filter((_unit, index) => {
          const report = reports[index];
          return !report || report.version !== version || report.trial || report.first_error !== "";
        })
        .map((unit) => unit.hostname);
      return {
        label,
        units,
        parallel,
        version,
        status: typeof end?.status === "string" ? end.status : "?",
        processMs: cli.ms,
        rolloutMs: typeof end?.wallMs === "number" ? end.wallMs : cli.ms,
        peakRssKiB: typeof end?.peakRssKiB === "number" ? end.peakRssKiB : (time?.[3] ?? 0),
        cliCpuMs: time ? ((time[1] ?? 0) + (time[2] ?? 0)) * 1000 : undefined,
        unitMs: unitTimes(events),
        fallbacks: after.fallbacks - before.fallbacks,
        simCpuMs: after.cpuUserMs + after.cpuSystemMs - before.cpuUserMs - before.cpuSystemMs,
        storeBytes: await storeSize(updatesDir),
        storeBytesAtEnd: typeof end?.storeBytes === "number" ? end.storeBytes : undefined,
        onVersion: units - notOnVersion.length,
        notOnVersion,
        exitCode: cli.code,
      };
    };

    const singles: Rollout[] = [];
    for (let round = 0; round < rounds; round += 1)
      singles.push(await rollout(`1 unit (round ${round + 1})`, 1, 1));
    const oneUnitMs = median(singles.map((single) => single.rolloutMs));
    const runs = [
      await rollout(`${smallCount} units`, smallCount, 10),
      await rollout(`${smallCount} units`, smallCount, 50),
      await rollout(`${largeCount} units`, largeCount, 50),
      await rollout(`${slowCount} units`, slowCount, 10),
    ];
    report(singles, oneUnitMs, runs);
  } finally {
    await sims?.stop();
    await rm(work, { recursive: true, force: true });
  }
}

function report(singles: Rollout[], oneUnitMs: number, runs: Rollout[]): void {
  const seconds = (ms: number) => (ms / 1000).toFixed(1);
  const mib = (kib: number) => `${(kib / 1024).toFixed(0)} MiB`;
  const kib = (bytes: number) =>
    bytes >= 10 * 1024 * 1024
      ? `${(bytes / 1024 / 1024).toFixed(0)} MiB`
      : `${(bytes / 1024).toFixed(0)} KiB`;
  const [load1, load5] = readFileSync("/proc/loadavg", "utf8").split(" ");
  console.log(
    `\nOne unit's time: ${seconds(oneUnitMs)} s (median rollout of ${singles.length}: ${singles.map((single) => seconds(single.rolloutMs)).join(", ")} s; the CLI process ${seconds(median(singles.map((single) => single.processMs)))} s). Load average now ${load1}, ${load5} (5 min) on ${availableParallelism()} CPUs.`,
  );
  const columns: [string, number][] = [
    ["rollout", -10],
    ["parallel", 8],
    ["wall (s)", 9],
    ["ideal (s)", 9],
    ["ratio", 7],
    ["unit med/max (s)", 16],
    ["peak RSS", 9],
    ["CLI CPU", 8],
    ["sims' CPU", 9],
    ["store (at end)", 18],
  ];
  const row = (cells: string[]) =>
    cells
      .map((cell, index) => {
        const width = (columns[index] as [string, number])[1];
        return width < 0 ? cell.padEnd(-width) : cell.padStart(width);
      })
      .join(" ");
  console.log(`\n${row(columns.map(([name]) => name))}  result`);
  for (const run of [...singles.slice(0, 1), ...runs]) {
    const ideal = Math.ceil(run.units / run.parallel) * oneUnitMs;
    const result =
      run.notOnVersion.length === 0
        ? `${run.status}, all ${run.units} on ${run.version}`
        : `${run.status} (exit ${run.exitCode}), ${run.onVersion}/${run.units} on ${run.version}; not: ${run.notOnVersion.slice(0, 5).join(", ")}${run.notOnVersion.length > 5 ? ", ..." : ""}`;
    const cells = [
      `${run.units} unit${run.units === 1 ? "" : "s"}`,
      String(run.parallel),
      seconds(run.rolloutMs),
      seconds(ideal),
      `${(run.rolloutMs / ideal).toFixed(2)}x`,
      run.unitMs ? `${seconds(run.unitMs.median)}/${seconds(run.unitMs.max)}` : "?",
      mib(run.peakRssKiB),
      run.cliCpuMs === undefined ? "?" : `${seconds(run.cliCpuMs)} s`,
      `${seconds(run.simCpuMs)} s`,
      `${kib(run.storeBytes)}${run.storeBytesAtEnd === undefined ? "" : ` (${kib(run.storeBytesAtEnd)})`}`,
    ];
    const fallbacks = run.fallbacks > 0 ? ` (${run.fallbacks} trials fell back)` : "";
    console.log(`${row(cells)}  ${result}${fallbacks}`);
  }
  const [small, , wide, narrow] = runs as [Rollout, Rollout, Rollout, Rollout];
  const growth = (from: Rollout, to: Rollout) =>
    `${mib(from.peakRssKiB)} at ${from.units} units (--parallel ${from.parallel}) → ${mib(to.peakRssKiB)} at ${to.units} (--parallel ${to.parallel}): ${((to.peakRssKiB - from.peakRssKiB) / (to.units - from.units)).toFixed(1)} KiB per unit`;
  if (narrow.units > small.units) console.log(`\nPeak RSS growth: ${growth(small, narrow)} (goal < 100)`);
  if (wide.units > small.units) console.log(`Peak RSS growth with wider waves: ${growth(small, wide)}`);
  const worst = Math.max(
    ...runs.map((run) => run.rolloutMs / (Math.ceil(run.units / run.parallel) * oneUnitMs)),
  );
  console.log(
    `Worst wall/ideal ratio: ${worst.toFixed(2)}x (goal <= 1.2x). A unit's own time (unit med/max) above one unit's time means the units slowed each other down (the CLI's CPU, the disk's fsyncs); a wall above waves × unit max, time between waves.`,
  );
  const perUnit = runs
    .filter((run) => run.cliCpuMs !== undefined && run.units >= 50)
    .map((run) => ((run.cliCpuMs ?? 0) - (singles[0]?.cliCpuMs ?? 0)) / (run.units - 1));
  if (perUnit.length > 0)
    console.log(
      `The CLI's CPU per unit beyond a one-unit rollout: ${perUnit.map((ms) => `${ms.toFixed(0)} ms`).join(", ")} (a wave of P units needs P × this of one core).`,
    );
  const simShare = Math.max(...runs.map((run) => run.simCpuMs / run.rolloutMs));
  console.log(
    `The sims used at most ${(simShare * 100).toFixed(0)}% of one core during a rollout: ${simShare < 0.5 ? "not the bottleneck" : "a large share; read the ratios with care"}.`,
  );
}

await main();
