// A small fleet of process-mode units (`rtr7 lab unit`), as the fleet tests
// need it: a "switch" namespace holding one Linux bridge, each unit in its own
// namespace plugged into it by a veth pair, and a "workstation" namespace on
// the same bridge, so mDNS multicast flows between all of them as on an
// office LAN. Optionally one more unit on a routed subnet: workstation ↔
// router namespace (ip_forward=1) ↔ unit namespace, with routes both ways,
// so unicast reaches it but mDNS does not (no multicast routing), which is
// what the inventory is for.
//
// Units start in parallel, each from its own image directory with its own
// hostname, /perm seeded, and its update API password read back. The
// workstation gets /etc/hosts entries for every unit, a temporary
// XDG_CONFIG_HOME and XDG_DATA_HOME (`env`, for the CLI), where
// writePasswords and writeInventory put gokrazy's password files and the
// fleet inventory. destroy() stops everything and removes what was made, and
// runs too when the start fails part way.
//
// LAN: <subnet>.0.0/24: workstation .1, router .254, units .10, .11, ...
// Routed: <routedSubnet>.0.0/24: router .1, unit .2.
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { execFile } from "node:child_process";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import type { Started } from "../../lab/processes.js";
import { addBridge, addRoute, joinWithVeth, Netns, plugIntoBridge } from "../../lab/netns.js";
import { addInventoryUnit, inventoryFile, type InventoryUnit } from "../../updates/fleet/inventory.js";
import { cliEntry } from "./paths.js";

const execFileAsync = promisify(execFile);

export interface FleetLabUnitSpec {
  hostname: string;
  /** Images to fill the unit's directory from (mbr.img, boot.img, root.img, manifest.json). */
  imagesDir: string;
  /** Files under /perm, by relative path. */
  permFiles?: Record<string, string>;
}

export interface FleetLabUnit {
  hostname: string;
  address: string;
  ns: Netns;
  /** The unit's directory (slots, boot.img, perm/). */
  dir: string;
  imagesDir: string;
  /** False for units on the bridge, true for the one behind the router. */
  routed: boolean;
  /** The `rtr7 lab unit` process. */
  process: Started;
  password: string;
}

/** What the per-unit hook gets: the unit's namespace and directory, before it starts. */
export type FleetLabUnitSetup = (unit: {
  hostname: string;
  address: string;
  ns: Netns;
  dir: string;
  routed: boolean;
}) => Promise<void>;

export interface FleetLabOptions {
  /** Short label for the namespaces and directories (a few letters). */
  label: string;
  /** Units on the bridge. */
  units: FleetLabUnitSpec[];
  /** One unit on a routed subnet, out of mDNS's reach. */
  routedUnit?: FleetLabUnitSpec;
  /** The LAN's first two octets, default "10.70". */
  subnet?: string;
  /** The routed subnet's first two octets, default "10.71". */
  routedSubnet?: string;
  /** Runs for each unit after its namespace and directory exist, before it starts. */
  setup?: FleetLabUnitSetup;
  /** How long a unit may take to come up (default 90 s). */
  startTimeoutMs?: number;
  /**
   * `rtr7 keys init` in the lab's XDG_CONFIG_HOME before the units start,
   * and every unit trusts that key (as `rtr7 recover` would make it).
   */
  signing?: boolean;
}

export interface FleetLab {
  switchNs: Netns;
  workstation: Netns;
  router: Netns | undefined;
  /** The workstation's address on the bridge. */
  workstationAddress: string;
  /** The workstation's interface on the bridge (for avahi, --interface). */
  workstationInterface: string;
  /** The bridge units in the order given, then the routed one. */
  units: FleetLabUnit[];
  unit(hostname: string): FleetLabUnit;
  /** The workstation's XDG_CONFIG_HOME (gokrazy/, rtr7/fleet.json). */
  configHome: string;
  /** A fresh updates directory for --updates-dir. */
  updatesDir: string;
  /** process.env with XDG_CONFIG_HOME and XDG_DATA_HOME pointing into the lab. */
  env: NodeJS.ProcessEnv;
  /** Writes gokrazy/hosts/H/http-password.txt for these units (default all). */
  writePasswords(units?: FleetLabUnit[]): Promise<void>;
  /** Adds (or replaces) inventory entries in configHome's rtr7/fleet.json. */
  writeInventory(entries: InventoryUnit[]): Promise<string>;
  /** Starts a command in the workstation namespace (lab env unless given). */
  startInWorkstation(command: string, args: string[], env?: NodeJS.ProcessEnv): Started;
  /** Runs `node bin/run.js ...args` in the workstation namespace to its end. */
  cli(
    args: string[],
    options?: { timeoutMs?: number; env?: NodeJS.ProcessEnv },
  ): Promise<{
    code: number | string;
    output: string;
  }>;
  /** Stops every unit and process, removes the namespaces and directories. */
  destroy(): Promise<void>;
}

