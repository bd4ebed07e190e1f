// `rtr7 recover` as a user runs it, in a network namespace, with curl as the
// unit: HTTP Range, HEAD, 404 and 403 over a real socket; how a run ends
// (the unit's success with a summary, its failure with its message, the
// timeout, a signal, a kernel panic on the serial console), each with the
// right exit code and every port freed. The unit's password: with the token
// only, made and kept 0600 on the workstation when it has none; the
// inventory's defaults; images built for another hostname refused. Every run
// has its own XDG_CONFIG_HOME, so the workstation's files are never touched.
// The unit's namespace takes the DHCP lock first (busybox udhcpc as a PXE
// client), since nothing is served before it (server/pxe/unit-access.ts).
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { mkdir, open, readFile, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { renderBootConfig, slotBootConfig } from "../../lib/wire/boot-config.js";
import { diskIdentifier } from "../../lib/wire/disk-layout.js";
import { writeBootFile } from "../../router/boot/boot-partition.js";
import { joinWithVeth, namespacesFor, requireRootAndTools, type Netns } from "../helpers/netns.js";
import { fakeImages, jsonEvents, recoverArgs, scratchDir } from "../helpers/scratch.js";
import { start } from "../helpers/processes.js";
import { pxeDhcp, setMac } from "../helpers/pxe-client.js";

const run = promisify(execFile);
const server = "10.79.0.254";
const base = `http://${server}:7773`;

async function startRecover(
  t: TestContext,
  options: {
    extra?: string[];
    json?: boolean;
    token?: boolean;
    /** The run is expected to end before it serves: do not wait for it to start. */
    refused?: boolean;
    /** The unit's MAC (its DHCP lock is taken with it); default the veth's own. */
    mac?: string;
    /** Runs in the scratch directory and its XDG_CONFIG_HOME before rtr7 recover starts. */
    prepare?: (
      work: string,
      xdg: string,
      images: { mbr: string; boot: string; root: string },
    ) => Promise<void>;
  } = {},
) {
  const json = options.json ?? true;
  const work = await scratchDir(t, "cli");
  const images = await fakeImages(work);
  const xdg = path.join(work, "xdg");
  await mkdir(xdg);
  await options.prepare?.(work, xdg, images);
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_CONFIG_HOME: xdg };
  delete env.RTR7_PASSWORD;
  const [serverNs, unitNs] = await namespacesFor(t, "clisrv", "cliunit");
  if (!serverNs || !unitNs) throw new Error("no namespaces");
  await joinWithVeth(serverNs, { device: "lan0", cidr: `${server}/24` }, unitNs, {
    device: "eth0",
    cidr: "10.79.0.1/24",
  });
  if (options.mac !== undefined) await setMac(unitNs, "eth0", options.mac);
  const recover = serverNs.start(
    process.execPath,
    recoverArgs({
      interfaceName: "lan0",
      hostname: "cli-unit",
      images,
      extra: [...(json ? ["--json"] : []), ...(options.extra ?? [])],
    }),
    { env },
  );
  if (options.refused) return { recover, unitNs, images, token: "", config: "", xdg };
  await recover.waitForLine(json ? /"event":"start"/ : /serving recovery/, 30_000);
  if (options.token === false) return { recover, unitNs, images, token: "", config: "", xdg };
  assert.equal(await pxeDhcp(t, unitNs, "eth0"), "10.79.0.1", "the unit's DHCP lock");
  const config = (await unitNs.exec("curl", ["-sS", `tftp://${server}/pxelinux.cfg/default`])).stdout;
  const token = /rtr7\.token=([0-9a-f]+)/.exec(config)?.[1];
  assert.ok(token, `no token in pxelinux.cfg/default:\n${config}`);
  return { recover, unitNs, images, token, config, xdg };
}

let curlCount = 0;

/** curl inside the unit's namespace; body and headers go through files, so bytes stay bytes. */
async function curl(unit: Netns, args: string[]): Promise<{ status: number; headers: string; body: Buffer }> {
  curlCount += 1;
  const bodyFile = `/tmp/rtr7-cli-${process.pid}-${curlCount}.body`;
  const headerFile = `${bodyFile}.headers`;
  try {
    const result = await unit.exec("curl", [
      "-sS",
      "-D",
      headerFile,
      "-o",
      bodyFile,
      "-w",
      "%{http_code}",
      ...args,
    ]);
    return {
      status: Number(result.stdout),
      headers: await readFile(headerFile, "utf8"),
      body: await readFile(bodyFile).catch(() => Buffer.alloc(0)),
    };
  } finally {
    await rm(bodyFile, { force: true });
    await rm(headerFile, { force: true });
  }
}

function report(unit: Netns, token: string, path: string, body: string) {
  return curl(unit, [
    "-X",
    "POST",
    "-H",
    `Authorization: Bearer ${token}`,
    "-H",
    "Content-Type: application/json",
    "-d",
    body,
    `${base}/${path}`,
  ]);
}

