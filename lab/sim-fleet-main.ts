// The simulated fleet (lab/sim-fleet.ts) as a process of its own, so a
// bench measures the CLI's memory and CPU apart from the sims'. Started as
//   node dist/lab/sim-fleet-main.js '{"count": 500, "releases": [...], ...}'
// (SimFleetOptions as JSON, less the password, which comes in
// RTR7_SIM_PASSWORD), it prints one JSON line {"event": "ready", "units":
// [...]} once every unit listens. A line "stats ID" on stdin is answered
// with {"event": "stats", "id": "ID", ...}: the sims' request counters and
// this process's CPU time and peak RSS; "states ID" with every unit's
// version, slot and trial flag. SIGTERM (or stdin closing) stops every
// unit and exits.
import { createInterface } from "node:readline";
import { describeError } from "../lib/errors.js";
import { startSimFleet, type SimFleet, type SimFleetOptions } from "./sim-fleet.js";

function statsLine(fleet: SimFleet, id: string): string {
  const cpu = process.cpuUsage();
  return JSON.stringify({
    event: "stats",
    id,
    ...fleet.stats,
    cpuUserMs: cpu.user / 1000,
    cpuSystemMs: cpu.system / 1000,
    peakRssKiB: process.resourceUsage().maxRSS,
  });
}

async function main(): Promise<void> {
  const options = JSON.parse(process.argv[2] ?? "{}") as Omit<SimFleetOptions, "password">;
  const password = process.env.RTR7_SIM_PASSWORD;
  if (!password) throw new Error("set RTR7_SIM_PASSWORD to the units' update password");
  const fleet = await startSimFleet({ ...options, password });
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    void fleet.stop().then(() => process.exit(0));
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  const input = createInterface({ input: process.stdin });
  input.on("line", (line) => {
    const [command, id = ""] = line.trim().split(/\s+/);
    if (command === "stats") process.stdout.write(`${statsLine(fleet, id)}\n`);
    if (command === "states")
      process.stdout.write(`${JSON.stringify({ event: "states", id, states: fleet.states() })}\n`);
  });
  input.on("close", stop);
  process.stdout.write(`${JSON.stringify({ event: "ready", units: fleet.units })}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`sim-fleet: ${describeError(error)}\n`);
  process.exit(1);
});
