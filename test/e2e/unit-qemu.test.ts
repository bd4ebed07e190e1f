// End to end: a QEMU unit boots from a disk made of the three images of
// `rtr7 image build` (as a recovery leaves it: lab/unit-disk.ts), through
// SeaBIOS, syslinux's MBR and boot sector, the kernel and the boot initrd
// into the squashfs root slot and /rtr7/init. Checked from the host through a
// tap device: /health.json is healthy, /backup.tar.gz extracts with GNU tar
// to /perm's files, /metrics passes promtool, the mDNS record is seen by
// avahi-browse, the update API refuses bad credentials. Then try-boot: the
// new slot runs once by kexec; with no commit it falls back to the old slot
// through a firmware reboot; committed, syslinux.cfg names it.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import { startAvahiBrowser, avahiTools, type AvahiRecord } from "../../lab/avahi.js";
import { Netns } from "../../lab/netns.js";
import { missingPrerequisite, run, type Started } from "../../lab/processes.js";
import { firstPartitionOffsetBytes } from "../../lib/wire/disk-layout.js";
import { startDiskUnit, unitHealth, waitForUnit } from "../helpers/qemu-unit.js";
import { removeUnitImages, unitImages } from "../helpers/unit-images.js";

const execFileAsync = promisify(execFile);
const hostname = "qemu1";
const unitMac = "52:54:00:12:34:60";
const unitAddress = "10.91.0.2";
const password = "qemu-unit-secret";
const bootTimeoutMs = 300_000;

const skip = await missingPrerequisite(
  [
    "qemu-system-x86_64",
    "mksquashfs",
    "mkfs.fat",
    "mcopy",
    "syslinux",
    "mke2fs",
    "curl",
    "tar",
    "promtool",
    ...avahiTools,
  ],
  "network namespaces and a tap device",
);

