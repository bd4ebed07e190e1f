// End to end in QEMU (issue 12): a unit is updated v1 → v2 with the update
// API's own steps (PUT root, boot, mbr; POST testboot, reboot, commit) and
// its power is cut (SIGKILL of QEMU) at six points of the update:
//   a. in the middle of the root push (half of root.img sent, and the disk
//      busy writing it),
//   b. in the middle of the boot partition's write (the disk took half of
//      the new kernel's bytes since the upload began; the disk's writes are
//      throttled for this step so the cut lands inside),
//   c. during the MBR write (the unit logged that it writes the boot code),
//   d. just after testboot answered,
//   e. during the trial boot (the trial kernel's boot initrd is running),
//   f. during commit (the unit logged that it commits the slot).
// After each cut the same disk, as QEMU left it, is started again, disk
// boot only (the NIC has no option ROM: nothing can rescue the unit over
// the network): it must boot a committed slot (v1, or v2 after f), answer
// healthy, and still hold /perm's marker files. Points are chosen from the
// console and the disk's write counters (QMP), never by sleeping. One disk
// for all six: each point runs the update again from its start, and f comes
// last, since a unit back on v2 committed has no v1 → v2 update left to cut.
// Points c, d and e skip the root push: slot b holds v2's root whole since
// point b's upload of it ended before that cut (the unit keeps the slot's
// state in /perm), so the disk is as a fresh push would leave it.
import assert from "node:assert/strict";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { Netns } from "../../lab/netns.js";
import { missingPrerequisite } from "../../lab/processes.js";
import {
  checkCommitted,
  consoleMark,
  paddedKernel,
  permMarkers,
  postAction,
  powerCut,
  putImage,
  putPartially,
  startAction,
  startUnit,
  waitForConsole,
  waitForWrites,
  type RunningUnit,
  type UnitApi,
} from "../helpers/power-cut.js";
import { makeUnitDisk, waitForUnit } from "../helpers/qemu-unit.js";
import { removeUnitImages, unitImages } from "../helpers/unit-images.js";

const hostname = "pcut";
const mac = "52:54:00:12:34:71";
const address = "10.97.0.2";
const password = "pcut-secret";
const bootTimeoutMs = 240_000;
/** The boot write's pace while a cut waits inside it: a few seconds for the new kernel. */
const throttledBootWriteBytesPerSecond = 2 * 1024 * 1024;

const skip = await missingPrerequisite(
  ["qemu-system-x86_64", "mksquashfs", "mkfs.fat", "mcopy", "syslinux", "mke2fs", "curl", "tar", "busybox"],
  "network namespaces and a tap device",
);

interface CutResult {
  point: string;
  cut: string;
  version: string;
  slot: string;
  backSeconds: number;
}

