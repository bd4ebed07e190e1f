// The unit's suite, the same on a unit (PID 1, router/init.ts) and in process
// mode (router/process-mode.ts): settles the last trial, makes sure /perm has
// the update password, starts the services under the supervisor, serves the
// update API from this process (it must outlive the services it stops for a
// reboot) and, while the running slot is on trial, reboots into the committed
// slot when the commit deadline passes.
import { mkdir, readFile } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "../lib/log.js";
import {
  settleTrialRecord,
  SyslinuxBootControl,
  defaultTrialDeadlineMs,
  type NextBoot,
} from "./boot/boot-control.js";
import { services } from "./services.js";
import { Supervisor, type ServiceSpec } from "./supervisor/supervisor.js";
import { serviceConfigVariable, type ServiceConfig } from "./unit.js";
import { defaultConnectionCaps } from "./http-guard/connection-caps.js";
import { listenUnitApp } from "./http-guard/serve.js";
import { unitTlsListen } from "./http-guard/unit-tls.js";
import { buildUpdateApi } from "./update-api/server.js";
import { readOrCreatePassword } from "./update-api/password.js";
import { readUplinkConfig } from "./uplink/config.js";

export interface SuiteOptions {
  config: ServiceConfig;
  /** The program to run services with: [node, /rtr7/init]. */
  program: { node: string; init: string };
  /** How long a trial may run uncommitted; default 10 min. */
  trialDeadlineMs?: number;
  /** Reboots into `next` once the services are stopped (kexec, reboot(2), or the lab's loop). */
  reboot: (next: NextBoot) => Promise<void>;
  log: Logger;
  /** Platform services started with the built-in ones (the DHCP client on a unit). */
  extraServices?: ServiceSpec[];
  /** Shown on the console when a password was generated. */
  say: (line: string) => void;
}

export interface RunningSuite {
  supervisor: Supervisor;
  /** Stops the update API and the services (for a shutdown that is not a reboot). */
  stop(): Promise<void>;
}

/** Extra programs an image may bring (/etc/rtr7/services.json), supervised like the built-in ones. */
interface ExtraServices {
  services?: { name?: unknown; command?: unknown }[];
}

async function extraServices(config: ServiceConfig, log: Logger): Promise<ServiceSpec[]> {
  const file = path.join(config.paths.etc, "services.json");
  let parsed: ExtraServices;
  try {
    parsed = JSON.parse(await readFile(file, "utf8")) as ExtraServices;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT")
      log.error({ err: error, file }, `${file} is not valid JSON; its services are not started.`);
    return [];
  }
  const specs: ServiceSpec[] = [];
  for (const entry of parsed.services ?? []) {
    const command = entry.command;
    if (
      typeof entry.name !== "string" ||
      !Array.isArray(command) ||
      command.length === 0 ||
      !command.every((part) => typeof part === "string")
    ) {
      log.error(
        { entry, file },
        `${file}: want {"name": "...", "command": ["program", "arg", ...]}; skipped.`,
      );
      continue;
    }
    const [program = "", ...args] = command;
    specs.push({ name: entry.name, command: program, args });
  }
  return specs;
}

export async function runSuite(options: SuiteOptions): Promise<RunningSuite> {
  const { config, log } = options;
  await mkdir(config.paths.run, { recursive: true });
  const supervisor = new Supervisor({
    runDirectory: config.paths.run,
    log: log.child({ subsystem: "supervisor" }),
  });

  const settled = await settleTrialRecord(config.paths, config);
  if (settled.rolledBackFrom) {
    supervisor.counters.rollbacks += 1;
    options.say(
      `slot ${settled.rolledBackFrom} was on trial and not committed: rolled back, running slot ${config.slot}`,
    );
  }

  const { password, created } = await readOrCreatePassword(config.paths.perm);
  if (created)
    options.say(`generated the update API password in ${config.paths.perm}/gokr-pw.txt: ${password}`);

  // Made before the services start, so each finds it on /perm.
  const tls = await unitTlsListen(config, "update", log.child({ subsystem: "tls" }));

  const env = { ...process.env, [serviceConfigVariable]: JSON.stringify(config) };
  // The uplink runs only for a unit enrolled in a remote fleet, with a configuration that parses.
  const uplink = await readUplinkConfig(config.paths.perm, config.hostname).catch((error: unknown) => {
    options.say(`uplink not started: ${error instanceof Error ? error.message : String(error)}`);
    return undefined;
  });
  const names = Object.keys(services).filter((name) => name !== "uplink" || uplink !== undefined);
  const builtIn: ServiceSpec[] = names.map((name) => ({
    name,
    command: options.program.node,
    args: [options.program.init, "service", name],
    env,
  }));
  supervisor.setBoot({ slot: config.slot, trial: config.trial });
  supervisor.start([...(options.extraServices ?? []), ...builtIn, ...(await extraServices(config, log))]);

  let deadline: NodeJS.Timeout | undefined;
  let rebooting = false;
  const rebootInto = async (next: NextBoot): Promise<void> => {
    if (rebooting) return;
    rebooting = true;
    if (deadline) clearTimeout(deadline);
    options.say(
      `rebooting into slot ${next.slot}${next.trial ? " (trial)" : ""}${next.kexec ? " with kexec" : ""}`,
    );
    await api.close().catch(() => undefined);
    await supervisor.stop();
    await options.reboot(next);
  };

  const boot = new SyslinuxBootControl({
    paths: config.paths,
    slot: config.slot,
    trial: config.trial,
    rebooter: (next) => {
      // Reply first (the client waits for it), then reboot.
      setImmediate(() => void rebootInto(next));
      return Promise.resolve();
    },
    log: log.child({ subsystem: "boot" }),
    onCommit: () => {
      if (deadline) clearTimeout(deadline);
      deadline = undefined;
      supervisor.setBoot({ slot: config.slot, trial: false });
      options.say(`slot ${config.slot} committed`);
    },
  });

  const api = buildUpdateApi({
    paths: config.paths,
    boot,
    password,
    unit: config,
    log: log.child({ subsystem: "update" }),
    onEvent: (event) => {
      if (event.kind !== "upload") return;
      if (event.ok) supervisor.counters.updates += 1;
      else supervisor.counters.failedUpdates += 1;
      supervisor.countersChanged();
    },
    statusPage: () =>
      Promise.resolve({
        hostname: config.hostname,
        version: config.version,
        slot: config.slot,
        trial: boot.running().trial,
        ...supervisor.state(),
      }),
  });
  await listenUnitApp(api, config, config.ports.update, "update API", log, defaultConnectionCaps, tls);

  if (config.trial) {
    const ms = options.trialDeadlineMs ?? defaultTrialDeadlineMs;
    options.say(
      `slot ${config.slot} runs on trial: commit within ${Math.round(ms / 1000)} s or it falls back`,
    );
    deadline = setTimeout(() => {
      void boot.committedSlot().then(
        (committed) => {
          options.say(
            `no commit within ${Math.round(ms / 1000)} s: rebooting into committed slot ${committed}`,
          );
          return rebootInto({ slot: committed, trial: false, kexec: false });
        },
        (error: unknown) =>
          log.error({ err: error }, "Cannot read the committed slot at the trial deadline."),
      );
    }, ms);
  }

  return {
    supervisor,
    async stop() {
      if (deadline) clearTimeout(deadline);
      await api.close().catch(() => undefined);
      await supervisor.stop();
    },
  };
}