export async function startFleetLab(options: FleetLabOptions): Promise<FleetLab> {
  const subnet = options.subnet ?? "10.70";
  const routedSubnet = options.routedSubnet ?? "10.71";
  const label = options.label;
  const namespaces: Netns[] = [];
  const dirs: string[] = [];
  const units: FleetLabUnit[] = [];
  const started: Started[] = [];
  const destroy = async (): Promise<void> => {
    await Promise.all(started.map((child) => child.stop(15_000)));
    await Promise.all(namespaces.map((ns) => ns.destroy()));
    await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true })));
  };
  const namespace = async (suffix: string): Promise<Netns> => {
    const ns = await Netns.create(`${label}${suffix}`);
    namespaces.push(ns);
    return ns;
  };
  try {
    const work = await mkdtemp(path.join(tmpdir(), `rtr7-${label}-`));
    dirs.push(work);
    const configHome = path.join(work, "config");
    const dataHome = path.join(work, "data");
    const updatesDir = path.join(work, "updates");
    await Promise.all([configHome, dataHome, updatesDir].map((dir) => mkdir(dir, { recursive: true })));
    const env: NodeJS.ProcessEnv = { ...process.env, XDG_CONFIG_HOME: configHome, XDG_DATA_HOME: dataHome };
    const trustKey: string[] = [];
    if (options.signing) {
      await execFileAsync(process.execPath, [cliEntry, "keys", "init"], { env });
      trustKey.push("--trust-key", path.join(configHome, "rtr7", "keys", "signing.pub"));
    }

    const switchNs = await namespace("sw");
    await addBridge(switchNs, "br0");
    const workstation = await namespace("ws");
    const workstationAddress = `${subnet}.0.1`;
    const workstationInterface = "ws0";
    await plugIntoBridge(switchNs, "br0", "pws", workstation, {
      device: workstationInterface,
      cidr: `${workstationAddress}/24`,
    });

    const planned: { spec: FleetLabUnitSpec; ns: Netns; address: string; routed: boolean }[] = [];
    for (const [index, spec] of options.units.entries()) {
      const ns = await namespace(`u${index}`);
      const address = `${subnet}.0.${10 + index}`;
      await plugIntoBridge(switchNs, "br0", `pu${index}`, ns, { device: "lan0", cidr: `${address}/24` });
      planned.push({ spec, ns, address, routed: false });
    }

    let router: Netns | undefined;
    if (options.routedUnit) {
      router = await namespace("rt");
      const routerLan = `${subnet}.0.254`;
      const routerRouted = `${routedSubnet}.0.1`;
      await plugIntoBridge(switchNs, "br0", "prt", router, { device: "lan0", cidr: `${routerLan}/24` });
      const ns = await namespace("ru");
      const address = `${routedSubnet}.0.2`;
      await joinWithVeth(router, { device: "far0", cidr: `${routerRouted}/24` }, ns, {
        device: "lan0",
        cidr: `${address}/24`,
      });
      await router.exec("sysctl", ["-q", "-w", "net.ipv4.ip_forward=1"]);
      await addRoute(workstation, `${routedSubnet}.0.0/24`, routerLan);
      await addRoute(ns, "default", routerRouted);
      planned.push({ spec: options.routedUnit, ns, address, routed: true });
    }

    await workstation.setHosts(Object.fromEntries(planned.map((unit) => [unit.spec.hostname, unit.address])));

    await Promise.all(
      planned.map(async ({ spec, ns, address, routed }) => {
        const dir = await mkdtemp(path.join(tmpdir(), `rtr7-${label}-${spec.hostname}-`));
        dirs.push(dir);
        for (const [name, content] of Object.entries(spec.permFiles ?? {})) {
          const file = path.join(dir, "perm", name);
          await mkdir(path.dirname(file), { recursive: true });
          await writeFile(file, content);
        }
        await options.setup?.({ hostname: spec.hostname, address, ns, dir, routed });
        const unitProcess = ns.start(process.execPath, [
          cliEntry,
          "lab",
          "unit",
          "--dir",
          dir,
          "--hostname",
          spec.hostname,
          "--address",
          address,
          "--image-dir",
          spec.imagesDir,
          ...trustKey,
        ]);
        started.push(unitProcess);
        await unitProcess.waitForLine(/rtr7 init: up:/, options.startTimeoutMs ?? 90_000);
        const password = (await readFile(path.join(dir, "perm", "gokr-pw.txt"), "utf8")).trim();
        units.push({
          hostname: spec.hostname,
          address,
          ns,
          dir,
          imagesDir: spec.imagesDir,
          routed,
          process: unitProcess,
          password,
        });
      }),
    );
    const order = planned.map((unit) => unit.spec.hostname);
    units.sort((x, y) => order.indexOf(x.hostname) - order.indexOf(y.hostname));

    const startInWorkstation = (command: string, args: string[], commandEnv = env): Started => {
      const child = workstation.start(command, args, { env: commandEnv });
      started.push(child);
      return child;
    };
    return {
      switchNs,
      workstation,
      router,
      workstationAddress,
      workstationInterface,
      units,
      unit(hostname) {
        const found = units.find((unit) => unit.hostname === hostname);
        if (!found) throw new Error(`the fleet lab has no unit ${hostname}`);
        return found;
      },
      configHome,
      updatesDir,
      env,
      async writePasswords(which = units) {
        for (const unit of which) {
          const file = path.join(configHome, "gokrazy", "hosts", unit.hostname, "http-password.txt");
          await mkdir(path.dirname(file), { recursive: true });
          await writeFile(file, unit.password + "\n", { mode: 0o600 });
        }
      },
      async writeInventory(entries) {
        const file = inventoryFile(env);
        for (const entry of entries) await addInventoryUnit(file, entry);
        return file;
      },
      startInWorkstation,
      async cli(args, cliOptions = {}) {
        const child = startInWorkstation(process.execPath, [cliEntry, ...args], cliOptions.env ?? env);
        const code = await child.exited(cliOptions.timeoutMs ?? 120_000);
        return { code, output: child.output() };
      },
      destroy,
    };
  } catch (error) {
    await destroy();
    throw error;
  }
}
