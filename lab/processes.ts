// Child processes for the lab and tests: started with their output captured
// line by line, waited on with a bound, and ended by their own PID (never by
// name) when done, whether the run passed or not.
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** Runs a command to completion; rejects with its stderr when it fails. */
export async function run(
  command: string,
  args: string[],
  options: { timeoutMs?: number; input?: string } = {},
): Promise<RunResult> {
  try {
    const result = await execFileAsync(command, args, {
      timeout: options.timeoutMs ?? 60_000,
      maxBuffer: 64 * 1024 * 1024,
      encoding: "utf8",
    });
    return { stdout: result.stdout, stderr: result.stderr };
  } catch (error) {
    const failed = error as { stderr?: string; message: string };
    throw new Error(`${command} ${args.join(" ")} failed: ${failed.stderr?.trim() || failed.message}`, {
      cause: error,
    });
  }
}

/** Whether a program is on PATH (or an absolute path that exists). */
export async function haveTool(name: string): Promise<boolean> {
  try {
    await execFileAsync("sh", ["-c", `command -v "$1"`, "sh", name]);
    return true;
  } catch {
    return false;
  }
}

export interface Started {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Everything printed so far, stdout and stderr interleaved by line. */
  output(): string;
  /** Resolves with the first line (from now on or already seen) matching pattern. */
  waitForLine(pattern: RegExp, timeoutMs: number): Promise<string>;
  /** Resolves with the exit code (or signal name) once the process has ended. */
  exited(timeoutMs: number): Promise<number | string>;
  /** Sends SIGTERM, then SIGKILL after a grace period; idempotent. */
  stop(graceMs?: number): Promise<void>;
}

const running = new Set<Started>();

/** Starts a process; remember to stop() it (or call stopAll in an after hook). */
export function start(command: string, args: string[], options: { env?: NodeJS.ProcessEnv } = {}): Started {
  const child = spawn(command, args, {
    stdio: ["pipe", "pipe", "pipe"],
    env: options.env ?? process.env,
  });
  if (child.pid === undefined) throw new Error(`could not start ${command}`);
  const lines: string[] = [];
  const waiters: { pattern: RegExp; resolve: (line: string) => void; fail: () => void }[] = [];
  let exitValue: number | string | undefined;
  const exitWaiters: ((value: number | string) => void)[] = [];

  const onLine = (line: string): void => {
    lines.push(line);
    for (const waiter of [...waiters]) {
      if (waiter.pattern.test(line)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve(line);
      }
    }
  };
  for (const stream of [child.stdout, child.stderr]) {
    let partial = "";
    stream?.setEncoding("utf8");
    stream?.on("data", (chunk: string) => {
      partial += chunk;
      const parts = partial.split(/\r?\n/);
      partial = parts.pop() ?? "";
      parts.forEach(onLine);
    });
    stream?.on("end", () => {
      if (partial !== "") onLine(partial);
      partial = "";
    });
  }
  child.on("exit", (code, signal) => {
    exitValue = code ?? signal ?? "unknown";
    running.delete(handle);
    for (const waiter of exitWaiters.splice(0)) waiter(exitValue);
  });
  // Output may still be in flight at "exit"; a line waiter gives up only once
  // the streams are closed too.
  child.on("close", () => {
    for (const waiter of waiters.splice(0)) waiter.fail();
  });
  child.on("error", () => undefined);

  const handle: Started = {
    child,
    pid: child.pid,
    output: () => lines.join("\n"),
    waitForLine(pattern, timeoutMs) {
      const seen = lines.find((line) => pattern.test(line));
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const waiter = {
          pattern,
          resolve: (line: string) => {
            clearTimeout(timer);
            resolve(line);
          },
          fail: () => {
            clearTimeout(timer);
            reject(
              new Error(
                `${command} exited (${String(exitValue)}) without a line matching ${String(pattern)}; output:\n${lines.slice(-40).join("\n")}`,
              ),
            );
          },
        };
        if (exitValue !== undefined && child.stdout?.readableEnded !== false) return waiter.fail();
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(waiter), 1);
          reject(
            new Error(
              `${command}: no line matching ${String(pattern)} within ${timeoutMs} ms; output:\n${lines.slice(-40).join("\n")}`,
            ),
          );
        }, timeoutMs);
        waiters.push(waiter);
      });
    },
    exited(timeoutMs) {
      if (exitValue !== undefined) return Promise.resolve(exitValue);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(
              new Error(
                `${command} still running after ${timeoutMs} ms; output:\n${lines.slice(-40).join("\n")}`,
              ),
            ),
          timeoutMs,
        );
        exitWaiters.push((value) => {
          clearTimeout(timer);
          resolve(value);
        });
      });
    },
    async stop(graceMs = 3000) {
      if (exitValue !== undefined) return;
      child.kill("SIGTERM");
      try {
        await handle.exited(graceMs);
      } catch {
        child.kill("SIGKILL");
        await handle.exited(5000).catch(() => undefined);
      }
    },
  };
  running.add(handle);
  return handle;
}

/** Stops every process started through this module that is still running. */
export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((started) => started.stop()));
}

/**
 * Why a lab run cannot go ahead here (not root, or a tool missing), or
 * undefined when it can.
 */
export async function missingPrerequisite(tools: string[], rootReason: string): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return `needs root: ${rootReason}`;
  for (const tool of tools) {
    if (!(await haveTool(tool))) return `needs ${tool}: run scripts/setup.sh`;
  }
  return undefined;
}
