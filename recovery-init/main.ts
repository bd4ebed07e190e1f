// rtr7-recovery-init: PID 1 of the recovery initramfs that `rtr7 recover`
// serves. Mounts what the kernel needs, loads the modules, reads the server
// and token from the kernel command line, gets an address by DHCP, runs the
// recovery steps (recover-unit.ts), reports success and reboots. On any
// failure it reports the step and message to the server, prints them on the
// console, and stays up showing them: it never reboots into a half-written
// disk, and as PID 1 it never exits (that would panic the kernel).
import { readFile } from "node:fs/promises";
import { Rtr7Error } from "../lib/errors.js";
import { parseCmdline } from "./cmdline.js";
import { recoverUnit, StepError } from "./recover-unit.js";
import { httpReporter, type Reporter } from "./reporter.js";
import { busyboxSystem, type UnitSystem } from "./system.js";
import { modulesListPath } from "../lib/wire/image-paths.js";

const say = (line: string): void => console.log(`rtr7-recovery: ${line}`);

export async function runRecoveryInit(system: UnitSystem = busyboxSystem): Promise<void> {
  let step = "boot";
  let reporter: Reporter | undefined;
  const started = Date.now();
  try {
    await system.mountEssentials();
    step = "modules";
    const modules = (await readFile(modulesListPath, "utf8").catch(() => ""))
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line !== "");
    for (const failure of await system.loadModules(modules)) say(`module not loaded: ${failure}`);
    step = "cmdline";
    const parameters = parseCmdline(await system.cmdline());
    say(`recovering ${parameters.hostname} from ${parameters.server}:${parameters.port}`);
    reporter = httpReporter({
      baseUrl: `http://${parameters.server}:${parameters.port}`,
      token: parameters.token,
      say,
    });
    step = "network";
    const lease = await system.bringUpNetwork(60_000);
    say(`${lease.interfaceName} (${lease.mac}) has ${lease.address}/${lease.prefixLength}`);
    await reporter.progress({ step: "network", message: `${lease.interfaceName} has ${lease.address}` });
    const { tlsFingerprint } = await recoverUnit({ parameters, lease, system, reporter, say });
    const seconds = Math.round((Date.now() - started) / 1000);
    await reporter
      .success({ message: `${parameters.hostname} recovered in ${seconds} s`, tlsFingerprint })
      .catch((error: Error) =>
        say(`the server did not take the success report (${error.message}); rebooting anyway`),
      );
    say("recovered: rebooting");
    await system.reboot();
  } catch (error) {
    const failedStep = error instanceof StepError ? error.step : step;
    // The unit's hint (what to do) travels with the message to the workstation.
    const cause = error instanceof StepError ? error.cause : error;
    const hint = cause instanceof Rtr7Error ? ` (${cause.hint})` : "";
    const message = (error instanceof Error ? error.message : String(error)) + hint;
    say(`FAILED at ${failedStep}: ${message}`);
    await reporter
      ?.failure({ step: failedStep, message })
      .catch((reportError: Error) => say(reportError.message));
    say("not rebooting: the disk may be half-written. Fix the cause and run rtr7 recover again.");
    // Stay up, showing the failure now and then on the console.
    setInterval(() => say(`FAILED at ${failedStep}: ${message}`), 60_000);
  }
}

await runRecoveryInit();
