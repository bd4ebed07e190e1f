// What every rtr7 command shares: the --json and --verbose flags, the one
// logger built from them, and the way errors reach the user: an Rtr7Error
// prints as one plain line with its hint (a JSON line with --json), a stack
// trace only with DEBUG set. This is the only place that sets the exit code.
import { Command, Flags, type Interfaces } from "@oclif/core";
import { createLogger, type Logger } from "../lib/log.js";
import { isRtr7Error } from "../lib/errors.js";

export abstract class Rtr7Command extends Command {
  static override baseFlags = {
    json: Flags.boolean({ description: "Print one JSON event per line instead of human-readable lines." }),
    verbose: Flags.boolean({ char: "v", description: "Also print debug events (every packet and request)." }),
  };

  private jsonOutput = false;

  /** Builds the logger from the parsed base flags; call once in run(). */
  protected makeLogger(flags: { json: boolean; verbose: boolean }): Logger {
    this.jsonOutput = flags.json;
    return createLogger({ json: flags.json, level: flags.verbose ? "debug" : "info" });
  }

  protected override async catch(error: Interfaces.CommandError): Promise<unknown> {
    if (!isRtr7Error(error)) {
      if ("oclif" in error || error.name === "CLIError") return super.catch(error);
      if (process.env.DEBUG) console.error(error.stack);
      process.stderr.write(`rtr7: ${error.message}\n  (run with DEBUG=1 for the stack trace)\n`);
      process.exitCode = 1;
      return;
    }
    if (this.jsonOutput) {
      process.stdout.write(
        JSON.stringify({
          level: "error",
          event: "error",
          code: error.code,
          msg: error.message,
          hint: error.hint,
        }) + "\n",
      );
    } else {
      process.stderr.write(`rtr7: ${error.message}\n  hint: ${error.hint}\n`);
    }
    if (process.env.DEBUG) console.error(error.stack);
    process.exitCode = 1;
  }
}
