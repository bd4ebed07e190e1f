// What every rtr7 command shares: the --json and --verbose flags, the one
// logger built from them, and the way errors reach the user: an Rtr7Error
// prints as one plain line with its hint (a JSON line with --json), a stack
// trace only with DEBUG set. Exit codes: 2 for usage errors (bad flags), 1 for
// everything else. This is the only place that sets the exit code. A usage
// error is told apart by its class (oclif's CLIError) or by where it was
// thrown (oclif's parse), never by its message text.
import { Command, Errors, Flags, type Interfaces } from "@oclif/core";
import { createLogger, type Logger, type LoggerOptions } from "../lib/log.js";
import { isRtr7Error } from "../lib/errors.js";

/** Errors thrown while oclif parsed the command line: usage errors, whatever their class. */
const parseFailures = new WeakSet<object>();

/** oclif's `{ [name: string]: any }` for parsed flags and arguments, which its index does not export. */
type ParsedOutput = Interfaces.OutputFlags<Interfaces.FlagInput>;

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

  /** oclif's parse, noting what it throws: a flag's own check that oclif rethrows is a usage error too. */
  protected override async parse<F extends ParsedOutput, B extends ParsedOutput, A extends ParsedOutput>(
    options?: Interfaces.Input<F, B, A>,
    argv?: string[],
  ): Promise<Interfaces.ParserOutput<F, B, A>> {
    try {
      return await super.parse(options, argv);
    } catch (error) {
      if (typeof error === "object" && error !== null) parseFailures.add(error);
      throw error;
    }
  }

  protected override async catch(error: Interfaces.CommandError): Promise<unknown> {
    if (error instanceof Errors.ExitError) return super.catch(error);
    let code: string;
    let message: string;
    let hint: string;
    if (isRtr7Error(error)) {
      // A flag's own check (cli/flags.ts) throws an Rtr7Error, which oclif
      // hands on with "Parsing --FLAG" lines around its message.
      ({ code, hint } = error);
      message = oneLine(error.message);
    } else if (error instanceof Errors.CLIError || parseFailures.has(error)) {
      // oclif's own parse errors: unknown flags, missing or invalid values.
      code = "RTR7_ERR_USAGE";
      message = oneLine(error.message);
      hint =
        `Run \`rtr7 ${(this.id ?? "").replace(/:/g, " ")} --help\` to see its flags and examples.`.replace(
          "  ",
          " ",
        );
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

/** oclif's multi-line parse messages as one line: "Parsing --disk: disk "x": want ...". */
function oneLine(message: string): string {
  return message
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !/^(See more help|The following error occurred)/.test(line))
    .join(": ");
}
