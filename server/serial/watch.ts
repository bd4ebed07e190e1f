// The two ways rtr7 uses a unit's serialConsole. watchConsole: during a recovery,
// open it, drive the boot menu if asked, and report what ends the run (a
// kernel panic, a boot menu that could not be driven) through onFatal.
// followConsole: `rtr7 console`, which only shows the lines until stopped.
import type { Rtr7Error } from "../../lib/errors.js";
import { openConsole, type ConsoleOptions, type SerialConsole } from "./console.js";

export interface WatchConsoleOptions extends ConsoleOptions {
  /** Called once with the first error that makes the recovery hopeless. */
  onFatal?: (error: Rtr7Error) => void;
}

/** Opens the console and keeps watching it until its close() is called. */
export async function watchConsole(options: WatchConsoleOptions): Promise<SerialConsole> {
  const serialConsole = await openConsole(options);
  let reported = false;
  const fatal = (error: Rtr7Error): void => {
    if (reported || serialConsole.isClosed) return;
    reported = true;
    options.onFatal?.(error);
  };
  serialConsole.on("panic", fatal);
  serialConsole.bootMenuChoice().catch((error: Rtr7Error) => fatal(error));
  return serialConsole;
}

export interface FollowConsoleOptions extends Omit<ConsoleOptions, "bootMenu" | "bootMenuTimeouts"> {
  /** Stops following (Ctrl-C at the command line). */
  signal: AbortSignal;
}

/** Shows the console's lines through the logger until signal aborts or the port goes away. */
export async function followConsole(options: FollowConsoleOptions): Promise<void> {
  const serialConsole = await openConsole({ ...options, bootMenu: "none" });
  await new Promise<void>((resolve) => {
    if (options.signal.aborted) return resolve();
    options.signal.addEventListener("abort", () => resolve(), { once: true });
    serialConsole.once("close", () => resolve());
  });
  await serialConsole.close();
}
