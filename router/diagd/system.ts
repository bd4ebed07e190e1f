// What diagd reads from the machine it runs on: link state and counters from
// /sys/class/net, IPv4 addresses, the default route from /proc/net/route, a
// ping of the gateway and TCP connects. Everything sits behind SystemView so
// that tests can hand in a fake machine, and the real one is parameterised by
// paths (sysfs, procfs, busybox) so that it also works in a network
// namespace and in process mode.
//
// Addresses come from `busybox ip -o -f inet addr show` rather than from
// os.networkInterfaces(): libuv leaves out every interface that is not up and
// running, so a link that went down would also lose its address and with it
// the way to tell which interface holds config.address. The unit and the
// host both have a static busybox at /bin/busybox, which is also what pings
// (the host has no other ping).
import { execFile } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";

export interface InterfaceAddress {
  interfaceName: string;
  /** "10.0.0.2/24". */
  cidr: string;
  address: string;
}

export interface DefaultRoute {
  interfaceName: string;
  gateway: string;
  metric: number;
}

export interface LinkState {
  /** "up", "down", "unknown", "dormant", ...; undefined when the interface does not exist. */
  operstate: string | undefined;
  /** /sys/class/net/IF/carrier: true, false, or undefined when unreadable (admin down). */
  carrier: boolean | undefined;
  /** Mb/s, when the driver reports one. */
  speedMbps: number | undefined;
}

export interface ProbeResult {
  ok: boolean;
  detail: string;
}

/** The machine as diagd sees it. Every method honours `signal` by giving up. */
export interface SystemView {
  interfaceNames(): string[];
  linkState(interfaceName: string): Promise<LinkState>;
  addresses(signal: AbortSignal): Promise<InterfaceAddress[]>;
  defaultRoutes(): Promise<DefaultRoute[]>;
  ping(address: string, signal: AbortSignal): Promise<ProbeResult>;
  tcpConnect(host: string, port: number, signal: AbortSignal): Promise<ProbeResult>;
  /** One counter of /sys/class/net/IF/statistics, or undefined when unreadable. */
  statistic(interfaceName: string, counter: string): number | undefined;
}

export interface RealSystemOptions {
  /** Default /sys/class/net. */
  netClassDir?: string;
  /** Default /proc/net/route (the calling process's network namespace). */
  routeFile?: string;
  /** Default /bin/busybox. */
  busybox?: string;
}

export function realSystem(options: RealSystemOptions = {}): SystemView {
  const netClassDir = options.netClassDir ?? "/sys/class/net";
  const routeFile = options.routeFile ?? "/proc/net/route";
  const busybox = options.busybox ?? "/bin/busybox";
  return {
    interfaceNames: () => listInterfaces(netClassDir),
    async linkState(interfaceName) {
      const dir = path.join(netClassDir, interfaceName);
      const operstate = await readSysfs(path.join(dir, "operstate"));
      const carrier = await readSysfs(path.join(dir, "carrier"));
      const speed = Number(await readSysfs(path.join(dir, "speed")));
      return {
        operstate,
        carrier: carrier === undefined ? undefined : carrier === "1",
        speedMbps: Number.isFinite(speed) && speed > 0 ? speed : undefined,
      };
    },
    async addresses(signal) {
      try {
        const output = await execText(busybox, ["ip", "-o", "-f", "inet", "addr", "show"], signal);
        return parseIpAddrOneline(output);
      } catch {
        return nodeAddresses();
      }
    },
    async defaultRoutes() {
      return parseDefaultRoutes(await readFile(routeFile, "utf8"));
    },
    async ping(address, signal) {
      try {
        const output = await execText(busybox, ["ping", "-c", "1", "-W", "1", address], signal);
        const time = /time=([\d.]+) ?ms/.exec(output);
        return { ok: true, detail: time ? `answered in ${time[1]} ms` : "answered" };
      } catch (error) {
        if (signal.aborted) throw error;
        const output = (error as { stdout?: string }).stdout ?? "";
        const loss = /(\d+% packet loss)/.exec(output);
        return {
          ok: false,
          detail: `no answer to ping (${loss?.[1] ?? (error as Error).message.split("\n")[0]})`,
        };
      }
    },
    tcpConnect: connectOnce,
    statistic(interfaceName, counter) {
      try {
        const text = readFileSync(path.join(netClassDir, interfaceName, "statistics", counter), "utf8");
        const value = Number(text.trim());
        return Number.isFinite(value) && value >= 0 ? value : undefined;
      } catch {
        // The interface went away between listing and reading.
        return undefined;
      }
    },
  };
}

