// The recovery DHCP server against real clients: two network namespaces
// joined by a veth pair, the server (dhcp-server-runner) on the addressed
// side, busybox udhcpc on the other. Checks the PXE-only rule, the boot file
// per architecture, the lock on the first ACKed MAC and --mac. Needs root.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { joinWithVeth, namespacesFor, requireRootAndTools, type Netns } from "../helpers/netns.js";
import { run, type Started } from "../helpers/processes.js";

const runner = fileURLToPath(new URL("./dhcp-server-runner.js", import.meta.url));
const biosVendorClass = "PXEClient:Arch:00000:UNDI:002001";
const efiVendorClass = "PXEClient:Arch:00007:UNDI:003016";
const unitMac = "52:54:00:aa:00:01";
/** The ROM QEMU's e1000 boots (from ipxe-qemu, found through QEMU's firmware path). */
const ipxeRom = "/usr/lib/ipxe/qemu/efi-e1000.rom";
const otherMac = "52:54:00:aa:00:02";

interface Lease {
  ip: string;
  siaddr: string;
  boot_file: string;
  subnet: string;
  serverid: string;
  lease: string;
}

/** The udhcpc script: prints what udhcpc learnt, configures nothing. */
function udhcpcScript(t: TestContext): string {
  const dir = mkdtempSync(path.join(tmpdir(), "rtr7-dhcp-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const script = path.join(dir, "udhcpc.sh");
  writeFileSync(
    script,
    '#!/bin/sh\necho "udhcpc-script $1 ip=$ip siaddr=$siaddr boot_file=$boot_file subnet=$subnet serverid=$serverid lease=$lease"\n',
  );
  chmodSync(script, 0o755);
  return script;
}

/** Runs busybox udhcpc once (one DISCOVER a second, `tries` of them); the lease it got, if any. */
async function udhcpc(
  ns: Netns,
  script: string,
  vendorClass: string | undefined,
  tries: number,
): Promise<Lease | undefined> {
  const args = ["udhcpc", "-i", "eth0", "-n", "-q", "-t", String(tries), "-T", "1", "-s", script];
  if (vendorClass !== undefined) args.push("-V", vendorClass);
  const client = ns.start("busybox", args);
  await client.exited(tries * 1000 + 10_000);
  const bound = client
    .output()
    .split("\n")
    .find((line) => line.startsWith("udhcpc-script bound "));
  if (bound === undefined) return undefined;
  const fields = Object.fromEntries(
    bound
      .split(" ")
      .slice(2)
      .map((pair) => [pair.slice(0, pair.indexOf("=")), pair.slice(pair.indexOf("=") + 1)]),
  );
  return fields as unknown as Lease;
}

interface LogRecord {
  event?: string;
  peer?: string;
  address?: string;
  msg?: string;
}

function serverLog(server: Started): LogRecord[] {
  return server
    .output()
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as LogRecord);
}

async function setMac(ns: Netns, mac: string): Promise<void> {
  await run("ip", ["-n", ns.name, "link", "set", "eth0", "down"]);
  await run("ip", ["-n", ns.name, "link", "set", "eth0", "address", mac]);
  await run("ip", ["-n", ns.name, "link", "set", "eth0", "up"]);
}

async function startServer(ns: Netns, args: string[]): Promise<Started> {
  const server = ns.start(process.execPath, [runner, ...args]);
  await server.waitForLine(/"event":"listening"/, 10_000);
  return server;
}

test(
  "PXE-only DHCP: real udhcpc clients, boot file per architecture, lock on the first ACK",
  { timeout: 120_000 },
  async (t) => {
    if (!(await requireRootAndTools(t, ["ip", "busybox"]))) return;
    const [serverNs, clientNs] = await namespacesFor(t, "dhcps", "dhcpc");
    assert.ok(serverNs && clientNs);
    await joinWithVeth(serverNs, { device: "veth0", cidr: "10.99.7.1/24" }, clientNs, { device: "eth0" });
    await setMac(clientNs, unitMac);
    const script = udhcpcScript(t);
    const server = await startServer(serverNs, [
      "--server",
      "10.99.7.1",
      "--netmask",
      "255.255.255.0",
      "--offer",
      "10.99.7.42",
    ]);

    await t.test("a plain udhcpc gets no answer within 5 s before the lock", async () => {
      assert.equal(await udhcpc(clientNs, script, undefined, 5), undefined);
      const records = serverLog(server).filter((record) => record.peer === unitMac);
      assert.ok(
        records.some((record) => record.event === "ignore" && /not a PXE client/.test(record.msg ?? "")),
      );
      assert.ok(
        !records.some((record) => record.event === "offer"),
        "the server offered to a non-PXE client",
      );
    });

    await t.test("a BIOS PXE client gets the recover address, siaddr and pxelinux.0", async () => {
      const lease = await udhcpc(clientNs, script, biosVendorClass, 3);
      assert.deepEqual(lease, {
        ip: "10.99.7.42",
        siaddr: "10.99.7.1",
        boot_file: "pxelinux.0",
        subnet: "255.255.255.0",
        serverid: "10.99.7.1",
        lease: "7200",
      });
      const records = serverLog(server);
      assert.ok(records.some((record) => record.event === "ack" && record.peer === unitMac));
      assert.ok(records.some((record) => record.event === "locked" && record.peer === unitMac));
    });

    await t.test("an x86-64 UEFI PXE client (same MAC) gets syslinux.efi", async () => {
      const lease = await udhcpc(clientNs, script, efiVendorClass, 3);
      assert.equal(lease?.boot_file, "syslinux.efi");
      assert.equal(lease?.ip, "10.99.7.42");
    });

    await t.test("after the lock the plain udhcpc of the same MAC gets its address", async () => {
      const lease = await udhcpc(clientNs, script, undefined, 3);
      assert.equal(lease?.ip, "10.99.7.42");
      assert.equal(lease?.subnet, "255.255.255.0");
      assert.equal(lease?.boot_file, "");
    });

    await t.test("a second MAC gets no offer after the lock", async () => {
      await setMac(clientNs, otherMac);
      assert.equal(await udhcpc(clientNs, script, biosVendorClass, 3), undefined);
      const records = serverLog(server).filter((record) => record.peer === otherMac);
      assert.ok(
        records.some(
          (record) => record.event === "ignore" && /locked to 52:54:00:aa:00:01/.test(record.msg ?? ""),
        ),
      );
      assert.ok(!records.some((record) => record.event === "offer" || record.event === "ack"));
    });

    await server.stop();
    assert.equal(await server.exited(1000), 0, "the server exits cleanly on SIGTERM");
  },
);

test(
  "--mac serves that MAC from the start, with the interface's own netmask",
  { timeout: 60_000 },
  async (t) => {
    if (!(await requireRootAndTools(t, ["ip", "busybox"]))) return;
    const [serverNs, clientNs] = await namespacesFor(t, "dhcps", "dhcpc");
    assert.ok(serverNs && clientNs);
    await joinWithVeth(serverNs, { device: "veth0", cidr: "10.99.8.1/26" }, clientNs, { device: "eth0" });
    await setMac(clientNs, unitMac);
    const script = udhcpcScript(t);
    const server = await startServer(serverNs, [
      "--server",
      "10.99.8.1",
      "--netmask",
      "255.255.255.192",
      "--offer",
      "10.99.8.42",
      "--mac",
      unitMac.toUpperCase(),
    ]);

    const lease = await udhcpc(clientNs, script, undefined, 3);
    assert.equal(lease?.ip, "10.99.8.42");
    assert.equal(lease?.subnet, "255.255.255.192");
    assert.ok(serverLog(server).some((record) => record.event === "ack" && record.peer === unitMac));

    await setMac(clientNs, otherMac);
    assert.equal(await udhcpc(clientNs, script, biosVendorClass, 2), undefined, "another MAC got a lease");
  },
);

test(
  "iPXE in QEMU (SeaBIOS, e1000) takes the OFFER and ACK and asks for pxelinux.0",
  { timeout: 180_000 },
  async (t) => {
    if (!(await requireRootAndTools(t, ["ip", "qemu-system-x86_64"]))) return;
    if (!existsSync(ipxeRom)) return t.skip(`needs ${ipxeRom} (ipxe-qemu): run scripts/setup.sh`);
    const [labNs] = await namespacesFor(t, "dhcpq");
    assert.ok(labNs);
    await labNs.addTap("tap0", "10.99.9.1/24");
    const server = await startServer(labNs, [
      "--server",
      "10.99.9.1",
      "--netmask",
      "255.255.255.0",
      "--offer",
      "10.99.9.42",
    ]);
    // Software emulation: iPXE resets in a loop under KVM (LAB.md).
    const qemu = labNs.start("qemu-system-x86_64", [
      ...["-m", "256", "-nographic", "-monitor", "none", "-boot", "n"],
      ...[
        "-netdev",
        "tap,id=n0,ifname=tap0,script=no,downscript=no",
        "-device",
        "e1000,netdev=n0,mac=52:54:00:aa:00:03",
      ],
    ]);
    await qemu.waitForLine(/Filename: pxelinux\.0/, 150_000);
    await qemu.stop();
    assert.match(qemu.output(), /net0: 10\.99\.9\.42\/255\.255\.255\.0/);
    assert.match(qemu.output(), /Next server: 10\.99\.9\.1/);
    const events = serverLog(server).filter((record) => record.peer === "52:54:00:aa:00:03");
    assert.ok(events.some((record) => record.event === "offer" && /iPXE/.test(record.msg ?? "")));
    assert.ok(events.some((record) => record.event === "ack" && record.address === "10.99.9.42"));
  },
);
