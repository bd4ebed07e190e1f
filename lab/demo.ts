// The README's demo: `rtr7 recover` re-imaging a virtual unit. Builds a
// network namespace with a tap device, a QEMU unit that can only boot from
// the network, and the smoke initramfs as the recovery system; runs the real
// `rtr7 recover` CLI against it and shows its output and the unit's console
// lines. Everything it made is removed at the end, also on Ctrl-C.
import { mkdtemp, rm, truncate, writeFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Netns } from "./netns.js";
import { qemuUnitArgs } from "./qemu.js";
import { buildSmokeInitramfs, modulesDirFor } from "./smoke-initramfs.js";
import { newestKernel } from "../server/recover-inputs.js";

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../bin/run.js");

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
    console.log("demo: building the virtual unit (QEMU, software emulation) and its recovery initramfs ...");
    const kernel = newestKernel();
    const initrd = await buildSmokeInitramfs({
      out: path.join(work, "initrd.gz"),
      modulesDir: modulesDirFor(kernel),
    });
    for (const [name, size] of [
      ["mbr.img", 512],
      ["boot.img", 1 << 20],
      ["root.img", 4 << 20],
    ] as const) {
      await writeFile(path.join(work, name), randomBytes(size));
    }
    const disk = path.join(work, "disk.img");
    await writeFile(disk, "");
    await truncate(disk, 64 << 20);
    await lab.addTap("tap0", "10.77.0.254/24");
    console.log(`demo: unit network 10.77.0.0/24 in namespace ${lab.name}; starting rtr7 recover:\n`);
    console.log(
      `  $ rtr7 recover --interface tap0 --hostname demo-unit --image-dir ${work} --initrd ${initrd} --no-reset\n`,
    );
    const recover = lab.start(process.execPath, [
      cli,
      "recover",
      "--interface=tap0",
      "--hostname=demo-unit",
      `--image-dir=${work}`,
      `--kernel=${kernel}`,
      `--initrd=${initrd}`,
      "--no-reset",
      "--timeout=5m",
    ]);
    recover.child.stdout?.pipe(process.stdout);
    recover.child.stderr?.pipe(process.stderr);
    await recover.waitForLine(/serving recovery/, 60_000);
    const unit = lab.start("qemu-system-x86_64", qemuUnitArgs({ tap: "tap0", boot: "network", disk }));
    unit.child.stdout?.on("data", (chunk: Buffer) => {
      for (const line of chunk.toString().split(/\r?\n/)) {
        if (/rtr7-smoke|iPXE|PXELINUX|Linux version/.test(line))
          console.log(`         [unit console] ${line.trim()}`);
      }
    });
    const code = await recover.exited(6 * 60_000);
    console.log(
      code === 0
        ? "\ndemo: the unit was recovered over PXE; rtr7 recover exited 0."
        : `\ndemo: rtr7 recover exited ${code}; the unit's console is above.`,
    );
    return code === 0 ? 0 : 1;
  } finally {
    await cleanUp();
  }
}

process.exitCode = await main();
