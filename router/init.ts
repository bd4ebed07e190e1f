// PID 1 on a unit. The boot initrd has mounted the root slot and moved /dev
// into it; this mounts the rest (/proc, /sys, /tmp, /run, /perm from
// partition 4 of the root's disk), loads the modules, names the host
// (/perm/hostname, else build.json: router/build-info.ts), brings
// up lan0 from /perm/interfaces.json (else DHCP on the first NIC), then runs
// the suite (router/suite.ts). A reboot stops the services, unmounts /perm
// and either kexecs the next slot's kernel (the default, and the only way a
// slot on trial is ever started) or reboots through the firmware, whose boot
// loader runs the committed slot. As PID 1 it must never exit: an uncaught
// error ends in a kernel panic, and panic=10 reboots into the committed slot.
import { execFile } from "node:child_process";
import { access, readFile, readdir, writeFile, mkdir } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { createLogger } from "../lib/log.js";
import { partitionDevice, partitionNumbers } from "../lib/wire/disk-layout.js";
import type { NextBoot } from "./boot/boot-control.js";
import { copyBootFileOut, readBootConfig } from "./boot/boot-partition.js";
import { readBuildInfo, unitHostname } from "./build-info.js";
import { runSuite } from "./suite.js";
import type { ServiceSpec } from "./supervisor/supervisor.js";
import { isSlot, unitPorts, type ServiceConfig, type Slot, type UnitPaths } from "./unit.js";
import { modulesListPath } from "../lib/wire/image-paths.js";
import { cmdlineValues, unitCmdlineKeys } from "../lib/wire/kernel-cmdline.js";
import { readListenConfig } from "./http-guard/listen-config.js";
import { mountUnitPerm } from "./perm-mount.js";

const execFileAsync = promisify(execFile);
const busybox = "/bin/busybox";
const say = (line: string): void => void process.stdout.write(`rtr7 init: ${line}\n`);

async function bb(applet: string, args: string[], timeoutMs = 30_000): Promise<string> {
  try {
    const { stdout } = await execFileAsync(busybox, [applet, ...args], {
      timeout: timeoutMs,
      encoding: "utf8",
    });
    return stdout;
  } catch (error) {
    const failed = error as { stderr?: string; message: string };
    throw new Error(`${applet} ${args.join(" ")}: ${failed.stderr?.trim() || failed.message}`, {
      cause: error,
    });
  }
}

/** True when `target` is a mount point now (false while /proc itself is not mounted). */
async function isMounted(target: string): Promise<boolean> {
  const mountinfo = await readFile("/proc/self/mountinfo", "utf8").catch(() => "");
  return mountinfo.split("\n").some((line) => line.split(" ")[4] === target);
}

/** True when the kernel has the module (loaded, or built in with a /sys/module entry). */
async function moduleLoaded(name: string): Promise<boolean> {
  return access(path.join("/sys/module", name)).then(
    () => true,
    () => false,
  );
}

async function mountQuietly(type: string, source: string, target: string, options?: string): Promise<void> {
  await mkdir(target, { recursive: true }).catch(() => undefined);
  // Mounted already (devtmpfs by the kernel, or by the boot initrd): nothing to do.
  if (await isMounted(target)) return;
  const args = ["-t", type, ...(options ? ["-o", options] : []), source, target];
  await bb("mount", args).catch(async (error: Error) => {
    if (!(await isMounted(target))) say(`mount ${target}: ${error.message}`);
  });
}

export interface UnitCmdline {
  slot: Slot;
  trialDeadlineMs?: number;
}

export function parseUnitCmdline(text: string): UnitCmdline {
  const values = cmdlineValues(text);
  const value = (key: string): string | undefined => values.get(key);
  const named = value(unitCmdlineKeys.slot);
  const partuuid = value("root")?.match(/-0([23])$/)?.[1];
  const slot: Slot = isSlot(named) ? named : partuuid === "3" ? "b" : "a";
  const trial = value(unitCmdlineKeys.trial);
  return { slot, trialDeadlineMs: trial && /^\d+$/.test(trial) ? Number(trial) : undefined };
}

/** The disk holding the root file system: /dev/vda for a root on /dev/vda2. */
async function rootDisk(): Promise<string> {
  const mountinfo = await readFile("/proc/self/mountinfo", "utf8");
  for (const line of mountinfo.split("\n")) {
    const fields = line.split(" ");
    if (fields[4] !== "/") continue;
    const source = fields[fields.indexOf("-") + 2];
    if (source?.startsWith("/dev/")) return source.replace(/p?[0-9]+$/, "");
  }
  throw new Error("cannot tell the root file system's disk from /proc/self/mountinfo");
}

/** The kernel's name of a module file: virtio-net.ko.xz → virtio_net. */
export function moduleName(file: string): string {
  return path
    .basename(file)
    .replace(/\.ko(\.(xz|gz|zst))?$/, "")
    .replace(/-/g, "_");
}