test(
  "HTTP over a real socket: Range, HEAD, 404, and 403 for reports without the token",
  { timeout: 90_000 },
  async (t) => {
    if (!(await requireRootAndTools(t, ["curl", "busybox"]))) return;
    const { unitNs, images, recover } = await startRecover(t);
    const root = await readFile(images.root);
    const ranged = await curl(unitNs, ["-r", "1000-1999", `${base}/root.img`]);
    assert.equal(ranged.status, 206);
    assert.ok(ranged.body.equals(root.subarray(1000, 2000)));
    const whole = await curl(unitNs, [`${base}/root.img`]);
    assert.ok(whole.body.equals(root));
    const head = await curl(unitNs, ["-I", `${base}/root.img`]);
    assert.equal(head.status, 200);
    assert.match(head.headers, new RegExp(`content-length: ${root.length}`, "i"));
    assert.equal((await curl(unitNs, [`${base}/backup.tar.gz`])).status, 404);
    assert.equal((await curl(unitNs, ["--path-as-is", `${base}/../../etc/passwd`])).status, 404);
    assert.equal((await curl(unitNs, ["--path-as-is", `${base}/%2e%2e/root.img`])).status, 404);
    const forged = await curl(unitNs, [
      "-X",
      "POST",
      "-H",
      "Content-Type: application/json",
      "-d",
      "{}",
      `${base}/success`,
    ]);
    assert.equal(forged.status, 403);
    assert.equal((await report(unitNs, "0".repeat(32), "success", "{}")).status, 403);
    assert.equal(recover.child.exitCode, null, "a forged success must not end the run");
  },
);

test(
  "the unit's success ends the run with exit 0 and a summary; the ports are freed",
  { timeout: 90_000 },
  async (t) => {
    if (!(await requireRootAndTools(t, ["curl", "busybox"]))) return;
    const { unitNs, token, recover } = await startRecover(t, { json: false });
    await curl(unitNs, [`${base}/root.img`]);
    assert.equal((await report(unitNs, token, "success", '{"message":"all written"}')).status, 200);
    assert.equal(await recover.exited(20_000), 0, recover.output());
    assert.match(
      recover.output(),
      /recovered cli-unit \([0-9a-f:]{17}, 10\.79\.0\.1\) in [\d.]+ s; served 1\.0 MiB over HTTP and \d+ B over TFTP/,
    );
    const refused = await unitNs.exec("sh", ["-c", `curl -s -m 2 ${base}/manifest.json || echo refused`]);
    assert.match(refused.stdout, /refused/);
  },
);

test(
  "the unit's failure report ends the run non-zero with the unit's message",
  { timeout: 90_000 },
  async (t) => {
    if (!(await requireRootAndTools(t, ["curl", "busybox"]))) return;
    const { unitNs, token, recover } = await startRecover(t);
    const body = JSON.stringify({ step: "write", message: "root.img: sha256 mismatch" });
    assert.equal((await report(unitNs, token, "failure", body)).status, 200);
    assert.equal(await recover.exited(20_000), 1);
    const error = jsonEvents(recover.output()).find((event) => event.event === "error");
    assert.equal(error?.code, "RTR7_ERR_RECOVERY_FAILED");
    assert.match(String(error?.msg), /failed at write: root\.img: sha256 mismatch/);
  },
);

test("--timeout ends the run non-zero", { timeout: 90_000 }, async (t) => {
  if (!(await requireRootAndTools(t, ["curl", "busybox"]))) return;
  const { recover } = await startRecover(t, { extra: ["--timeout=3s"], token: false });
  assert.equal(await recover.exited(30_000), 1);
  assert.equal(
    jsonEvents(recover.output()).find((event) => event.event === "error")?.code,
    "RTR7_ERR_RECOVERY_TIMEOUT",
  );
});

test("a signal ends the run non-zero with every server closed", { timeout: 90_000 }, async (t) => {
  if (!(await requireRootAndTools(t, ["curl", "busybox"]))) return;
  const { recover, unitNs } = await startRecover(t);
  recover.child.kill("SIGTERM");
  assert.equal(await recover.exited(30_000), 1);
  assert.equal(
    jsonEvents(recover.output()).find((event) => event.event === "error")?.code,
    "RTR7_ERR_ABORTED",
  );
  const refused = await unitNs.exec("sh", ["-c", `curl -s -m 2 ${base}/manifest.json || echo refused`]);
  assert.match(refused.stdout, /refused/);
});