describe("power cuts during a v1 → v2 update of a QEMU unit", { skip, timeout: 20 * 60_000 }, () => {
  let work: string;
  let ns: Netns;
  let disk: string;
  let qmpSocket: string;
  let images: { v1: string; v2: string };
  let v2Kernel: string;
  let running: RunningUnit | undefined;
  const markers = permMarkers();
  const permFiles = { ...markers, "gokr-pw.txt": `${password}\n` };
  const results: CutResult[] = [];
  let api: UnitApi;
  const started = Date.now();

  const image = (version: "v1" | "v2", name: string): string => path.join(images[version], name);
  const context = (): string => `--- console:\n${running?.unit.output().slice(-4000) ?? ""}`;
  const current = (): RunningUnit => {
    assert.ok(running, "the unit is not running (an earlier point failed to bring it back)");
    return running;
  };

  /** Cuts the power, starts the unit again on the same disk and checks it came back committed. */
  const cutAndCheck = async (point: string, cut: string, versions: string[]): Promise<CutResult> => {
    const unit = current();
    await powerCut(unit.unit, unit.qmp);
    running = undefined;
    const cutAt = Date.now();
    running = await startUnit(ns, { disk, mac, qmpSocket, bootTimeoutMs });
    const back = await checkCommitted(api, {
      versions,
      permFiles,
      scratch: path.join(work, "check"),
      timeoutMs: 120_000,
      context,
    });
    const result: CutResult = {
      point,
      cut,
      version: back.health.version,
      slot: back.health.slot,
      backSeconds: (Date.now() - cutAt) / 1000,
    };
    results.push(result);
    console.log(
      `power cut ${point} (${cut}): back on ${result.version} (slot ${result.slot}, committed, healthy, /perm whole) ${result.backSeconds.toFixed(0)} s after the cut`,
    );
    return result;
  };

  before(async () => {
    if (skip) return;
    work = await mkdtemp(path.join(tmpdir(), "rtr7-e2e-pcut-"));
    qmpSocket = path.join(work, "qmp.sock");
    v2Kernel = await paddedKernel(work);
    const [v1, v2] = await Promise.all([
      unitImages({ hostname, version: "v1" }),
      unitImages({ hostname, version: "v2", kernel: v2Kernel }),
    ]);
    images = { v1, v2 };
    ns = await Netns.create("pcut");
    await ns.addTap("tap0", "10.97.0.254/24");
    api = { ns, address, password };
    disk = await makeUnitDisk({ work, imagesDir: v1, hostname, mac, address, password, permFiles: markers });
    running = await startUnit(ns, { disk, mac, qmpSocket, bootTimeoutMs });
    await waitForUnit(ns, address, { version: "v1" }, 60_000, context);
    console.log(
      `power cut: images built and v1 up ${((Date.now() - started) / 1000).toFixed(0)} s after the start`,
    );
  });

  after(async () => {
    if (running) await powerCut(running.unit, running.qmp);
    await ns?.destroy();
    if (work) await rm(work, { recursive: true, force: true });
    await removeUnitImages();
    if (results.length > 0) {
      console.log(`power cut: ${results.length} cuts in ${((Date.now() - started) / 1000).toFixed(0)} s`);
      for (const result of results)
        console.log(
          `  ${result.point.padEnd(3)} ${result.cut.padEnd(44)} → ${result.version} (slot ${result.slot})`,
        );
    }
  });

  test("a. in the middle of the root push", async () => {
    const unit = current();
    const root = image("v2", "root.img");
    const half = Math.floor((await stat(root)).size / 2);
    const before = await unit.qmp.writtenBytes();
    const { curl, fed } = await putPartially(api, "root", root, half);
    // The unit writes in 1 MiB batches and reads each 16 MiB back past its
    // page cache: the disk has taken a good part of what was sent.
    await waitForWrites(unit.qmp, before, Math.floor(half / 2), 60_000);
    const result = await cutAndCheck("a", `${fed} of ${2 * half} root bytes sent`, ["v1"]);
    await curl.stop(1000);
    assert.equal(result.version, "v1");
  });

  test("b. in the middle of the boot partition's write", async () => {
    const unit = current();
    await putImage(api, "root", image("v2", "root.img"));
    const kernelBytes = (await stat(v2Kernel)).size;
    await unit.qmp.throttleWrites(throttledBootWriteBytesPerSecond);
    // The upload is staged in /run (memory) first: what the disk takes
    // during PUT /update/boot is the new slot's boot files. (The unit's
    // "writing slot b's boot files" line reaches the console only once that
    // write is over, so the disk's counter is what times this cut.)
    const from = await unit.qmp.writtenBytes();
    let replied = false;
    const push = putImage(api, "boot", image("v2", "boot.img")).then(
      () => (replied = true),
      () => undefined,
    );
    const at = await waitForWrites(unit.qmp, from, Math.floor(kernelBytes / 2), 120_000);
    assert.equal(replied, false, "the boot upload finished before the cut: no cut inside its write");
    const result = await cutAndCheck("b", `${at - from} bytes into the boot files' write`, ["v1"]);
    await push;
    assert.equal(result.version, "v1");
  });

  test("c. during the MBR write", async () => {
    const unit = current();
    await putImage(api, "boot", image("v2", "boot.img"));
    const mark = consoleMark(unit.unit);
    let replied = false;
    const push = putImage(api, "mbr", image("v2", "mbr.img")).then(
      () => (replied = true),
      () => undefined,
    );
    await waitForConsole(unit.unit, /writing the MBR boot code/, mark, 60_000);
    const answered = replied ? "answered" : "not answered yet";
    const result = await cutAndCheck("c", `at the MBR write's line (upload ${answered})`, ["v1"]);
    await push;
    assert.equal(result.version, "v1");
  });

  test("d. just after testboot", async () => {
    await putImage(api, "boot", image("v2", "boot.img"));
    await putImage(api, "mbr", image("v2", "mbr.img"));
    await postAction(api, "testboot");
    const result = await cutAndCheck("d", "when testboot answered", ["v1"]);
    assert.equal(result.version, "v1");
  });

  test("e. during the trial boot", async () => {
    const unit = current();
    await putImage(api, "boot", image("v2", "boot.img"));
    await putImage(api, "mbr", image("v2", "mbr.img"));
    await postAction(api, "testboot");
    const mark = consoleMark(unit.unit);
    await postAction(api, "reboot");
    const kexec = await waitForConsole(unit.unit, /kexec into slot b \(trial\)/, mark, 120_000);
    const { line } = await waitForConsole(unit.unit, /rtr7-boot:/, kexec.next, 120_000);
    const result = await cutAndCheck("e", `trial kernel at "${line.trim().slice(0, 30)}"`, ["v1"]);
    assert.equal(result.version, "v1");
  });

  test("f. during commit", async () => {
    const unit = current();
    await putImage(api, "root", image("v2", "root.img"));
    await putImage(api, "boot", image("v2", "boot.img"));
    await putImage(api, "mbr", image("v2", "mbr.img"));
    await postAction(api, "testboot");
    await postAction(api, "reboot");
    await waitForUnit(ns, address, { version: "v2", trial: true }, 180_000, context);
    const mark = consoleMark(unit.unit);
    const commit = startAction(api, "commit");
    await waitForConsole(unit.unit, /committing slot [ab]/, mark, 60_000);
    const answered = /committed/.test(commit.output()) ? "answered" : "not answered yet";
    const result = await cutAndCheck("f", `at the commit's line (commit ${answered})`, ["v1", "v2"]);
    await commit.stop(1000);
    assert.ok(result.version === "v1" || result.version === "v2");
  });
});
