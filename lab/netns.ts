// Network namespaces for the lab and tests. Each run builds its own small
// network (namespaces joined by veth pairs, or a tap for QEMU), so traffic
// never leaves hosts it made itself, and removes it afterwards even when it
// failed. Names carry the creating process's PID so that leftovers of a
// killed run can be recognised and removed by the next one.
import { existsSync, readdirSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { run, start, type Started } from "./processes.js";

const prefix = "rtr7t";
let counter = 0;

export class Netns {
  private readonly processes: Started[] = [];

  private constructor(readonly name: string) {}

  static async create(label: string): Promise<Netns> {
    await removeStaleNamespaces();
    counter += 1;
    const name = `${prefix}-${process.pid}-${counter}-${label}`;
    await run("ip", ["netns", "add", name]);
    await run("ip", ["-n", name, "link", "set", "lo", "up"]);
    return new Netns(name);
  }

  /** Runs a command inside the namespace to completion. */
  exec(command: string, args: string[], options: { timeoutMs?: number } = {}) {
    return run("ip", ["netns", "exec", this.name, command, ...args], options);
  }

  /** Starts a long-running command inside the namespace; stopped by destroy(). */
  start(command: string, args: string[], options: { env?: NodeJS.ProcessEnv } = {}): Started {
    const started = start("ip", ["netns", "exec", this.name, command, ...args], options);
    this.processes.push(started);
    return started;
  }

  async addAddress(device: string, cidr: string): Promise<void> {
    await run("ip", ["-n", this.name, "addr", "add", cidr, "dev", device]);
  }

  async linkUp(device: string): Promise<void> {
    await run("ip", ["-n", this.name, "link", "set", device, "up"]);
  }

  /** A tap device (for QEMU) inside this namespace, up, with an address. */
  async addTap(device: string, cidr: string): Promise<void> {
    await run("ip", ["-n", this.name, "tuntap", "add", "dev", device, "mode", "tap"]);
    await this.addAddress(device, cidr);
    await this.linkUp(device);
  }

  /**
   * /etc/hosts as seen by commands run in this namespace (`ip netns exec`
   * bind-mounts /etc/netns/NAME/hosts over /etc/hosts), so a unit can be
   * reached by its hostname as on a real LAN, without touching the host's.
   */
  async setHosts(entries: Record<string, string>): Promise<void> {
    const dir = path.join("/etc/netns", this.name);
    await mkdir(dir, { recursive: true });
    const lines = [
      "127.0.0.1 localhost",
      ...Object.entries(entries).map(([name, address]) => `${address} ${name}`),
    ];
    await writeFile(path.join(dir, "hosts"), lines.join("\n") + "\n");
  }

  async destroy(): Promise<void> {
    await Promise.all(this.processes.map((started) => started.stop()));
    await run("ip", ["netns", "del", this.name]).catch(() => undefined);
    await rm(path.join("/etc/netns", this.name), { recursive: true, force: true });
  }
}

/**
 * Joins two namespaces with a veth pair: `here` in a, `there` in b, both up,
 * with the given addresses (either may be omitted, e.g. for a DHCP client).
 */
export async function joinWithVeth(
  a: Netns,
  here: { device: string; cidr?: string },
  b: Netns,
  there: { device: string; cidr?: string },
): Promise<void> {
  await run("ip", [
    "-n",
    a.name,
    "link",
    "add",
    here.device,
    "type",
    "veth",
    "peer",
    "name",
    there.device,
    "netns",
    b.name,
  ]);
  if (here.cidr) await a.addAddress(here.device, here.cidr);
  if (there.cidr) await b.addAddress(there.device, there.cidr);
  await a.linkUp(here.device);
  await b.linkUp(there.device);
}

/** Removes namespaces left by earlier test runs whose process is gone. */
async function removeStaleNamespaces(): Promise<void> {
  if (!existsSync("/run/netns")) return;
  for (const name of readdirSync("/run/netns")) {
    const match = new RegExp(`^${prefix}-(\\d+)-`).exec(name);
    if (!match) continue;
    const pid = Number(match[1]);
    if (pid === process.pid || processAlive(pid)) continue;
    await run("ip", ["netns", "del", name]).catch(() => undefined);
    await rm(path.join("/etc/netns", name), { recursive: true, force: true });
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** A Linux bridge in the namespace, up, with no address: the switch of a simulated LAN. */
export async function addBridge(ns: Netns, bridge: string): Promise<void> {
  await run("ip", ["-n", ns.name, "link", "add", bridge, "type", "bridge"]);
  await ns.linkUp(bridge);
}

/**
 * Plugs `other` into the bridge of `switchNs` with a veth pair: `port` is the
 * bridge's end in switchNs (enslaved, up), `there` the other end in `other`.
 */
export async function plugIntoBridge(
  switchNs: Netns,
  bridge: string,
  port: string,
  other: Netns,
  there: { device: string; cidr?: string },
): Promise<void> {
  await joinWithVeth(switchNs, { device: port }, other, there);
  await run("ip", ["-n", switchNs.name, "link", "set", port, "master", bridge]);
}

/** Adds a route in the namespace: `to` (a CIDR or "default") via a gateway. */
export async function addRoute(ns: Netns, to: string, via: string): Promise<void> {
  await run("ip", ["-n", ns.name, "route", "add", to, "via", via]);
}
