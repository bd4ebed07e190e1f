// npm run bench: the connectivity gap of an update — the last healthy
// answer before the reboot to the first after — with kexec (rtr7's default)
// against a full reboot through the firmware (--no-kexec), on the same QEMU
// unit in the same run. Each round updates the unit to the other version.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Netns } from "../../lab/netns.js";
import { missingPrerequisite } from "../../lab/processes.js";
import { cliEntry } from "../helpers/paths.js";
import { startDiskUnit, waitForUnit } from "../helpers/qemu-unit.js";
import { jsonEvents } from "../helpers/scratch.js";
import { removeUnitImages, unitImages } from "../helpers/unit-images.js";
import { median } from "./harness.js";

const hostname = "bench5";
const address = "10.95.0.2";
const password = "bench-secret";
const rounds = Number(process.env.RTR7_BENCH_ROUNDS ?? 2);

const missing = await missingPrerequisite(["qemu-system-x86_64", "mksquashfs", "curl"], "a tap device");
if (missing) {
  console.log(`update gap: skipped (${missing})`);
} else {
  const images = {
    v1: await unitImages({ hostname, version: "v1" }),
    v2: await unitImages({ hostname, version: "v2" }),
  };
  const work = await mkdtemp(path.join(tmpdir(), "rtr7-bench-gap-"));
  const ns = await Netns.create("gap");
  try {
    await ns.addTap("tap0", "10.95.0.254/24");
    const { unit } = await startDiskUnit({
      ns,
      work,
      imagesDir: images.v1,
      hostname,
      mac: "52:54:00:12:34:62",
      address,
      password,
    });
    await waitForUnit(ns, address, { version: "v1" }, 120_000);
    let current: "v1" | "v2" = "v1";
    const gaps: Record<"kexec" | "firmware", number[]> = { kexec: [], firmware: [] };
    for (let round = 0; round < rounds; round += 1) {
      for (const how of ["kexec", "firmware"] as const) {
        const next: "v1" | "v2" = current === "v1" ? "v2" : "v1";
        const update = ns.start(
          process.execPath,
          [
            cliEntry,
            "safe-update",
            "--hostname",
            hostname,
            "--address",
            address,
            "--updates-dir",
            path.join(work, "updates"),
            "--build-command",
            `cp "${images[next]}"/*.img "$RTR7_OUT_DIR"/`,
            "--health-timeout",
            "5m",
            how === "kexec" ? "--kexec" : "--no-kexec",
            "--json",
          ],
          { env: { ...process.env, RTR7_PASSWORD: password, XDG_CONFIG_HOME: path.join(work, "config") } },
        );
        const code = await update.exited(15 * 60_000);
        const updated = jsonEvents(update.output()).find((event) => event.event === "updated");
        if (code !== 0 || !updated)
          throw new Error(
            `safe-update failed:\n${update.output().slice(-3000)}\n${unit.output().slice(-2000)}`,
          );
        gaps[how].push(Number(updated.gapSeconds));
        console.log(
          `  round ${round + 1}, ${how}: ${current} → ${next}, gap ${Number(updated.gapSeconds).toFixed(1)} s`,
        );
        current = next;
      }
    }
    const kexec = median(gaps.kexec);
    const firmware = median(gaps.firmware);
    console.log(
      `update gap (QEMU, software emulation): kexec ${kexec.toFixed(1)} s, full reboot ${firmware.toFixed(1)} s ` +
        `→ kexec is ${(firmware / kexec).toFixed(2)}x shorter`,
    );
  } finally {
    await ns.destroy();
    await rm(work, { recursive: true, force: true });
    await removeUnitImages();
  }
}