test(
  "a kernel panic on the serial console ends the run as a failed recovery",
  { timeout: 90_000 },
  async (t) => {
    if (!(await requireRootAndTools(t, ["curl", "socat", "busybox"]))) return;
    const work = await scratchDir(t, "panic");
    const ours = `${work}/console`;
    const unitSide = `${work}/unit`;
    const bridge = start("socat", [
      "-d",
      "-d",
      `pty,raw,echo=0,link=${ours}`,
      `pty,raw,echo=0,link=${unitSide}`,
    ]);
    t.after(() => bridge.stop());
    await bridge.waitForLine(/starting data transfer loop/, 10_000);
    const { recover } = await startRecover(t, {
      extra: [`--serial=${ours}`, `--serial-log=${work}/console.log`],
    });
    await recover.waitForLine(/"event":"open"/, 10_000);
    const unit = await open(unitSide, "w");
    await unit.write(
      "[    2.345678] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\r\n",
    );
    await unit.close();
    assert.equal(await recover.exited(20_000), 1, recover.output());
    const error = jsonEvents(recover.output()).find((event) => event.event === "error");
    assert.equal(error?.code, "RTR7_ERR_KERNEL_PANIC");
    assert.match(String(error?.msg), /Unable to mount root fs/);
    assert.match(await readFile(`${work}/console.log`, "utf8"), /Kernel panic - not syncing/);
  },
);

test("--disk names the unit's disk on its kernel command line", { timeout: 90_000 }, async (t) => {
  if (!(await requireRootAndTools(t, ["curl", "busybox"]))) return;
  const { config } = await startRecover(t, { extra: ["--disk=/dev/nvme0n1"] });
  assert.match(config, /^ {2}APPEND .* rtr7\.disk=nvme0n1$/m);
});

test(
  "the unit fetches its password with the token: none on the workstation, so one is made and kept there 0600",
  { timeout: 90_000 },
  async (t) => {
    if (!(await requireRootAndTools(t, ["curl", "busybox"]))) return;
    const { unitNs, token, recover, xdg } = await startRecover(t);
    const hostFile = path.join(xdg, "gokrazy/hosts/cli-unit/http-password.txt");
    assert.equal((await curl(unitNs, [`${base}/credentials`])).status, 403);
    await assert.rejects(stat(hostFile), "a password was made for a request without the token");
    const given = await curl(unitNs, ["-H", `Authorization: Bearer ${token}`, `${base}/credentials`]);
    assert.equal(given.status, 200);
    const { password } = JSON.parse(given.body.toString()) as { password: string };
    assert.match(password, /^[A-Za-z0-9_-]{24}$/);
    assert.equal(await readFile(hostFile, "utf8"), `${password}\n`);
    assert.equal((await stat(hostFile)).mode & 0o777, 0o600);
    const again = await curl(unitNs, ["-H", `Authorization: Bearer ${token}`, `${base}/credentials`]);
    assert.deepEqual(JSON.parse(again.body.toString()), { password });
    assert.equal((await report(unitNs, token, "success", "{}")).status, 200);
    assert.equal(await recover.exited(20_000), 0, recover.output());
    assert.ok(!recover.output().includes(password), "the password reached the log");
    assert.ok(
      jsonEvents(recover.output()).some((event) => event.event === "password" && event.created === true),
      recover.output(),
    );
  },
);

test(
  "the inventory's entry gives --mac, --rebootor and --disk; the log says so",
  { timeout: 90_000 },
  async (t) => {
    if (!(await requireRootAndTools(t, ["curl", "busybox"]))) return;
    const { unitNs, recover, config } = await startRecover(t, {
      extra: ["--rebootor=given-on-the-command-line"],
      mac: "52:54:00:ab:cd:ef",
      prepare: async (_work, xdg) => {
        await mkdir(path.join(xdg, "rtr7"));
        await writeFile(
          path.join(xdg, "rtr7/fleet.json"),
          JSON.stringify({
            units: [{ hostname: "cli-unit", mac: "52:54:00:AB:CD:EF", rebootor: "T1", disk: "sdb" }],
          }),
        );
      },
    });
    const event = jsonEvents(recover.output()).find((line) => line.event === "inventory");
    assert.deepEqual(
      { mac: event?.mac, disk: event?.disk, rebootor: event?.rebootor },
      { mac: "52:54:00:ab:cd:ef", disk: "sdb", rebootor: undefined },
    );
    assert.match(config, /rtr7\.disk=sdb/);
    void unitNs;
    recover.child.kill("SIGTERM");
    assert.equal(await recover.exited(20_000), 1);
  },
);

test(
  "images built for another hostname are refused before anything is served",
  { timeout: 90_000 },
  async (t) => {
    if (!(await requireRootAndTools(t, ["curl", "mkfs.fat", "mcopy"]))) return;
    const { recover } = await startRecover(t, {
      refused: true,
      prepare: async (_work, _xdg, images) => {
        // A real boot.img whose syslinux.cfg boots another hostname's disk.
        await rm(images.boot);
        await run("truncate", ["-s", "40M", images.boot]);
        await run("mkfs.fat", ["-F", "32", "--invariant", images.boot]);
        await writeBootFile(
          images.boot,
          "syslinux.cfg",
          renderBootConfig(slotBootConfig({ diskId: diskIdentifier("someone-else"), defaultSlot: "a" })),
        );
      },
    });
    assert.equal(await recover.exited(30_000), 1, recover.output());
    const error = jsonEvents(recover.output()).find((event) => event.event === "error");
    assert.equal(error?.code, "RTR7_ERR_RELEASE", recover.output());
    assert.match(String(error?.msg), /built for another hostname, not cli-unit/);
  },
);
