// TFTP download: rtr7's TFTP server against tftpd-hpa serving the same
// 32 MiB file, fetched by curl at blksize 512 and 1468, alternating, in the
// same run. The servers run in one network namespace and curl in another,
// joined by a veth pair (tftpd-hpa cannot bind in a namespace that has only
// loopback: it resolves its address with AI_ADDRCONFIG). Three conditions:
// rtr7 as shipped (adaptive busy poll), rtr7 with the busy poll off, and both
// servers while all cores but one run a busy loop, where wake-ups are cheap
// and polling does not pay (see server/tftp/busy-poll.ts). Needs root, curl
// and in.tftpd; never asserts on time.
import { randomBytes } from "node:crypto";
import { availableParallelism, tmpdir } from "node:os";
import { chmod, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Netns, joinWithVeth } from "../../lab/netns.js";
import { haveTool, start, type Started } from "../../lab/processes.js";
import { compare, printComparisons, timeCommand, type Comparison } from "./harness.js";

const sizeMiB = 32;
const rounds = 3;
const serverAddress = "10.79.1.254";
const ports = { rtr7: 69, rtr7NoPoll: 6969, tftpdHpa: 6970 };
const runner = fileURLToPath(new URL("../integration/tftp-server-runner.js", import.meta.url));

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) return skip("needs root (network namespaces)");
  for (const tool of ["curl", "in.tftpd", "ip"]) if (!(await haveTool(tool))) return skip(`needs ${tool}`);

  const work = await mkdtemp(path.join(tmpdir(), "rtr7-bench-tftp-"));
  // tftpd-hpa chroots into the directory and reads as nobody.
  await chmod(work, 0o755);
  const file = randomBytes(sizeMiB * 1024 * 1024);
  await writeFile(path.join(work, "image.bin"), file, { mode: 0o644 });
  await writeFile(path.join(work, "ready.txt"), "ready\n", { mode: 0o644 });
  const serverNs = await Netns.create("tftpbsrv");
  const clientNs = await Netns.create("tftpbcli");
  const hogs: Started[] = [];
  try {
    await joinWithVeth(serverNs, { device: "lan0", cidr: `${serverAddress}/24` }, clientNs, {
      device: "eth0",
      cidr: "10.79.1.9/24",
    });
    const ours = (port: number, busyPoll: string[]) =>
      serverNs.start(process.execPath, [
        runner,
        `--address=${serverAddress}`,
        `--port=${port}`,
        `--dir=${work}`,
        "--level=warn",
        ...busyPoll,
      ]);
    const started = [
      ours(ports.rtr7, []),
      ours(ports.rtr7NoPoll, ["--busy-poll=0"]),
      serverNs.start("in.tftpd", ["-L", "-a", `${serverAddress}:${ports.tftpdHpa}`, "-s", work]),
    ];

    const curl = (port: number, name: string, blockSize: number, output: string, maxSeconds: number) => () =>
      timeCommand("ip", [
        ...["netns", "exec", clientNs.name, "curl", "-sS", "--max-time", String(maxSeconds)],
        ...["--tftp-blksize", String(blockSize), "-o", output, `tftp://${serverAddress}:${port}/${name}`],
      ]);
    const fetch = (port: number, blockSize: number) => curl(port, "image.bin", blockSize, "/dev/null", 300);
    const fetched = path.join(work, "fetched.bin");
    for (const port of Object.values(ports)) {
      await untilAnswered(curl(port, "ready.txt", 512, "/dev/null", 2), started);
      await curl(port, "image.bin", 1468, fetched, 300)();
      if (!file.equals(await readFile(fetched))) throw new Error(`port ${port} served different bytes`);
    }

    const contender = (name: string, port: number, blockSize: number) => ({
      name,
      run: fetch(port, blockSize),
    });
    const results: Comparison[] = [];
    const hpa = (blockSize: number) => contender("tftpd-hpa", ports.tftpdHpa, blockSize);
    for (const blockSize of [512, 1468]) {
      results.push(
        await compare(
          `blksize ${blockSize}`,
          contender("rtr7", ports.rtr7, blockSize),
          hpa(blockSize),
          rounds,
        ),
      );
    }
    for (const blockSize of [512, 1468]) {
      const noPoll = contender("rtr7", ports.rtr7NoPoll, blockSize);
      results.push(await compare(`blksize ${blockSize}, busy poll off`, noPoll, hpa(blockSize), rounds));
    }
    const busyCores = Math.max(1, availableParallelism() - 1);
    for (let index = 0; index < busyCores; index += 1) hogs.push(start("sh", ["-c", "while :; do :; done"]));
    for (const blockSize of [512, 1468]) {
      results.push(
        await compare(
          `blksize ${blockSize}, cores busy`,
          contender("rtr7", ports.rtr7, blockSize),
          hpa(blockSize),
          rounds,
        ),
      );
    }
    await Promise.all(hogs.map((hog) => hog.stop()));

    printComparisons(
      `TFTP download of ${sizeMiB} MiB, curl, veth between namespaces; median of ${rounds}, alternating`,
      "tftpd-hpa",
      results,
      file.length,
    );
    console.log(
      `speed ratio = tftpd-hpa time / rtr7 time (above 1: rtr7 is faster). "cores busy": ${busyCores} of ${availableParallelism()} cores ran a busy loop.`,
    );
  } finally {
    await Promise.all(hogs.map((hog) => hog.stop()));
    await clientNs.destroy();
    await serverNs.destroy();
    await rm(work, { recursive: true, force: true });
  }
}

function skip(reason: string): void {
  console.log(`TFTP benchmark skipped: ${reason}`);
}

/** Retries a small fetch while the servers start (bounded). */
async function untilAnswered(run: () => Promise<number>, servers: Started[]): Promise<void> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      await run();
      return;
    } catch (error) {
      if (attempt >= 10) {
        const output = servers.map((server) => server.output()).join("\n");
        throw new Error(`the servers did not answer:\n${output}`, { cause: error });
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}

await main();