/**
 * The modules of the list that are not loaded yet. The boot initrd has
 * loaded most of them already; skipping those saves a busybox process per
 * module, seconds of every boot on a slow unit (and of every update's gap).
 */
export function modulesToLoad(list: string, procModules: string): string[] {
  const loaded = new Set(procModules.split("\n").map((line) => line.split(" ")[0] ?? ""));
  return list
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !loaded.has(moduleName(line)));
}

async function loadModules(): Promise<void> {
  const list = await readFile(modulesListPath, "utf8").catch(() => "");
  const loaded = await readFile("/proc/modules", "utf8").catch(() => "");
  for (const module of modulesToLoad(list, loaded)) {
    await bb("insmod", [module]).catch(async (error: Error) => {
      // Loaded meanwhile (or built in): not a failure, whatever insmod said.
      if (!(await moduleLoaded(moduleName(module)))) say(`module ${path.basename(module)}: ${error.message}`);
    });
  }
}

interface InterfacesJson {
  interfaces?: { hardware_addr?: string; name?: string; addr?: string; gateway?: string }[];
}

/** Brings up lan0 (and any other named NIC) from interfaces.json; returns the names configured. */
async function configureInterfaces(perm: string): Promise<string[]> {
  let parsed: InterfacesJson;
  try {
    parsed = JSON.parse(await readFile(path.join(perm, "interfaces.json"), "utf8")) as InterfacesJson;
  } catch {
    return [];
  }
  const byMac = new Map<string, string>();
  for (const name of await readdir("/sys/class/net")) {
    const mac = (await readFile(`/sys/class/net/${name}/address`, "utf8").catch(() => "")).trim();
    if (mac) byMac.set(mac.toLowerCase(), name);
  }
  const configured: string[] = [];
  for (const entry of parsed.interfaces ?? []) {
    const current = entry.hardware_addr ? byMac.get(entry.hardware_addr.toLowerCase()) : undefined;
    if (!current || !entry.name) {
      say(`interfaces.json: no NIC with address ${entry.hardware_addr ?? "(none)"}; skipped`);
      continue;
    }
    try {
      if (current !== entry.name) await bb("ip", ["link", "set", "dev", current, "name", entry.name]);
      if (entry.addr) await bb("ip", ["addr", "add", entry.addr, "dev", entry.name]);
      await bb("ip", ["link", "set", "dev", entry.name, "up"]);
      if (entry.gateway) await bb("ip", ["route", "add", "default", "via", entry.gateway]);
      say(`${entry.name} (${entry.hardware_addr}) up with ${entry.addr ?? "no address"}`);
      configured.push(entry.name);
    } catch (error) {
      say(`interfaces.json: ${entry.name}: ${(error as Error).message}`);
    }
  }
  return configured;
}

const dhcpScript = `#!/bin/busybox sh
case "$1" in
  deconfig) /bin/busybox ip addr flush dev "$interface"; /bin/busybox ip link set "$interface" up ;;
  bound|renew)
    /bin/busybox ip addr flush dev "$interface"
    /bin/busybox ip addr add "$ip/\${mask:-24}" dev "$interface"
    for r in $router; do /bin/busybox ip route replace default via "$r" dev "$interface"; break; done
    ;;
esac
exit 0
`;

async function firstEthernet(): Promise<string | undefined> {
  for (const name of (await readdir("/sys/class/net")).sort()) {
    if (name === "lo") continue;
    const type = (await readFile(`/sys/class/net/${name}/type`, "utf8").catch(() => "")).trim();
    if (type === "1") return name;
  }
  return undefined;
}

async function model(): Promise<string> {
  const read = (name: string): Promise<string> =>
    readFile(`/sys/class/dmi/id/${name}`, "utf8").then(
      (text) => text.trim(),
      () => "",
    );
  const [vendor, product] = await Promise.all([read("sys_vendor"), read("product_name")]);
  if (/qemu/i.test(vendor) || /qemu|standard pc/i.test(product)) return "qemu";
  return product || "unknown";
}

async function rebootUnit(paths: UnitPaths, next: NextBoot): Promise<void> {
  await bb("sync", []).catch(() => undefined);
  await bb("umount", [paths.perm]).catch((error: Error) => say(`umount /perm: ${error.message}`));
  if (next.kexec) {
    try {
      const config = await readBootConfig(paths.boot);
      const label = config.labels[next.slot];
      if (!label) throw new Error(`syslinux.cfg has no label ${next.slot}`);
      await copyBootFileOut(paths.boot, label.kernel, "/tmp/kexec-kernel");
      // --no-checks: purgatory would hash every loaded segment before the
      // jump (up to 16 s on an emulated unit). That check is for kdump,
      // where a crashed kernel may have scribbled over memory; here the jump
      // follows the load at once, the kernel came from a hash-verified
      // upload, and a kernel that fails to start panics into the firmware,
      // which boots the committed slot.
      const args = ["-l", "--no-checks", "/tmp/kexec-kernel"];
      if (label.initrd) {
        await copyBootFileOut(paths.boot, label.initrd, "/tmp/kexec-initrd");
        args.push("--initrd=/tmp/kexec-initrd");
      }
      const trial = next.trial ? ` ${unitCmdlineKeys.trial}=${next.trialDeadlineMs ?? 600_000}` : "";
      args.push(`--append=${label.append}${trial}`);
      await execFileAsync("/usr/sbin/kexec", args, { timeout: 60_000 });
      say(`kexec into slot ${next.slot}${next.trial ? " (trial)" : ""}`);
      await execFileAsync("/usr/sbin/kexec", ["-e"], { timeout: 60_000 });
    } catch (error) {
      // The firmware path boots the committed slot: safe for a trial too (it
      // just does not happen).
      say(`kexec failed (${(error as Error).message}); rebooting through the firmware instead`);
    }
  }
  await bb("reboot", ["-f"]);
}

