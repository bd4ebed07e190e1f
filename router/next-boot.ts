// Process mode's reboot: the suite writes DIR/run/next-boot.json (the slot,
// whether on trial, kexec or not) and exits; the lab's loop, playing
// firmware and boot loader, reads it (lab/unit.ts). Written atomically
// (lib/atomic-file.ts: temp file, fsync, rename, directory fsync), so a
// kill or a cut leaves the previous hand-off or this one, never a torn file.
import path from "node:path";
import { writeFileAtomically } from "../lib/atomic-file.js";
import type { NextBoot } from "./boot/boot-control.js";

export const nextBootFile = (dir: string): string => path.join(dir, "run", "next-boot.json");

export async function writeNextBoot(dir: string, next: NextBoot): Promise<void> {
  await writeFileAtomically(nextBootFile(dir), JSON.stringify(next) + "\n");
}
