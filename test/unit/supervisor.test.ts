// The supervisor with real child processes: a killed service comes back
// within its backoff, a service that crashes at start is retried with a
// growing delay and never disturbs the others, and the status file that
// diagd reads follows along.
import assert from "node:assert/strict";
import { test } from "node:test";
import { silentLogger } from "../../lib/log.js";
import { readSupervisorState, type ServiceStatus } from "../../router/supervisor/state.js";
import {
  backoffDelay,
  RingBuffer,
  Supervisor,
  type BackoffPolicy,
} from "../../router/supervisor/supervisor.js";
import { scratchDir } from "../helpers/scratch.js";

const policy: BackoffPolicy = { initialMs: 200, maxMs: 1600, resetAfterMs: 3000 };

async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

test("backoff doubles per quick failure up to its cap", () => {
  assert.deepEqual(
    [1, 2, 3, 4, 5, 6].map((failures) => backoffDelay(policy, failures)),
    [200, 400, 800, 1600, 1600, 1600],
  );
});

test("the ring buffer keeps the newest lines", () => {
  const ring = new RingBuffer<number>(3);
  for (let i = 1; i <= 5; i += 1) ring.push(i);
  assert.deepEqual(ring.toArray(), [3, 4, 5]);
});

test("a killed service is back within its backoff; a crashing one does not take the others down", async (t) => {
  const run = await scratchDir(t, "supervisor");
  const lines: string[] = [];
  const supervisor = new Supervisor({
    runDirectory: run,
    log: silentLogger(),
    backoff: policy,
    console: (line) => lines.push(line),
  });
  t.after(() => supervisor.stop(1000));
  supervisor.start([
    {
      name: "steady",
      command: process.execPath,
      args: ["-e", "console.log('steady up'); setInterval(() => {}, 1000)"],
    },
    {
      name: "crasher",
      command: process.execPath,
      args: ["-e", "console.error('crashing at start'); process.exit(3)"],
    },
  ]);
  const steady = () => supervisor.state().services.find((service) => service.name === "steady");
  const firstPid = await until("steady to run", () => steady()?.pid);

  // The crasher is restarted again and again with growing delays...
  const restartTimes: number[] = [];
  let seen = 0;
  await until(
    "four crasher restarts",
    () => {
      const crasher = supervisor.state().services.find((service) => service.name === "crasher");
      if (crasher && crasher.restarts > seen) {
        seen = crasher.restarts;
        restartTimes.push(Date.now());
      }
      return seen >= 4 ? true : undefined;
    },
    15_000,
  );
  const gaps = restartTimes.slice(1).map((time, index) => time - (restartTimes[index] ?? time));
  console.log(`crasher restart gaps (ms): ${gaps.join(", ")}`);
  assert.ok(lines.some((line) => line === "[crasher] crashing at start"));
  // ...while the steady service was never restarted.
  assert.equal(steady()?.pid, firstPid);
  assert.equal(steady()?.restarts, 0);

  // Killed from outside, it comes back with a new pid once its backoff has passed.
  process.kill(firstPid, "SIGKILL");
  const secondPid = await until("steady to come back", () => {
    const pid = steady()?.pid;
    return pid !== undefined && pid !== firstPid ? pid : undefined;
  });
  assert.notEqual(secondPid, firstPid);
  assert.equal(steady()?.restarts, 1);
  assert.match(steady()?.lastExit ?? "", /SIGKILL/);

  // The status file diagd reads says the same.
  const deadline = Date.now() + 5000;
  let savedSteady: ServiceStatus | undefined;
  do {
    await new Promise((resolve) => setTimeout(resolve, 25));
    savedSteady = (await readSupervisorState(run))?.services.find((service) => service.name === "steady");
  } while (savedSteady?.pid !== secondPid && Date.now() < deadline);
  assert.equal(savedSteady?.pid, secondPid);
  assert.equal(savedSteady?.restarts, 1);

  await supervisor.stop(1000);
  assert.throws(() => process.kill(secondPid, 0), /ESRCH/);
});