export async function runUnitInit(): Promise<void> {
  await mountQuietly("proc", "proc", "/proc");
  await mountQuietly("sysfs", "sysfs", "/sys");
  await mountQuietly("devtmpfs", "devtmpfs", "/dev");
  await mountQuietly("tmpfs", "tmpfs", "/tmp", "mode=1777");
  await mountQuietly("tmpfs", "tmpfs", "/run", "mode=0755");
  process.env.PATH = "/usr/bin:/usr/sbin:/bin:/sbin";
  await loadModules();
  const cmdline = parseUnitCmdline(await readFile("/proc/cmdline", "utf8"));
  const etc = "/etc/rtr7";
  const build = await readBuildInfo(etc);

  const disk = await rootDisk();
  const paths: UnitPaths = {
    boot: partitionDevice(disk, partitionNumbers.boot),
    roots: {
      a: partitionDevice(disk, partitionNumbers.rootA),
      b: partitionDevice(disk, partitionNumbers.rootB),
    },
    mbr: disk,
    perm: "/perm",
    etc,
    run: "/run/rtr7",
  };
  try {
    // ext4's journal with data=ordered and barriers, named explicitly (they
    // are its defaults): what slots.json, trial.json and gokr-pw.txt rely on
    // to survive a power cut (lib/wire/perm-filesystem.ts).
    await mountUnitPerm(
      partitionDevice(disk, partitionNumbers.perm),
      "/perm",
      (args) => bb("mount", args),
      say,
    );
  } catch (error) {
    say(`/perm did not mount (${(error as Error).message}); running with an empty /perm in memory`);
    await mountQuietly("tmpfs", "tmpfs", "/perm");
  }
  // A fleet release names no unit: the hostname lives on /perm, mounted now.
  const named = await unitHostname(paths.perm, build);
  if (named.problem !== undefined) say(named.problem);
  const hostname = named.hostname;
  await writeFile("/proc/sys/kernel/hostname", hostname).catch(() => undefined);

  await bb("ip", ["link", "set", "lo", "up"]).catch(() => undefined);
  const configured = await configureInterfaces(paths.perm);
  const extra: ServiceSpec[] = [];
  let interfaceName = configured[0];
  if (!interfaceName) {
    interfaceName = await firstEthernet();
    if (interfaceName) {
      await writeFile("/run/udhcpc.script", dhcpScript, { mode: 0o755 });
      extra.push({
        name: "dhcp",
        command: busybox,
        args: ["udhcpc", "-f", "-i", interfaceName, "-s", "/run/udhcpc.script", "-x", `hostname:${hostname}`],
      });
      say(`no /perm/interfaces.json: DHCP on ${interfaceName}`);
    }
  }

  // The services answer the LAN only (listen.json, else lan0 and loopback).
  const { problem, ...listen } = await readListenConfig(paths.perm);
  if (problem !== undefined) say(problem);
  if (listen.addresses.includes("0.0.0.0"))
    say(
      "lan0 has no fixed address in /perm/interfaces.json: listening on all addresses, answering local ones only",
    );
  const config: ServiceConfig = {
    mode: "unit",
    hostname,
    version: build.version,
    model: await model(),
    slot: cmdline.slot,
    trial: cmdline.trialDeadlineMs !== undefined,
    address: listen.addresses[0] ?? "0.0.0.0",
    listen,
    ports: { ...unitPorts },
    paths,
    interfaceName,
    bootedAtMs: Date.now() - Math.round(process.uptime() * 1000),
  };
  say(`${config.hostname} ${config.version} on slot ${config.slot}${config.trial ? " (trial)" : ""}`);
  await runSuite({
    config,
    program: { node: process.execPath, init: process.argv[1] ?? "/rtr7/init" },
    trialDeadlineMs: cmdline.trialDeadlineMs,
    extraServices: extra,
    log: createLogger({}).child({ subsystem: "init" }),
    say,
    reboot: (next) => rebootUnit(paths, next),
  });
  say(`up: update API :${unitPorts.update}, diagd :${unitPorts.diagd}, backupd :${unitPorts.backupd}`);
}
