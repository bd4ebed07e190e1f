// Runs one unit-target call and prints its outcome as one JSON line, for
// tests and benchmarks that reach the unit from inside a namespace (the test
// process itself stays in the host's): `node update-client-driver.js JSON`
// with {endpoint, password, idleTimeoutMs?, op, ...}. Outcome:
// {"ok": true, "result": ...} or {"ok": false, "code", "message", "causes"},
// and always "log": every line the target logged (at trace level), so a test
// can check that no secret reached it. A push may cut the network once,
// synchronously, as soon as cutAfterBytes were sent (cutCommand, e.g.
// `ip -n NS link set lan0 down`), so the cut always lands mid-upload however
// fast the link is.
import { execFileSync } from "node:child_process";
import { pino } from "pino";
import { isRtr7Error, describeError } from "../../lib/errors.js";
import type { UpdateHash, UploadTarget } from "../../lib/wire/update-protocol.js";
import { openUnit, probeUnitHealth, type UnitEndpoint, type UnitTarget } from "../../updates/client/index.js";

interface Command {
  endpoint: UnitEndpoint;
  password: string;
  idleTimeoutMs?: number;
  requestTimeoutMs?: number;
  chunkBytes?: number;
  op: "features" | "push" | "health" | "backup" | "testboot" | "switch" | "commit" | "reboot";
  target?: UploadTarget;
  file?: string;
  /** Insist on SHA-256 even with a unit that lists updatehash. */
  hash?: UpdateHash;
  busyRetryMs?: number;
  cutAfterBytes?: number;
  cutCommand?: string[];
  timeoutMs?: number;
  destination?: string;
  deadlineMs?: number;
  kexec?: boolean;
}

const logLines: string[] = [];
const log = pino({ level: "trace" }, { write: (line: string) => logLines.push(line) });

async function perform(command: Command): Promise<unknown> {
  let progressCalls = 0;
  let lastProgress = 0;
  let cut = false;
  const started = performance.now();
  let unit: UnitTarget | undefined;
  // diagd answers while the update API is down (a reboot): no target needed.
  if (command.op === "health")
    return (await probeUnitHealth(command.endpoint, { timeoutMs: command.timeoutMs })) ?? null;
  try {
    unit = await openUnit(
      command.endpoint,
      { password: command.password },
      {
        log,
        idleTimeoutMs: command.idleTimeoutMs,
        requestTimeoutMs: command.requestTimeoutMs,
        chunkBytes: command.chunkBytes,
        updateHash: command.hash,
      },
    );
    return await call(unit, command, (sent, total) => {
      progressCalls += 1;
      lastProgress = sent;
      if (!cut && command.cutCommand && sent >= (command.cutAfterBytes ?? 0) && sent < total) {
        cut = true;
        const [program, ...args] = command.cutCommand;
        execFileSync(program ?? "false", args);
      }
    }).then((result) =>
      command.op === "push" || command.op === "backup"
        ? { ...(result as object), progressCalls, lastProgress, cut }
        : result,
    );
  } catch (error) {
    if (error instanceof Error)
      Object.assign(error, {
        details: { progressCalls, lastProgress, cut, ms: performance.now() - started },
      });
    throw error;
  }
}

function call(
  unit: UnitTarget,
  command: Command,
  onProgress: (sent: number, total: number) => void,
): Promise<unknown> {
  switch (command.op) {
    case "features":
      return Promise.resolve({
        raw: unit.featuresText,
        hash: unit.updateHash,
        partuuid: unit.supports("partuuid"),
      });
    case "push":
      return unit.streamTo(command.target ?? "root", command.file ?? "", {
        busyRetryMs: command.busyRetryMs,
        onProgress,
      });
    case "health":
      return unit.health({ timeoutMs: command.timeoutMs }).then((report) => report ?? null);
    case "backup":
      return unit.backup(command.destination ?? "", { onProgress: (bytes) => onProgress(bytes, Infinity) });
    case "testboot":
      return unit.testboot({ deadlineMs: command.deadlineMs });
    case "switch":
      return unit.switch();
    case "commit":
      return unit.commit();
    case "reboot":
      return unit.reboot({ kexec: command.kexec ?? true });
  }
}

/** Each error in the cause chain: its code, message and hint. */
function causes(error: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let at: unknown = error; at instanceof Error; at = at.cause)
    chain.push({
      code: isRtr7Error(at) ? at.code : undefined,
      message: at.message,
      hint: (at as { hint?: unknown }).hint,
      stack: at.stack,
    });
  return chain;
}

const command = JSON.parse(process.argv[2] ?? "{}") as Command;
try {
  console.log(JSON.stringify({ ok: true, result: await perform(command), log: logLines.join("") }));
} catch (error) {
  console.log(
    JSON.stringify({
      ok: false,
      code: isRtr7Error(error) ? error.code : undefined,
      message: describeError(error),
      details: (error as { details?: unknown }).details,
      causes: causes(error),
      log: logLines.join(""),
    }),
  );
}
