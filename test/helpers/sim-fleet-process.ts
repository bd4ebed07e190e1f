// The simulated fleet (lab/sim-fleet-main.ts) as a child process, for the
// fleet bench: started with its options as JSON and the password in the
// environment, ready once it prints its units, asked for its counters and
// CPU time over stdin, and stopped by its PID. A process of its own so the
// CLI's memory and CPU are measured apart from the sims'.
import { repoPath } from "./paths.js";
import { start, type Started } from "../../lab/processes.js";
import type { SimFleetOptions, SimStats } from "../../lab/sim-fleet.js";
import { probeUnitHealth } from "../../updates/client/index.js";
import type { HealthReport } from "../../lib/wire/health.js";

export interface SimProcessStats extends SimStats {
  cpuUserMs: number;
  cpuSystemMs: number;
  peakRssKiB: number;
}

export interface SimFleetProcess {
  readonly pid: number;
  units: { hostname: string; address: string }[];
  stats(): Promise<SimProcessStats>;
  stop(): Promise<void>;
}

export async function startSimFleetProcess(
  options: Omit<SimFleetOptions, "password" | "log">,
  password: string,
): Promise<SimFleetProcess> {
  const started: Started = start(
    process.execPath,
    [repoPath("dist/lab/sim-fleet-main.js"), JSON.stringify(options)],
    { env: { ...process.env, RTR7_SIM_PASSWORD: password } },
  );
  let ready: { units: { hostname: string; address: string }[] };
  try {
    ready = JSON.parse(await started.waitForLine(/"event":"ready"/, 120_000)) as typeof ready;
  } catch (error) {
    await started.stop();
    throw error;
  }
  let asked = 0;
  return {
    pid: started.pid,
    units: ready.units,
    async stats() {
      asked += 1;
      const id = `s${asked}`;
      started.child.stdin?.write(`stats ${id}\n`);
      return JSON.parse(await started.waitForLine(new RegExp(`"id":"${id}"`), 30_000)) as SimProcessStats;
    },
    stop: () => started.stop(5000),
  };
}

/** Every unit's health report (undefined: no answer), asked with rtr7's own client, `parallel` at a time. */
export async function fleetHealth(
  units: { address: string }[],
  parallel = 50,
): Promise<(HealthReport | undefined)[]> {
  const reports: (HealthReport | undefined)[] = new Array<HealthReport | undefined>(units.length);
  let next = 0;
  const worker = async () => {
    while (next < units.length) {
      const index = next++;
      reports[index] = await probeUnitHealth(
        { host: (units[index] as { address: string }).address },
        { timeoutMs: 5000 },
      );
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, units.length) }, worker));
  return reports;
}
