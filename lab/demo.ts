// The README's demo: `rtr7 recover` re-images a virtual unit, which then
// boots from its own disk. Builds the unit's images with `rtr7 image build`'s
// code, a network namespace with a tap device and a QEMU unit with a blank
// 2 GiB disk that can only boot from the network, then runs the real
// `rtr7 recover` CLI, with a backup of /perm, against it: DHCP, pxelinux, the
// kernel and rtr7's recovery initramfs, the partition table, each image
// written and verified, /perm restored. Then the unit is started again from
// its disk (syslinux, the kernel, the root slot's /rtr7/init) and its
// /health.json and update API answer. Last, `rtr7 safe-update` updates it to
// a second build: pushed, tried once by kexec, proven healthy, committed.
// Everything it made is removed at the end, also on Ctrl-C.
import { mkdir, mkdtemp, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { buildUnitImages } from "../updates/image/build.js";
import { Netns } from "./netns.js";
import { run, type Started } from "./processes.js";
import { diskUnitArgs, recoveryUnitArgs } from "./qemu.js";
import { newestKernel } from "../lib/host-kernel.js";

const cli = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../bin/run.js");
const consoleLines =
  /rtr7-recovery|rtr7 init|rtr7-boot|iPXE initialising|PXELINUX \d|SYSLINUX \d|Linux version/;
const hostname = "demo-unit";
const password = "demo-password";
const unitAddress = "10.77.0.1";

async function makeImages(work: string): Promise<void> {
  console.log(`  $ rtr7 image build --out ${work} --hostname ${hostname} --version demo-1\n`);
  const built = await buildUnitImages({ outDir: work, hostname, version: "demo-1" });
  for (const image of built.manifest.images) {
    console.log(
      `         ${image.name.padEnd(9)} ${String(image.size).padStart(10)} bytes  sha256 ${image.sha256.slice(0, 16)}…`,
    );
  }
  const perm = path.join(work, "perm");
  await mkdir(path.join(perm, "dhcp4d"), { recursive: true });
  await writeFile(path.join(perm, "dhcp4d", "leases.json"), '{"leases":[]}\n');
  await writeFile(path.join(perm, "gokr-pw.txt"), `${password}\n`, { mode: 0o600 });
  await run("tar", ["czf", path.join(work, "backup.tar.gz"), "-C", perm, "."]);
}

function showConsole(unit: Started): void {
  let partial = "";
  unit.child.stdout?.on("data", (chunk: Buffer) => {
    const lines = (partial + chunk.toString()).split(/\r?\n/);
    partial = lines.pop() ?? "";
    for (const line of lines) {
      if (consoleLines.test(line)) console.log(`         [unit console] ${line.trim()}`);
    }
  });
}

/** The update every unit gets: demo-2 pushed, tried once by kexec, proven healthy, committed. */
async function safeUpdateDemo(
  work: string,
  lab: Netns,
  curl: (args: string[]) => Promise<string>,
  configHome: string,
): Promise<number> {
  const next = path.join(work, "demo-2");
  console.log(`\ndemo: building demo-2 and updating the unit with rtr7 safe-update ...\n`);
  await buildUnitImages({ outDir: next, hostname, version: "demo-2" });
  const updatesDir = path.join(work, "updates");
  console.log(
    `  $ XDG_CONFIG_HOME=${configHome} rtr7 safe-update --hostname ${hostname} --address ${unitAddress} --updates-dir ${updatesDir} \\\n` +
      `      --build-command 'cp ${next}/*.img "$RTR7_OUT_DIR"/' --health-timeout 4m\n`,
  );
  const update = lab.start(
    process.execPath,
    [
      cli,
      "safe-update",
      `--hostname=${hostname}`,
      `--address=${unitAddress}`,
      `--updates-dir=${updatesDir}`,
      `--build-command=cp "${next}"/*.img "$RTR7_OUT_DIR"/`,
      "--health-timeout=4m",
    ],
    // The same workstation as the recovery: its password, and the unit's pinned certificate.
    { env: { ...process.env, XDG_CONFIG_HOME: configHome } },
  );
  update.child.stdout?.pipe(process.stdout);
  update.child.stderr?.pipe(process.stderr);
  const code = await update.exited(10 * 60_000);
  if (code !== 0) {
    console.log(`\ndemo: rtr7 safe-update exited ${code}; what failed is above.`);
    return 1;
  }
  const health = JSON.parse(await curl([`http://${unitAddress}:7733/health.json`])) as {
    version: string;
    slot: string;
    trial: boolean;
  };
  console.log(
    `\ndemo: the unit now runs ${health.version} from slot ${health.slot}, committed (trial: ${health.trial}); ` +
      `its run directory holds the images, the backup, the logs and recover.bash.`,
  );
  return 0;
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
    console.log("demo: building the unit's images ...\n");
    const kernel = newestKernel();
    await makeImages(work);
    console.log("\ndemo: making a virtual unit (QEMU, software emulation) with a blank 2 GiB disk ...");
    const disk = path.join(work, "disk.img");
    await writeFile(disk, "");
    await truncate(disk, 2 * 1024 ** 3);
    await lab.addTap("tap0", "10.77.0.254/24");
    console.log(
      `demo: the unit's network is 10.77.0.0/24 in namespace ${lab.name}; starting rtr7 recover:\n`,
    );
    // The workstation's password for the unit, where gokrazy's tools keep it (in
    // the demo's own config directory): recovery hands it to the unit.
    const configHome = path.join(work, "config");
    const passwordFile = path.join(configHome, "gokrazy", "hosts", hostname, "http-password.txt");
    await mkdir(path.dirname(passwordFile), { recursive: true });
    await writeFile(passwordFile, `${password}\n`, { mode: 0o600 });
    console.log(
      `  $ XDG_CONFIG_HOME=${configHome} rtr7 recover --interface tap0 --hostname ${hostname} --image-dir ${work} --no-reset\n`,
    );
    const recover = lab.start(
      process.execPath,
      [
        cli,
        "recover",
        "--interface=tap0",
        `--hostname=${hostname}`,
        `--image-dir=${work}`,
        `--kernel=${kernel}`,
        "--no-reset",
        "--timeout=6m",
      ],
      { env: { ...process.env, XDG_CONFIG_HOME: configHome } },
    );
    recover.child.stdout?.pipe(process.stdout);
    recover.child.stderr?.pipe(process.stderr);
    await recover.waitForLine(/serving recovery/, 240_000);
    const unit = lab.start("qemu-system-x86_64", recoveryUnitArgs({ tap: "tap0", disk }));
    showConsole(unit);
    const code = await recover.exited(7 * 60_000);
    await unit.exited(30_000).catch(() => undefined);
    if (code !== 0) {
      console.log(`\ndemo: rtr7 recover exited ${code}; the unit's console is above.`);
      return 1;
    }
    console.log("\ndemo: the unit's disk now (sfdisk --dump):\n");
    console.log((await run("sfdisk", ["--dump", disk])).stdout.replaceAll(disk, "disk.img"));
    console.log(
      "demo: the unit was recovered over PXE; rtr7 recover exited 0. Booting it from its disk ...\n",
    );
    const booted = lab.start("qemu-system-x86_64", diskUnitArgs({ tap: "tap0", disk }));
    showConsole(booted);
    await booted.waitForLine(/rtr7 init: up/, 240_000);
    const curl = async (args: string[]): Promise<string> =>
      (await lab.exec("curl", ["-sS", "--max-time", "10", ...args])).stdout;
    console.log(`\n  $ curl http://${unitAddress}:7733/health.json\n`);
    // The services start after the supervisor says "up": give diagd a moment.
    let healthText = "";
    for (let attempt = 0; attempt < 60 && healthText === ""; attempt += 1) {
      healthText = await curl([`http://${unitAddress}:7733/health.json`]).catch(() => "");
      if (healthText === "") await new Promise((resolve) => setTimeout(resolve, 1000));
    }
    const health = JSON.parse(healthText) as object;
    console.log(JSON.stringify(health, null, 2).replace(/^/gm, "         "));
    console.log(`\n  $ curl -u gokrazy:… http://${unitAddress}/update/features\n`);
    console.log(
      `         ${await curl(["-u", `gokrazy:${password}`, `http://${unitAddress}/update/features`])}`,
    );
    console.log("\ndemo: the recovered unit runs its own image and reports healthy.");
    return await safeUpdateDemo(work, lab, curl, configHome);
  } finally {
    await cleanUp();
  }
}

process.exitCode = await main();
