// `rtr7 reset`: reset the unit through the Teensy rebootor, or list the
// attached rebootors. The work is in server/rebootor.ts.
import { Flags } from "@oclif/core";
import { Rtr7Command } from "../base.js";
import { rebootorFlag } from "../flags.js";

export default class Reset extends Rtr7Command {
  static override summary = "Reset the unit through the Teensy rebootor (USB 16c0:0477).";

  static override description = `Writes the reset report to the Teensy rebootor wired to the unit's reset pins.
With no rebootor attached it says so and asks you to reset the unit by hand (exit 0).
With several attached, choose one with --rebootor; --list shows them.`;

  static override examples = [
    { description: "Reset the unit through the only attached rebootor:", command: "<%= config.bin %> reset" },
    {
      description: "Choose one of several rebootors by serial number or hidraw path:",
      command: "<%= config.bin %> reset --rebootor /dev/hidraw3",
    },
    {
      description: "List the attached rebootors for a script:",
      command: "<%= config.bin %> reset --list --json",
    },
  ];

  static override flags = {
    rebootor: rebootorFlag(),
    list: Flags.boolean({ description: "List the attached rebootors instead of resetting." }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(Reset);
    const log = this.makeLogger(flags);
    const { listRebootors, resetUnit, describeRebootor } = await import("../../server/rebootor.js");
    if (!flags.list) {
      await resetUnit({ rebootor: flags.rebootor, log });
      return;
    }
    const rebootors = await listRebootors();
    if (flags.json) {
      process.stdout.write(JSON.stringify({ event: "rebootors", rebootors }) + "\n");
    } else if (rebootors.length === 0) {
      process.stdout.write("no rebootor attached (USB 16c0:0477)\n");
    } else {
      for (const rebootor of rebootors) process.stdout.write(describeRebootor(rebootor) + "\n");
    }
  }
}
