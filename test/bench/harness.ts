// Shared pieces of the benchmarks (npm run bench): timing a client command,
// alternating runs of ours and the peer's so machine noise hits both alike,
// and printing a table with the ratio. No benchmark asserts on time.
import { spawn } from "node:child_process";

/** Runs a command to completion and returns its wall time in milliseconds. */
export function timeCommand(command: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(command, args, { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("error", reject);
    child.on("exit", (code) => {
      const elapsed = Number(process.hrtime.bigint() - started) / 1e6;
      if (code === 0) resolve(elapsed);
      else reject(new Error(`${command} ${args.join(" ")} exited ${code}: ${stderr.trim()}`));
    });
  });
}

export interface Contender {
  name: string;
  run(): Promise<number>;
}

export interface Comparison {
  label: string;
  ours: number[];
  peer: number[];
}

/** Alternates ours and the peer `rounds` times after one warm-up each. */
export async function compare(
  label: string,
  ours: Contender,
  peer: Contender,
  rounds: number,
): Promise<Comparison> {
  await ours.run();
  await peer.run();
  const result: Comparison = { label, ours: [], peer: [] };
  for (let round = 0; round < rounds; round += 1) {
    result.ours.push(await ours.run());
    result.peer.push(await peer.run());
  }
  return result;
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[middle] as number)
    : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

/**
 * Prints one line per comparison: median times and the speed ratio
 * (peer time / our time: above 1 means we are faster).
 */
export function printComparisons(
  title: string,
  peerName: string,
  comparisons: Comparison[],
  bytes?: number,
): void {
  console.log(`\n${title}`);
  console.log(
    `${"case".padEnd(28)} ${"rtr7 (ms)".padStart(10)} ${`${peerName} (ms)`.padStart(16)} ${"speed ratio".padStart(12)}`,
  );
  for (const comparison of comparisons) {
    const ours = median(comparison.ours);
    const peer = median(comparison.peer);
    const rate = bytes
      ? `  (${(bytes / 1024 / 1024 / (ours / 1000)).toFixed(0)} MiB/s vs ${(bytes / 1024 / 1024 / (peer / 1000)).toFixed(0)} MiB/s)`
      : "";
    console.log(
      `${comparison.label.padEnd(28)} ${ours.toFixed(0).padStart(10)} ${peer.toFixed(0).padStart(16)} ${(peer / ours).toFixed(2).padStart(11)}x${rate}`,
    );
  }
}
