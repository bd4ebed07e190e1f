// The README's demo: `rtr7 recover` re-images a virtual unit. Builds a
// network namespace with a tap device and a QEMU unit with a blank 2 GiB disk
// that can only boot from the network, then runs the real `rtr7 recover`
// CLI, with a backup of /perm, against it: DHCP, pxelinux, the kernel and
// rtr7's recovery initramfs, the partition table, each image written and
// verified, /perm restored. Shows the unit's console lines, and the disk's
// partition table afterwards. Everything it made is removed at the end,
// also on Ctrl-C.
import { mkdir, mkdtemp, rm, truncate, writeFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Netns } from "./netns.js";
import { run } from "./processes.js";
import { recoveryUnitArgs } from "./qemu.js";
import { newestKernel } from "../server/recover-inputs.js";

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../bin/run.js");
const consoleLines = /rtr7-recovery|iPXE initialising|PXELINUX \d|Linux version/;

async function makeImages(work: string): Promise<void> {
  for (const [name, size] of [
    ["mbr.img", 512],
    ["boot.img", 4 << 20],
    ["root.img", 16 << 20],
  ] as const) {
    await writeFile(path.join(work, name), randomBytes(size));
  }
  const perm = path.join(work, "perm");
  await mkdir(path.join(perm, "dhcp4d"), { recursive: true });
  await writeFile(path.join(perm, "dhcp4d", "leases.json"), '{"leases":[]}\n');
  await writeFile(path.join(perm, "gokr-pw.txt"), "demo-password\n", { mode: 0o600 });
  await run("tar", ["czf", path.join(work, "backup.tar.gz"), "-C", perm, "."]);
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error("demo: run as root (it makes a network namespace and a tap device): sudo npm run demo");
    return 1;
  }
  const work = await mkdtemp(path.join(tmpdir(), "rtr7-demo-"));
  const lab = await Netns.create("demo");
  const cleanUp = async (): Promise<void> => {
    await lab.destroy();
    await rm(work, { recursive: true, force: true });
  };
  process.once("SIGINT", () => void cleanUp().then(() => process.exit(130)));
  try {
    console.log("demo: making a virtual unit (QEMU, software emulation) with a blank 2 GiB disk ...");
    const kernel = newestKernel();
    await makeImages(work);
    const disk = path.join(work, "disk.img");
    await writeFile(disk, "");
    await truncate(disk, 2 * 1024 ** 3);
    await lab.addTap("tap0", "10.77.0.254/24");
    console.log(
      `demo: the unit's network is 10.77.0.0/24 in namespace ${lab.name}; starting rtr7 recover:\n`,
    );
    console.log(`  $ rtr7 recover --interface tap0 --hostname demo-unit --image-dir ${work} --no-reset\n`);
    const recover = lab.start(process.execPath, [
      cli,
      "recover",
      "--interface=tap0",
      "--hostname=demo-unit",
      `--image-dir=${work}`,
      `--kernel=${kernel}`,
      "--no-reset",
      "--timeout=6m",
    ]);
    recover.child.stdout?.pipe(process.stdout);
    recover.child.stderr?.pipe(process.stderr);
    await recover.waitForLine(/serving recovery/, 240_000);
    const unit = lab.start("qemu-system-x86_64", recoveryUnitArgs({ tap: "tap0", disk }));
    let partial = "";
    unit.child.stdout?.on("data", (chunk: Buffer) => {
      const lines = (partial + chunk.toString()).split(/\r?\n/);
      partial = lines.pop() ?? "";
      for (const line of lines) {
        if (consoleLines.test(line)) console.log(`         [unit console] ${line.trim()}`);
      }
    });
    const code = await recover.exited(7 * 60_000);
    await unit.exited(30_000).catch(() => undefined);
    if (code !== 0) {
      console.log(`\ndemo: rtr7 recover exited ${code}; the unit's console is above.`);
      return 1;
    }
    console.log("\ndemo: the unit's disk now (sfdisk --dump):\n");
    console.log((await run("sfdisk", ["--dump", disk])).stdout.replaceAll(disk, "disk.img"));
    console.log("demo: the unit was recovered over PXE; rtr7 recover exited 0.");
    return 0;
  } finally {
    await cleanUp();
  }
}

process.exitCode = await main();
