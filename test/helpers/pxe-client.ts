// A PXE unit's DHCP, played by busybox udhcpc with iPXE's vendor class, for
// tests that fetch from `rtr7 recover` without booting QEMU: the recovery
// servers serve nothing before the unit's ACK (server/pxe/unit-access.ts),
// so such a test takes the lock first, as the unit's firmware would. The
// udhcpc script prints the lease and configures nothing: the namespace's
// address is the test's to set.
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import type { TestContext } from "node:test";
import { run } from "../../lab/processes.js";
import type { Netns } from "../../lab/netns.js";

/** iPXE's option 60 (BIOS), as LAB.md saw it. */
export const biosPxeVendorClass = "PXEClient:Arch:00000:UNDI:002001";

/** Sets the MAC of `device` in the namespace (down, address, up). */
export async function setMac(ns: Netns, device: string, mac: string): Promise<void> {
  await run("ip", ["-n", ns.name, "link", "set", device, "down"]);
  await run("ip", ["-n", ns.name, "link", "set", device, "address", mac]);
  await run("ip", ["-n", ns.name, "link", "set", device, "up"]);
}

/**
 * One PXE DHCP exchange from `device` (DISCOVER, OFFER, REQUEST, ACK): the
 * address the server ACKed, or undefined when none answered within `tries`
 * seconds.
 */
export async function pxeDhcp(
  t: TestContext,
  ns: Netns,
  device: string,
  options: { tries?: number; vendorClass?: string } = {},
): Promise<string | undefined> {
  const dir = await mkdtemp(path.join(tmpdir(), "rtr7-pxe-client-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const script = path.join(dir, "udhcpc.sh");
  await writeFile(script, '#!/bin/sh\n[ "$1" = bound ] && echo "BOUND ip=$ip"\nexit 0\n');
  await chmod(script, 0o755);
  const tries = options.tries ?? 5;
  const args = ["udhcpc", "-i", device, "-n", "-q", "-t", String(tries), "-T", "1", "-s", script];
  args.push("-V", options.vendorClass ?? biosPxeVendorClass);
  try {
    const result = await ns.exec("busybox", args, { timeoutMs: tries * 1000 + 10_000 });
    return /BOUND ip=(\S+)/.exec(result.stdout)?.[1];
  } catch {
    // udhcpc -n exits 1 when no lease came.
    return undefined;
  }
}
