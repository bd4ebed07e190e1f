// npm run bench: power cuts at random moments of a whole update (issue 12),
// a reliability run, not a timing. For each way of writing a boot upload
// (the slot's files beside the committed ones, today; and the whole image
// copied over the boot partition in place, as before issue 12 and as
// gokrazy does, which a unit still does when /perm/rtr7/update.json says
// {"bootWrite": "image"}), with the same images:
//  1. one uncut v1 → v2 update (root, boot, mbr, testboot, reboot, the
//     trial healthy, commit) is measured: its wall time, and the bytes the
//     emulated disk took (QEMU's query-blockstats wr_bytes over QMP), in all
//     and during the boot upload;
//  2. N cuts (RTR7_BENCH_CUTS, default 20): each on a fresh copy of the v1
//     disk (cp --sparse=always), the same update is started and QEMU is
//     SIGKILLed after a random delay drawn over the measured duration; the
//     unit is started again (disk boot only, no option ROM on its NIC) and
//     counts as back when it answers healthy, not on trial, on v1 or v2,
//     with the update API naming that slot committed and /perm's marker files
//     whole.
// The two layouts' uncut updates run side by side, and their cuts are
// interleaved on two QEMUs at once (two cores), so both meet the same load.
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { Netns } from "../../lab/netns.js";
import { missingPrerequisite } from "../../lab/processes.js";
import { formatBytes } from "../../lib/log.js";
import {
  checkCommitted,
  paddedKernel,
  permMarkers,
  powerCut,
  runUpdate,
  startUnit,
  type RunningUnit,
  type UnitApi,
  type UpdateStep,
} from "../helpers/power-cut.js";
import { makeUnitDisk, waitForUnit } from "../helpers/qemu-unit.js";
import { removeUnitImages, unitImages } from "../helpers/unit-images.js";

const execFileAsync = promisify(execFile);
const hostname = "pcbench";
const mac = "52:54:00:12:34:72";
const address = "10.96.0.2";
const password = "pcbench-secret";
const cuts = Number(process.env.RTR7_BENCH_CUTS ?? 20);
const bootTimeoutMs = 180_000;

type LayoutKey = "slots" | "legacy";
const layoutNames: Record<LayoutKey, string> = {
  slots: "per-slot boot files",
  legacy: "whole-image boot write in place",
};

interface Layout {
  key: LayoutKey;
  v1: string;
  v2: string;
  /** The v1 disk every run starts from a copy of. */
  template: string;
  measured?: { seconds: number; bytes: number; bootBytes: number; bootSeconds: number };
  outcomes: { back: boolean; step: UpdateStep | "done"; note: string }[];
}

interface Worker {
  ns: Netns;
  api: UnitApi;
  qmpSocket: string;
  running?: RunningUnit;
}

const missing = await missingPrerequisite(
  ["qemu-system-x86_64", "mksquashfs", "mkfs.fat", "mcopy", "mdir", "syslinux", "mke2fs", "curl", "tar"],
  "network namespaces and tap devices",
);

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

