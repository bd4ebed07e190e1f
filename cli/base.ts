// What every rtr7 command shares: the --json and --verbose flags, the one
// logger built from them, and the way errors reach the user: an Rtr7Error
// prints as one plain line with its hint (a JSON line with --json), a stack
// trace only with DEBUG set. Exit codes: 2 for usage errors (bad flags), 1 for
// everything else. This is the only place that sets the exit code.
import { Command, Errors, Flags, type Interfaces } from "@oclif/core";
import { createLogger, type Logger, type LoggerOptions } from "../lib/log.js";
import { isRtr7Error } from "../lib/errors.js";

export abstract class Rtr7Command extends Command {
  static override baseFlags = {
    json: Flags.boolean({ description: "Print one JSON event per line instead of human-readable lines." }),
    verbose: Flags.boolean({ char: "v", description: "Also print debug events (every packet and request)." }),
  };

  private jsonOutput = false;

  /** Builds the logger from the parsed base flags; call once in run(). */
  protected makeLogger(flags: { json: boolean; verbose: boolean }, stream?: LoggerOptions["stream"]): Logger {
    this.jsonOutput = flags.json;
    return createLogger({ json: flags.json, level: flags.verbose ? "debug" : "info", stream });
  }

  protected override async catch(error: Interfaces.CommandError): Promise<unknown> {
    if (error instanceof Errors.ExitError) return super.catch(error);
    let code: string;
    let message: string;
    let hint: string;
    if (isRtr7Error(error)) {
      ({ code, message, hint } = error);
    } else if (error instanceof Errors.CLIError || /^Parsing --/.test(error.message)) {
      // oclif's own parse errors: unknown flags, missing or invalid values.
      code = "RTR7_ERR_USAGE";
      message = error.message
        .split("\n")
        .map((line) => line.trim())
        .filter((line) => line !== "" && !/^(See more help|The following error occurred)/.test(line))
        .join(": ");
      hint = `Run \`rtr7 ${this.id ?? ""} --help\` to see its flags and examples.`.replace("  ", " ");
    } else {
      code = "RTR7_ERR_INTERNAL";
      message = error.message;
      hint = "This is a bug in rtr7: run again with DEBUG=1 and report the stack trace.";
    }
    if (this.jsonOutput || this.argv.includes("--json")) {
      process.stdout.write(
        JSON.stringify({ level: "error", event: "error", code, msg: message, hint }) + "\n",
      );
    } else {
      process.stderr.write(`rtr7: ${message}\n  hint: ${hint}\n`);
    }
    if (process.env.DEBUG) console.error(error.stack);
    process.exitCode = code === "RTR7_ERR_USAGE" ? 2 : 1;
    return undefined;
  }
}
