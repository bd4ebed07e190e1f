// Runs the unit's services as child processes and keeps them running: a
// service that exits or is killed is started again after a backoff that
// doubles with each quick failure (1 s, 2 s, 4 s ... 30 s) and resets once it
// has stayed up for a while, so a service that crashes at start costs little
// and never takes the others down. Every line a service prints goes to the
// console with its name and into a ring buffer for the status page. The
// state (pids, restarts, update counters) is written to the status file that
// diagd reads for /metrics.
import { spawn, type ChildProcess } from "node:child_process";
import type { Logger } from "../../lib/log.js";
import { LineSplitter } from "./lines.js";
import { writeSupervisorState, type ServiceStatus, type SupervisorState } from "./state.js";

export interface ServiceSpec {
  name: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
}

export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
  /** A run at least this long resets the backoff to initialMs. */
  resetAfterMs: number;
}

export const defaultBackoff: BackoffPolicy = { initialMs: 1000, maxMs: 30_000, resetAfterMs: 10_000 };

/** The delay before restart number `failures` (1 = the first quick failure). */
export function backoffDelay(policy: BackoffPolicy, failures: number): number {
  return Math.min(policy.maxMs, policy.initialMs * 2 ** Math.max(0, failures - 1));
}

export interface LogLine {
  at: number;
  service: string;
  line: string;
}

/** The last `capacity` lines, oldest first. */
export class RingBuffer<T> {
  private readonly items: T[] = [];
  constructor(private readonly capacity: number) {}
  push(item: T): void {
    this.items.push(item);
    if (this.items.length > this.capacity) this.items.splice(0, this.items.length - this.capacity);
  }
  toArray(): T[] {
    return [...this.items];
  }
}

interface Supervised {
  spec: ServiceSpec;
  status: ServiceStatus;
  child?: ChildProcess;
  timer?: NodeJS.Timeout;
  quickFailures: number;
  exited?: Promise<void>;
}

export class Supervisor {
  readonly logs = new RingBuffer<LogLine>(2000);
  readonly counters: SupervisorState["counters"] = { updates: 0, failedUpdates: 0, rollbacks: 0 };
  private readonly supervised = new Map<string, Supervised>();
  private boot: SupervisorState["boot"];
  private stopping = false;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    private readonly options: {
      runDirectory: string;
      log: Logger;
      backoff?: BackoffPolicy;
      /** Where service lines go besides the ring buffer; default the supervisor's stdout. */
      console?: (line: string) => void;
    },
  ) {}

  private get backoff(): BackoffPolicy {
    return this.options.backoff ?? defaultBackoff;
  }

  start(specs: ServiceSpec[]): void {
    for (const spec of specs) {
      const entry: Supervised = {
        spec,
        status: { name: spec.name, state: "starting", restarts: 0 },
        quickFailures: 0,
      };
      this.supervised.set(spec.name, entry);
      this.launch(entry);
    }
    this.saveState();
  }

  /** Records the running slot and whether it is on trial, for the services to read. */
  setBoot(boot: NonNullable<SupervisorState["boot"]>): void {
    this.boot = { ...boot };
    this.saveState();
  }

  state(): SupervisorState {
    return {
      ...(this.boot ? { boot: { ...this.boot } } : {}),
      services: [...this.supervised.values()].map((entry) => ({ ...entry.status })),
      counters: { ...this.counters },
    };
  }

  /** Records a change of the counters (updates, rollbacks) in the status file. */
  countersChanged(): void {
    this.saveState();
  }

  private saveState(): void {
    const snapshot = this.state();
    this.writing = this.writing
      .then(() => writeSupervisorState(this.options.runDirectory, snapshot))
      .catch((error: unknown) =>
        this.options.log.warn({ err: error }, "Could not write the supervisor status file."),
      );
  }

  private emit(service: string, line: string): void {
    this.logs.push({ at: Date.now(), service, line });
    (this.options.console ?? ((text: string) => process.stdout.write(text + "\n")))(`[${service}] ${line}`);
  }

  private launch(entry: Supervised): void {
    if (this.stopping) return;
    const { spec } = entry;
    const startedAt = Date.now();
    let child: ChildProcess;
    try {
      child = spawn(spec.command, spec.args, {
        env: spec.env ?? process.env,
        stdio: ["ignore", "pipe", "pipe"],
      });
    } catch (error) {
      this.emit(spec.name, `could not start: ${String(error)}`);
      this.scheduleRestart(entry, startedAt, "spawn failed");
      return;
    }
    entry.child = child;
    entry.status = {
      ...entry.status,
      state: "running",
      pid: child.pid,
      startedAtMs: startedAt,
    };
    for (const stream of [child.stdout, child.stderr]) {
      const lines = new LineSplitter((line) => this.emit(spec.name, line));
      stream?.setEncoding("utf8");
      stream?.on("data", (chunk: string) => lines.push(chunk));
      stream?.on("end", () => lines.end());
    }
    entry.exited = new Promise((resolve) => {
      child.on("error", (error) => {
        this.emit(spec.name, `could not start ${spec.command}: ${error.message}`);
      });
      child.on("close", (code, signal) => {
        const how = signal ? `signal ${signal}` : `exit code ${String(code)}`;
        entry.child = undefined;
        entry.status = { ...entry.status, pid: undefined, lastExit: how };
        resolve();
        if (this.stopping) {
          entry.status.state = "stopped";
          this.saveState();
          return;
        }
        this.scheduleRestart(entry, startedAt, how);
      });
    });
    this.saveState();
  }

  private scheduleRestart(entry: Supervised, startedAt: number, how: string): void {
    const ranMs = Date.now() - startedAt;
    entry.quickFailures = ranMs >= this.backoff.resetAfterMs ? 1 : entry.quickFailures + 1;
    const delay = backoffDelay(this.backoff, entry.quickFailures);
    entry.status = { ...entry.status, state: "backoff" };
    this.options.log.warn(
      { service: entry.spec.name, how, ranMs, delayMs: delay },
      `${entry.spec.name} ended (${how}) after ${(ranMs / 1000).toFixed(1)} s; restarting in ${(delay / 1000).toFixed(1)} s.`,
    );
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      entry.status = { ...entry.status, restarts: entry.status.restarts + 1, state: "starting" };
      this.launch(entry);
    }, delay);
    this.saveState();
  }

  /** SIGTERM to every service, SIGKILL to those still running after `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    this.stopping = true;
    const waits: Promise<void>[] = [];
    for (const entry of this.supervised.values()) {
      if (entry.timer) clearTimeout(entry.timer);
      entry.status.state = "stopped";
      const child = entry.child;
      if (child && entry.exited) {
        child.kill("SIGTERM");
        const exited = entry.exited;
        waits.push(
          Promise.race([exited, new Promise<void>((resolve) => setTimeout(resolve, graceMs).unref())]).then(
            async () => {
              if (entry.child) {
                entry.child.kill("SIGKILL");
                await exited;
              }
            },
          ),
        );
      }
    }
    await Promise.all(waits);
    this.saveState();
    await this.writing;
  }
}