function listInterfaces(netClassDir: string): string[] {
  try {
    return readdirSync(netClassDir).sort();
  } catch {
    return [];
  }
}

async function readSysfs(file: string): Promise<string | undefined> {
  try {
    return (await readFile(file, "utf8")).trim();
  } catch {
    // Missing interface, or EINVAL (carrier and speed of an interface that is down).
    return undefined;
  }
}

function execText(command: string, args: string[], signal: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { signal, encoding: "utf8", maxBuffer: 1024 * 1024 }, (error, stdout) => {
      if (error) {
        const failure: Error & { stdout?: string } = error;
        failure.stdout = stdout;
        reject(failure);
      } else resolve(stdout);
    });
  });
}

/** Lines of `ip -o -f inet addr show` (busybox or iproute2): "2: lan0    inet 10.0.0.2/24 brd ...". */
export function parseIpAddrOneline(output: string): InterfaceAddress[] {
  const found: InterfaceAddress[] = [];
  for (const line of output.split("\n")) {
    const match = /^\d+:\s+(\S+)\s+inet\s+(\S+)/.exec(line);
    if (!match?.[1] || !match[2]) continue;
    const cidr = match[2];
    found.push({ interfaceName: match[1].replace(/@.*$/, ""), cidr, address: cidr.split("/")[0] ?? cidr });
  }
  return found;
}

function nodeAddresses(): InterfaceAddress[] {
  const found: InterfaceAddress[] = [];
  for (const [interfaceName, entries] of Object.entries(os.networkInterfaces())) {
    for (const entry of entries ?? []) {
      if (entry.family === "IPv4")
        found.push({ interfaceName, cidr: entry.cidr ?? entry.address, address: entry.address });
    }
  }
  return found;
}

/**
 * The default routes of /proc/net/route (destination and mask 0, flags UP and
 * GATEWAY), lowest metric first. Addresses there are the kernel's u32 printed
 * in hex, i.e. in the host's byte order.
 */
export function parseDefaultRoutes(text: string, endianness: "LE" | "BE" = os.endianness()): DefaultRoute[] {
  const routeUp = 0x1;
  const routeGateway = 0x2;
  const routes: DefaultRoute[] = [];
  for (const line of text.split("\n").slice(1)) {
    const [interfaceName, destination, gateway, flags, , , metric, mask] = line.trim().split(/\s+/);
    if (!interfaceName || !destination || !gateway || !flags || !mask) continue;
    const flagBits = parseInt(flags, 16);
    if (destination !== "00000000" || mask !== "00000000") continue;
    if ((flagBits & routeUp) === 0 || (flagBits & routeGateway) === 0) continue;
    routes.push({ interfaceName, gateway: hexToAddress(gateway, endianness), metric: Number(metric ?? 0) });
  }
  return routes.sort((a, b) => a.metric - b.metric);
}

function hexToAddress(hex: string, endianness: "LE" | "BE"): string {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(parseInt(hex, 16) >>> 0);
  const ordered = endianness === "LE" ? [...bytes].reverse() : [...bytes];
  return ordered.join(".");
}

function connectOnce(host: string, port: number, signal: AbortSignal): Promise<ProbeResult> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve({ ok: false, detail: "no connection (timed out)" });
    const started = performance.now();
    const socket = net.connect({ host, port });
    const finish = (result: ProbeResult): void => {
      signal.removeEventListener("abort", onAbort);
      socket.destroy();
      resolve(result);
    };
    const onAbort = (): void => finish({ ok: false, detail: "no connection (timed out)" });
    signal.addEventListener("abort", onAbort, { once: true });
    socket.once("connect", () =>
      finish({ ok: true, detail: `connected in ${(performance.now() - started).toFixed(1)} ms` }),
    );
    socket.once("error", (error: NodeJS.ErrnoException) =>
      finish({ ok: false, detail: `no connection (${error.code ?? error.message})` }),
    );
  });
}