describe("a QEMU unit booting from its own disk", { skip, timeout: 20 * 60_000 }, () => {
  let work: string;
  let ns: Netns;
  let unit: Started;
  let disk: string;
  let v1: string;
  let v2: string;

  async function curl(args: string[], timeoutMs = 60_000): Promise<{ status: number; body: string }> {
    const result = await ns.exec("curl", ["-sS", "-w", "\n%{http_code}", "--max-time", "50", ...args], {
      timeoutMs,
    });
    const cut = result.stdout.lastIndexOf("\n");
    return { status: Number(result.stdout.slice(cut + 1)), body: result.stdout.slice(0, cut) };
  }
  const api = (method: string, route: string, extra: string[] = [], user = `gokrazy:${password}`) =>
    curl(["-X", method, "-u", user, ...extra, `http://${unitAddress}${route}`], 300_000);

  const health = () => unitHealth(ns, unitAddress);
  const waitForHealth = (want: { version: string; slot: string; trial: boolean }, timeoutMs: number) =>
    waitForUnit(ns, unitAddress, want, timeoutMs, () => `--- console:\n${unit.output().slice(-4000)}`);

  before(async () => {
    if (skip) return;
    [v1, v2] = await Promise.all([
      unitImages({ hostname, version: "v1" }),
      unitImages({ hostname, version: "v2" }),
    ]);
    work = await mkdtemp(path.join(tmpdir(), "rtr7-e2e-unit-"));
    ns = await Netns.create("unitq");
    await ns.addTap("tap0", "10.91.0.1/24");
    const booted = await startDiskUnit({
      ns,
      work,
      imagesDir: v1,
      hostname,
      mac: unitMac,
      address: unitAddress,
      password,
      permFiles: {
        "dhcp4d/leases.json": '{"leases":[]}\n',
        "nobackup/cache.bin": "skip me\n",
        "srv/www/index.html": "skip me too\n",
      },
      bootTimeoutMs: bootTimeoutMs,
    });
    ({ unit, disk } = booted);
    console.log(`unit booted from disk to "rtr7 init: up" in ${booted.bootSeconds.toFixed(1)} s`);
  });

  after(async () => {
    await unit?.stop(2000);
    await ns?.destroy();
    if (work) await rm(work, { recursive: true, force: true });
    await removeUnitImages();
  });

  test("health, backup, metrics and the update API answer from the booted unit", async () => {
    await waitForHealth({ version: "v1", slot: "a", trial: false }, 60_000);
    const report = await health();
    assert.equal(report?.first_error, "", JSON.stringify(report));

    const backup = path.join(work, "backup.tar.gz");
    const backupUrl = `http://${unitAddress}:8077/backup.tar.gz`;
    // backupd serves /perm (the password file included) only with the update API's credentials.
    assert.equal((await curl(["-o", backup, backupUrl])).status, 401);
    assert.equal((await curl(["-u", `gokrazy:${password}`, "-o", backup, backupUrl])).status, 200);
    const extracted = path.join(work, "extracted");
    await mkdir(extracted);
    await run("tar", ["xzf", backup, "-C", extracted]);
    assert.equal(await readFile(path.join(extracted, "dhcp4d", "leases.json"), "utf8"), '{"leases":[]}\n');
    assert.equal(await readFile(path.join(extracted, "gokr-pw.txt"), "utf8"), `${password}\n`);
    await assert.rejects(readFile(path.join(extracted, "nobackup", "cache.bin")));
    await assert.rejects(readFile(path.join(extracted, "srv", "www", "index.html")));

    const metrics = await curl([`http://${unitAddress}:7733/metrics`]);
    assert.equal(metrics.status, 200);
    const metricsFile = path.join(work, "metrics.txt");
    await writeFile(metricsFile, metrics.body);
    const promtool = await execFileAsync("sh", ["-c", `promtool check metrics < ${metricsFile}`]).then(
      () => "",
      (error: { stdout?: string; stderr?: string }) => `${error.stdout ?? ""}${error.stderr ?? ""}`,
    );
    assert.equal(promtool, "", "promtool check metrics");
    assert.match(metrics.body, /rtr7_network_receive_bytes_total\{interface="lan0"\} [1-9]/);

    const avahi = await startAvahiBrowser(ns, "tap0");
    try {
      let record: AvahiRecord | undefined;
      for (let attempt = 0; attempt < 10 && !record; attempt += 1) {
        record = (await avahi.browse("_rtr7._tcp", 15_000)).find(
          (seen) => seen.event === "=" && seen.name === hostname,
        );
        if (!record) await new Promise((resolve) => setTimeout(resolve, 1000));
      }
      assert.ok(record, `avahi-browse never resolved ${hostname}._rtr7._tcp:\n${avahi.daemonOutput()}`);
      assert.equal(record.address, unitAddress);
      assert.equal(record.port, 80);
      assert.deepEqual(record.txt, { hostname, version: "v1", slot: "a", model: "qemu" });
    } finally {
      await avahi.stop();
    }

    assert.equal((await api("GET", "/update/features", [], "gokrazy:wrong")).status, 401);
    assert.equal((await curl([`http://${unitAddress}/update/features`])).status, 401);
    assert.equal((await api("GET", "/update/features")).body, "partuuid,updatehash,gzip,signed,");
  });

  test("try-boot: testboot + kexec runs v2 once; no commit, back on v1; committed, v2 stays the default", async () => {
    for (const [route, file] of [
      ["/update/root", "root.img"],
      ["/update/boot", "boot.img"],
    ] as const) {
      const reply = await api("PUT", route, ["--data-binary", `@${path.join(v2, file)}`]);
      assert.equal(reply.status, 200, `${route}: ${reply.body}`);
    }
    assert.equal((await api("POST", "/update/testboot", ["-d", "deadline=20s"])).status, 200);
    const rebootAt = Date.now();
    assert.equal((await api("POST", "/reboot")).status, 200);
    const kexecGap = await waitForHealth({ version: "v2", slot: "b", trial: true }, bootTimeoutMs);
    console.log(`kexec into the trial slot: healthy again ${kexecGap.toFixed(1)} s after the reboot request`);
    // No commit: at the deadline the unit reboots through the firmware, whose boot loader runs slot a.
    await waitForHealth({ version: "v1", slot: "a", trial: false }, bootTimeoutMs);
    console.log(`fell back to v1 ${((Date.now() - rebootAt) / 1000).toFixed(1)} s after the reboot request`);
    assert.match(unit.output(), /no commit within 20 s/);
    assert.match((await curl([`http://${unitAddress}:7733/metrics`])).body, /^rtr7_rollbacks_total 1$/m);

    assert.equal((await api("POST", "/update/testboot", ["-d", "deadline=10m"])).status, 200);
    assert.equal((await api("POST", "/reboot")).status, 200);
    await waitForHealth({ version: "v2", slot: "b", trial: true }, bootTimeoutMs);
    assert.equal((await api("POST", "/update/commit")).status, 200);
    await waitForHealth({ version: "v2", slot: "b", trial: false }, 30_000);
    const { stdout } = await execFileAsync(
      "mcopy",
      ["-n", "-i", `${disk}@@${firstPartitionOffsetBytes}`, "::syslinux.cfg", "-"],
      {
        env: { ...process.env, MTOOLS_SKIP_CHECK: "1" },
      },
    );
    assert.match(stdout, /^DEFAULT b$/m, "the committed slot is the boot loader's default");
  });
});