if (missing) {
  console.log(`power cut: skipped (${missing})`);
} else {
  const work = await mkdtemp(path.join(tmpdir(), "rtr7-bench-pcut-"));
  const workers: Worker[] = [];
  const started = Date.now();
  try {
    const kernel = await paddedKernel(work);
    const markers = permMarkers();
    const permFiles = { ...markers, "gokr-pw.txt": `${password}\n` };
    const layouts: Layout[] = [];
    const [v1, v2] = await Promise.all([
      unitImages({ hostname, version: "v1" }),
      unitImages({ hostname, version: "v2", kernel }),
    ]);
    for (const key of ["slots", "legacy"] as const) {
      const dir = path.join(work, key);
      await mkdir(dir);
      const template = await makeUnitDisk({
        work: dir,
        imagesDir: v1,
        hostname,
        mac,
        address,
        password,
        permFiles:
          key === "legacy" ? { ...markers, "rtr7/update.json": '{"bootWrite": "image"}\n' } : markers,
      });
      layouts.push({ key, v1, v2, template, outcomes: [] });
    }
    for (const index of [1, 2]) {
      const ns = await Netns.create(`pcb${index}`);
      workers.push({ ns, api: { ns, address, password }, qmpSocket: path.join(work, `qmp-${index}.sock`) });
      await ns.addTap("tap0", "10.96.0.254/24");
    }

    /** A fresh copy of the layout's v1 disk, booted on `worker` and healthy on v1. */
    const freshUnit = async (worker: Worker, layout: Layout, disk: string): Promise<RunningUnit> => {
      await execFileAsync("cp", ["--sparse=always", layout.template, disk]);
      const running = await startUnit(worker.ns, { disk, mac, qmpSocket: worker.qmpSocket, bootTimeoutMs });
      worker.running = running;
      await waitForUnit(worker.ns, address, { version: "v1" }, 120_000);
      return running;
    };
    const stopUnit = async (worker: Worker): Promise<void> => {
      if (worker.running) await powerCut(worker.running.unit, worker.running.qmp);
      worker.running = undefined;
    };

    // 1. One uncut update per layout, side by side.
    await Promise.all(
      layouts.map(async (layout, index) => {
        const worker = workers[index] as Worker;
        const disk = path.join(work, `measure-${layout.key}.img`);
        const running = await freshUnit(worker, layout, disk);
        const marks = new Map<UpdateStep, { at: number; bytes: number }>();
        const begun = { at: Date.now(), bytes: await running.qmp.writtenBytes() };
        await runUpdate(worker.api, layout.v2, "v2", async (step) => {
          marks.set(step, { at: Date.now(), bytes: await running.qmp.writtenBytes() });
        });
        const end = { at: Date.now(), bytes: await running.qmp.writtenBytes() };
        const boot = marks.get("boot");
        const mbr = marks.get("mbr");
        layout.measured = {
          seconds: (end.at - begun.at) / 1000,
          bytes: end.bytes - begun.bytes,
          bootBytes: (mbr?.bytes ?? 0) - (boot?.bytes ?? 0),
          bootSeconds: ((mbr?.at ?? 0) - (boot?.at ?? 0)) / 1000,
        };
        await stopUnit(worker);
        await rm(disk, { force: true });
        console.log(
          `  ${layoutNames[layout.key]}: uncut update ${layout.measured.seconds.toFixed(0)} s, ${formatBytes(layout.measured.bytes)} written ` +
            `(boot upload ${layout.measured.bootSeconds.toFixed(1)} s, ${formatBytes(layout.measured.bootBytes)})`,
        );
      }),
    );

    // 2. The cuts, interleaved by layout, two QEMUs at once.
    const queue: { layout: Layout; number: number }[] = [];
    for (let number = 1; number <= cuts; number += 1)
      for (const layout of layouts) queue.push({ layout, number });
    const cutOnce = async (worker: Worker, layout: Layout, number: number): Promise<void> => {
      const disk = path.join(work, `cut-${worker.ns.name.slice(-4)}.img`);
      const cutStarted = Date.now();
      let step: UpdateStep | "done" = "root";
      let note: string;
      let back = false;
      try {
        const running = await freshUnit(worker, layout, disk);
        const delayMs = Math.random() * (layout.measured?.seconds ?? 60) * 1000;
        const cut = new AbortController();
        const update = runUpdate(
          worker.api,
          layout.v2,
          "v2",
          (next) => {
            step = next;
          },
          cut.signal,
        ).then(
          () => (step = "done"),
          () => undefined,
        );
        await Promise.race([sleep(delayMs), update]);
        cut.abort();
        await powerCut(running.unit, running.qmp);
        worker.running = undefined;
        // A request in flight at the cut fails on its own (the unit that comes
        // back resets its connection); no step starts after it.
        const cutDuring = step;
        try {
          worker.running = await startUnit(worker.ns, {
            disk,
            mac,
            qmpSocket: worker.qmpSocket,
            bootTimeoutMs,
          });
          const checked = await checkCommitted(worker.api, {
            versions: ["v1", "v2"],
            permFiles,
            scratch: path.join(work, `check-${worker.ns.name.slice(-4)}`),
            timeoutMs: 120_000,
          });
          back = true;
          note = `back on ${checked.health.version}`;
        } catch (error) {
          const lines = (error instanceof Error ? error.message : String(error))
            .split("\n")
            .filter((line) => line.trim() !== "");
          note = `NOT BACK: ${lines[0] ?? ""} (console: ${lines.at(-1)?.trim().slice(0, 100) ?? ""})`;
        }
        step = cutDuring;
        note = `cut ${(delayMs / 1000).toFixed(1)} s in (${step}): ${note}`;
      } catch (error) {
        note = `the run failed before its cut: ${error instanceof Error ? error.message.split("\n")[0] : String(error)}`;
      }
      await stopUnit(worker);
      await rm(disk, { force: true });
      layout.outcomes.push({ back, step, note });
      console.log(
        `  ${layoutNames[layout.key]} #${number}: ${note} [${((Date.now() - cutStarted) / 1000).toFixed(0)} s]`,
      );
    };
    await Promise.all(
      workers.map(async (worker) => {
        for (let next = queue.shift(); next; next = queue.shift())
          await cutOnce(worker, next.layout, next.number);
      }),
    );

    console.log(
      `\npower cuts at random moments of a v1 → v2 update (QEMU, software emulation; bytes: QEMU's wr_bytes over QMP)`,
    );
    console.log(
      `${"layout".padEnd(32)} ${"came back".padStart(10)} ${"update".padStart(8)} ${"written".padStart(10)} ${"boot upload".padStart(22)}`,
    );
    for (const layout of layouts) {
      const back = layout.outcomes.filter((outcome) => outcome.back).length;
      const measured = layout.measured;
      console.log(
        `${layoutNames[layout.key].padEnd(32)} ${`${back}/${layout.outcomes.length}`.padStart(10)} ` +
          `${`${measured?.seconds.toFixed(0) ?? "?"} s`.padStart(8)} ${formatBytes(measured?.bytes ?? 0).padStart(10)} ` +
          `${`${measured?.bootSeconds.toFixed(1) ?? "?"} s, ${formatBytes(measured?.bootBytes ?? 0)}`.padStart(22)}`,
      );
    }
    console.log(
      `(came back: healthy on a committed slot, v1 or v2, with /perm whole; ${((Date.now() - started) / 60_000).toFixed(0)} min in all)`,
    );
  } finally {
    for (const worker of workers) {
      if (worker.running) await powerCut(worker.running.unit, worker.running.qmp);
      await worker.ns.destroy();
    }
    await rm(work, { recursive: true, force: true });
    await removeUnitImages();
  }
}
