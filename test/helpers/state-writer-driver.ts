// A child process for test/unit/state-durability.test.ts: runs the unit's
// real state writers against a scratch directory (process mode's layout:
// DIR/perm, DIR/run), so the test can watch their system calls under strace
// or kill them part way through.
//
//   node state-writer-driver.js trace DIR
//     runs each writer once, between "begin NAME" and "end NAME" lines on
//     stdout (set-up a writer needs happens outside those lines);
//   node state-writer-driver.js loop NAME DIR
//     prints "ready", then rewrites one file for ever, alternating two
//     contents, and prints "wrote N" after the Nth write returned.
//
// stdout is a pipe, which node writes synchronously on Linux: each line is
// one write(2) to fd 1 that strace shows in order with the writers' calls.
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { pathToFileURL } from "node:url";
import type { NextBoot } from "../../router/boot/boot-control.js";
import { writeNextBoot } from "../../router/next-boot.js";
import { writeSlotState, type SlotState } from "../../router/update-api/slot-state.js";

/** The state writers the trace run calls, in order, each with the file it writes or removes. */
export const tracedWriters = [
  { name: "slot-state", file: "perm/rtr7/slots.json", how: "rename" },
  { name: "trial-record", file: "perm/rtr7/trial.json", how: "rename" },
  { name: "trial-record-removal", file: "perm/rtr7/trial.json", how: "unlink" },
  { name: "next-boot", file: "run/next-boot.json", how: "rename" },
  { name: "password", file: "perm/gokr-pw.txt", how: "link" },
  { name: "password-replacing-empty", file: "perm/gokr-pw.txt", how: "rename" },
  { name: "interfaces", file: "perm/interfaces.json", how: "rename" },
] as const;

export type LoopWriter = "slot-state" | "next-boot";

/** Two slot states for slot a, the second large (64 KiB) so that a kill often lands inside a write. */
export const alternatingSlotStates: [SlotState, SlotState] = [
  {
    state: "complete",
    algorithm: "sha256",
    hash: "ab".repeat(32),
    size: 4096,
    time: "2026-01-01T00:00:00.000Z",
  },
  { state: "invalid", why: "cut ".repeat(16 * 1024), time: "2026-01-02T00:00:00.000Z" },
];

export const alternatingNextBoots: [NextBoot, NextBoot] = [
  { slot: "a", trial: false, kexec: true },
  { slot: "b", trial: true, trialDeadlineMs: 5000, kexec: true },
];

/** Writes content `index` (0 or 1) of `writer` into DIR, as the unit would. */
export async function writeAlternating(writer: LoopWriter, dir: string, index: 0 | 1): Promise<void> {
  if (writer === "slot-state")
    await writeSlotState(path.join(dir, "perm"), "a", alternatingSlotStates[index]);
  else await writeNextBoot(dir, alternatingNextBoots[index]);
}

const say = (line: string): void => void process.stdout.write(line + "\n");

async function traced(
  name: (typeof tracedWriters)[number]["name"],
  run: () => Promise<unknown>,
): Promise<void> {
  say(`begin ${name}`);
  await run();
  say(`end ${name}`);
}

async function traceAll(dir: string): Promise<void> {
  // Imported here, so that a looping writer (killed and started again many
  // times) starts quickly.
  const { silentLogger } = await import("../../lib/log.js");
  const { writeInterfacesJson } = await import("../../recovery-init/perm.js");
  const { SyslinuxBootControl, settleTrialRecord } = await import("../../router/boot/boot-control.js");
  const { passwordFileName, readOrCreatePassword } = await import("../../router/update-api/password.js");
  const { fileBackedUnitPaths } = await import("./unit-paths.js");
  const paths = await fileBackedUnitPaths(dir);
  const control = new SyslinuxBootControl({
    paths,
    slot: "a",
    trial: false,
    log: silentLogger(),
    rebooter: () => Promise.resolve(),
  });
  await traced("slot-state", () => writeSlotState(paths.perm, "a", alternatingSlotStates[0]));
  // A trial record is written by the reboot that starts the trial.
  await control.testboot("b", { deadlineMs: 5000 });
  await traced("trial-record", () => control.reboot({ kexec: true }));
  // The next boot, back on slot a: the trial ended without a commit.
  await traced("trial-record-removal", () => settleTrialRecord(paths, { slot: "a", trial: false }));
  await traced("next-boot", () => writeNextBoot(dir, alternatingNextBoots[1]));
  await traced("password", () => readOrCreatePassword(paths.perm));
  await writeFile(path.join(paths.perm, passwordFileName), "");
  await traced("password-replacing-empty", () => readOrCreatePassword(paths.perm));
  const lease = { interfaceName: "eth0", mac: "52:54:00:12:34:56", address: "10.99.0.2", prefixLength: 24 };
  await traced("interfaces", () => writeInterfacesJson(paths.perm, lease, () => undefined));
}

async function loop(writer: LoopWriter, dir: string): Promise<never> {
  say("ready");
  for (let count = 1; ; count++) {
    await writeAlternating(writer, dir, (count % 2) as 0 | 1);
    say(`wrote ${count}`);
  }
}

async function main(argv: string[]): Promise<void> {
  const [mode, ...rest] = argv;
  if (mode === "trace" && rest[0]) return traceAll(rest[0]);
  if (mode === "loop" && (rest[0] === "slot-state" || rest[0] === "next-boot") && rest[1])
    return loop(rest[0], rest[1]);
  throw new Error(
    `usage: state-writer-driver trace DIR | loop slot-state|next-boot DIR (got ${argv.join(" ")})`,
  );
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(`state-writer-driver: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  });
}
