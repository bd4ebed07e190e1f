// safe-update's steps, by name, and the clock they run on. The names are
// part of the CLI's output (a "step" event as each starts; tests kill the
// CLI at each one) and of the result, which times every step that ran.
// The clock is injected so tests of the waits (the unit going down, coming
// back healthy, a trial falling back) run without waiting in real time.

export const safeUpdateSteps = [
  "health",
  "backup",
  "build",
  "push",
  "testboot",
  "down",
  "healthy",
  "soak",
  "commit",
  "finish",
] as const;
export type SafeUpdateStep = (typeof safeUpdateSteps)[number];

export interface StepTiming {
  step: SafeUpdateStep;
  /** When the step started (ISO 8601, on the injected clock). */
  startedAt: string;
  ms: number;
  outcome: "ok" | "failed";
}

export interface Clock {
  /** Milliseconds since the epoch. */
  now: () => number;
  sleep: (ms: number) => Promise<void>;
}

export const realClock: Clock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

/** Runs named steps in order, timing each on the clock and announcing each as it starts. */
export class StepRunner {
  readonly timings: StepTiming[] = [];

  constructor(
    private readonly clock: Clock,
    private readonly onStep: ((step: SafeUpdateStep) => void) | undefined,
  ) {}

  async run<T>(step: SafeUpdateStep, work: () => Promise<T>): Promise<T> {
    const started = this.clock.now();
    const timing: StepTiming = { step, startedAt: new Date(started).toISOString(), ms: 0, outcome: "failed" };
    this.timings.push(timing);
    this.onStep?.(step);
    try {
      const result = await work();
      timing.outcome = "ok";
      return result;
    } finally {
      timing.ms = this.clock.now() - started;
    }
  }

  get current(): SafeUpdateStep | undefined {
    return this.timings.at(-1)?.step;
  }
}
