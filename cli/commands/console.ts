// `rtr7 console`: show a unit's serial console, line by line, until Ctrl-C,
// optionally appending the raw output to a file. The work is in
// server/serial/watch.ts.
import { Flags } from "@oclif/core";
import { Rtr7Command } from "../base.js";
import { baudFlag, requiredSerialFlag } from "../flags.js";

export default class ConsoleCommand extends Rtr7Command {
  static override summary = "Watch a unit's serial console until Ctrl-C.";

  static override description = `Opens the serial device and prints each console line, prefixed with [serial] and
the device, escape sequences removed. With --log the raw output (escape sequences and
all) is appended to a file. Only watches: nothing is sent to the unit. A kernel panic
is reported as an error line.`;

  static override examples = [
    {
      description: "Watch a unit on a USB serial adapter:",
      command: "<%= config.bin %> console --serial /dev/ttyUSB0",
    },
    {
      description: "Keep the raw output, and print JSON events for a script:",
      command: "<%= config.bin %> console --serial /dev/ttyUSB0 --log console.log --json",
    },
  ];

  static override flags = {
    serial: requiredSerialFlag("Serial device of the unit's console."),
    baud: baudFlag(),
    log: Flags.string({ description: "Append the raw console output to this file.", helpValue: "FILE" }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(ConsoleCommand);
    const log = this.makeLogger(flags);
    const { followConsole } = await import("../../server/serial/watch.js");
    const controller = new AbortController();
    const stop = (): void => controller.abort();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    try {
      await followConsole({
        path: flags.serial,
        baudRate: flags.baud,
        logFile: flags.log,
        log,
        signal: controller.signal,
      });
    } finally {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
    }
  }
}
