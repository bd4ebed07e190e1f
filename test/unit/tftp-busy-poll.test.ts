// BusyPoll with an injected clock and scheduler: it polls for its budget after
// a send, measures an epoch polling and one sleeping, and keeps whichever was
// faster (sleeping unless polling wins by 5%) until the next cycle, whose
// length doubles while the same mode keeps winning.
import { test } from "node:test";
import assert from "node:assert/strict";
import { BusyPoll, epochLength, longestCycle, shortestCycle } from "../../server/tftp/busy-poll.js";

function harness(budgetMicroseconds = 250) {
  let now = 0n;
  const deferred: (() => void)[] = [];
  const poll = new BusyPoll({
    budgetMicroseconds,
    now: () => now,
    defer: (callback) => deferred.push(callback),
  });
  return {
    poll,
    deferred,
    advance: (microseconds: number): void => {
      now += BigInt(microseconds * 1000);
    },
    /** Runs what was deferred until nothing is; how many polls ran. */
    drain: (stepMicroseconds: number): number => {
      let runs = 0;
      while (deferred.length > 0) {
        deferred.shift()?.();
        runs += 1;
        now += BigInt(stepMicroseconds * 1000);
      }
      return runs;
    },
    /** One epoch of sends, each gapMicroseconds after the previous one. */
    epoch: (gapMicroseconds: number): void => {
      for (let send = 0; send < epochLength; send += 1) {
        now += BigInt(gapMicroseconds * 1000);
        poll.touch();
        deferred.length = 0;
      }
    },
  };
}

test("after a send it polls until the budget is used up, then stops", () => {
  const { poll, drain } = harness(250);
  poll.touch();
  const runs = drain(10);
  assert.ok(runs >= 25 && runs <= 27, `polled ${runs} times`);
  assert.equal(drain(10), 0);
});

test("a budget of 0 never polls", () => {
  const { poll, deferred } = harness(0);
  poll.touch();
  assert.equal(deferred.length, 0);
  assert.equal(poll.mode(), "sleep");
});

test("it keeps polling for the cycle when polling made blocks faster", () => {
  const { poll, epoch } = harness();
  // The first send only starts the clock; epoch 0 polls, epoch 1 sleeps.
  poll.touch();
  assert.equal(poll.mode(), "poll");
  epoch(30);
  assert.equal(poll.mode(), "sleep");
  epoch(75);
  assert.equal(poll.cycle(), shortestCycle);
  for (let index = 2; index < shortestCycle; index += 1) {
    assert.equal(poll.mode(), "poll", `epoch ${index}`);
    epoch(30);
  }
  assert.equal(poll.mode(), "poll", "a new cycle measures polling again");
  epoch(30);
  assert.equal(poll.mode(), "sleep", "... and then sleeping");
  epoch(75);
  assert.equal(poll.cycle(), shortestCycle * 2, "the same winner: a longer cycle");
  assert.equal(poll.mode(), "poll");
});

test("cycles grow to the longest while the winner stays, and shrink when it changes", () => {
  const { poll, epoch } = harness();
  poll.touch();
  for (let cycle = shortestCycle; cycle <= longestCycle; cycle *= 2) {
    epoch(30);
    epoch(75);
    assert.equal(poll.cycle(), cycle);
    for (let index = 2; index < cycle; index += 1) epoch(30);
  }
  epoch(30);
  epoch(75);
  assert.equal(poll.cycle(), longestCycle);
  for (let index = 2; index < longestCycle; index += 1) epoch(30);
  epoch(80);
  epoch(40);
  assert.equal(poll.mode(), "sleep");
  assert.equal(poll.cycle(), shortestCycle);
});

test("it sleeps for the cycle unless polling was at least 5% faster", () => {
  const { poll, epoch, deferred } = harness();
  poll.touch();
  epoch(60);
  epoch(62);
  assert.equal(poll.mode(), "sleep");
  deferred.length = 0;
  poll.touch();
  assert.equal(deferred.length, 0, "no polling while sleeping wins");
});

test("gaps between transfers (50 ms or more) are not measured", () => {
  const { poll, epoch, advance } = harness();
  poll.touch();
  for (let send = 0; send < epochLength - 1; send += 1) {
    advance(30);
    poll.touch();
  }
  advance(60_000);
  poll.touch();
  assert.equal(poll.mode(), "poll", "the long gap did not end the epoch");
  epoch(30);
  assert.equal(poll.mode(), "sleep");
});

test("stop() ends polling at once", () => {
  const { poll, deferred, drain } = harness();
  poll.touch();
  poll.stop();
  assert.equal(drain(1), 1);
  poll.touch();
  assert.equal(deferred.length, 0);
});
