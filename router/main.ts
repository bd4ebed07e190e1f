// The unit's one program, bundled into the root image as /rtr7/init:
//   /rtr7/init                      PID 1 on a unit (router/init.ts)
//   /rtr7/init supervisor --dir ... the suite as a plain process (router/process-mode.ts)
//   /rtr7/init service NAME         one service, started by the supervisor
import { createLogger } from "../lib/log.js";
import { services } from "./services.js";
import { readServiceConfig } from "./unit.js";

async function runService(name: string): Promise<void> {
  const load = services[name];
  if (!load) throw new Error(`no service named ${name}; there are: ${Object.keys(services).join(", ")}`);
  const config = readServiceConfig();
  const log = createLogger({}).child({ subsystem: name });
  const main = await load();
  const running = await main(config, log);
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    running.close().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error({ err: error }, `${name}: close failed`);
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

const [command, ...rest] = process.argv.slice(2);
const self = process.argv[1] ?? "/rtr7/init";
if (command === "service") {
  await runService(rest[0] ?? "");
} else if (command === "supervisor") {
  const { runProcessMode } = await import("./process-mode.js");
  await runProcessMode(rest, self);
} else if (command === undefined) {
  const { runUnitInit } = await import("./init.js");
  try {
    await runUnitInit();
  } catch (error) {
    // PID 1 exiting panics the kernel, and panic=10 reboots into the
    // committed slot: the one safe way out of a broken start.
    console.error(
      `rtr7 init: FAILED: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
    );
    process.exit(1);
  }
} else {
  console.error(`rtr7 init: unknown command ${command}; want none (PID 1), supervisor or service NAME`);
  process.exit(2);
}
