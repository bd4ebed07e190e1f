// `rtr7 recover` as a user runs it, in a network namespace, with curl as the
// unit: HTTP Range, HEAD, 404 and 403 over a real socket; how a run ends
// (the unit's success with a summary, its failure with its message, the
// timeout, a signal, a kernel panic on the serial console), each with the
// right exit code and every port freed.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { open, readFile, rm } from "node:fs/promises";
import { joinWithVeth, namespacesFor, requireRootAndTools, type Netns } from "../helpers/netns.js";
import { fakeImages, jsonEvents, recoverArgs, scratchDir } from "../helpers/scratch.js";
import { start } from "../helpers/processes.js";

const server = "10.79.0.254";
const base = `http://${server}:7773`;

async function startRecover(
  t: TestContext,
  options: { extra?: string[]; json?: boolean; token?: boolean } = {},
) {
  const json = options.json ?? true;
  const work = await scratchDir(t, "cli");
  const images = await fakeImages(work);
  const [serverNs, unitNs] = await namespacesFor(t, "clisrv", "cliunit");
  if (!serverNs || !unitNs) throw new Error("no namespaces");
  await joinWithVeth(serverNs, { device: "lan0", cidr: `${server}/24` }, unitNs, {
    device: "eth0",
    cidr: "10.79.0.1/24",
  });
  const recover = serverNs.start(
    process.execPath,
    recoverArgs({
      interfaceName: "lan0",
      hostname: "cli-unit",
      images,
      extra: [...(json ? ["--json"] : []), ...(options.extra ?? [])],
    }),
  );
  await recover.waitForLine(json ? /"event":"start"/ : /serving recovery/, 30_000);
  if (options.token === false) return { recover, unitNs, images, token: "", config: "" };
  const config = (await unitNs.exec("curl", ["-sS", `tftp://${server}/pxelinux.cfg/default`])).stdout;
  const token = /rtr7\.token=([0-9a-f]+)/.exec(config)?.[1];
  assert.ok(token, `no token in pxelinux.cfg/default:\n${config}`);
  return { recover, unitNs, images, token, config };
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
    if (!(await requireRootAndTools(t, ["curl"]))) return;
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
    if (!(await requireRootAndTools(t, ["curl"]))) return;
    const { unitNs, token, recover } = await startRecover(t, { json: false });
    await curl(unitNs, [`${base}/root.img`]);
    assert.equal((await report(unitNs, token, "success", '{"message":"all written"}')).status, 200);
    assert.equal(await recover.exited(20_000), 0, recover.output());
    assert.match(
      recover.output(),
      /recovered cli-unit \(unknown MAC, 10\.79\.0\.1\) in [\d.]+ s; served 1\.0 MiB over HTTP and \d+ B over TFTP/,
    );
    const refused = await unitNs.exec("sh", ["-c", `curl -s -m 2 ${base}/manifest.json || echo refused`]);
    assert.match(refused.stdout, /refused/);
  },
);

test(
  "the unit's failure report ends the run non-zero with the unit's message",
  { timeout: 90_000 },
  async (t) => {
    if (!(await requireRootAndTools(t, ["curl"]))) return;
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
  if (!(await requireRootAndTools(t, ["curl"]))) return;
  const { recover } = await startRecover(t, { extra: ["--timeout=3s"], token: false });
  assert.equal(await recover.exited(30_000), 1);
  assert.equal(
    jsonEvents(recover.output()).find((event) => event.event === "error")?.code,
    "RTR7_ERR_RECOVERY_TIMEOUT",
  );
});

test("a signal ends the run non-zero with every server closed", { timeout: 90_000 }, async (t) => {
  if (!(await requireRootAndTools(t, ["curl"]))) return;
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
    if (!(await requireRootAndTools(t, ["curl", "socat"]))) return;
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
  if (!(await requireRootAndTools(t, ["curl"]))) return;
  const { config } = await startRecover(t, { extra: ["--disk=/dev/nvme0n1"] });
  assert.match(config, /^ {2}APPEND .* rtr7\.disk=nvme0n1$/m);
});
