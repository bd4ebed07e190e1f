// Runs one UpdateClient call and prints its outcome as one JSON line, for
// tests and benchmarks that reach the unit from inside a namespace (the test
// process itself stays in the host's): `node update-client-driver.js JSON`
// with {endpoint, password, idleTimeoutMs?, op, ...}. Outcome:
// {"ok": true, "result": ...} or {"ok": false, "code", "message"}. A push
// may cut the network once, synchronously, as soon as cutAfterBytes were
// sent (cutCommand, e.g. `ip -n NS link set lan0 down`), so the cut always
// lands mid-upload however fast the link is.
import { execFileSync } from "node:child_process";
import { isRtr7Error, describeError } from "../../lib/errors.js";
import {
  UpdateClient,
  type UnitEndpoint,
  type UpdateHash,
  type UploadTarget,
} from "../../updates/client/update-client.js";

interface Command {
  endpoint: UnitEndpoint;
  password: string;
  idleTimeoutMs?: number;
  requestTimeoutMs?: number;
  chunkBytes?: number;
  op: "features" | "push" | "health" | "backup" | "testboot" | "switch" | "commit" | "reboot";
  target?: UploadTarget;
  file?: string;
  hash?: UpdateHash;
  busyRetryMs?: number;
  cutAfterBytes?: number;
  cutCommand?: string[];
  timeoutMs?: number;
  destination?: string;
  deadlineMs?: number;
  kexec?: boolean;
}

async function perform(command: Command): Promise<unknown> {
  const client = new UpdateClient({
    endpoint: command.endpoint,
    password: command.password,
    idleTimeoutMs: command.idleTimeoutMs,
    requestTimeoutMs: command.requestTimeoutMs,
    chunkBytes: command.chunkBytes,
  });
  switch (command.op) {
    case "features":
      return client.features();
    case "push": {
      let progressCalls = 0;
      let lastProgress = 0;
      let cut = false;
      const started = performance.now();
      try {
        const result = await client.push(command.target ?? "root", command.file ?? "", {
          hash: command.hash ?? "sha256",
          busyRetryMs: command.busyRetryMs,
          onProgress: (sent, total) => {
            progressCalls += 1;
            lastProgress = sent;
            if (!cut && command.cutCommand && sent >= (command.cutAfterBytes ?? 0) && sent < total) {
              cut = true;
              const [program, ...args] = command.cutCommand;
              execFileSync(program ?? "false", args);
            }
          },
        });
        return { ...result, progressCalls, lastProgress, cut };
      } catch (error) {
        if (error instanceof Error)
          Object.assign(error, {
            details: { progressCalls, lastProgress, cut, ms: performance.now() - started },
          });
        throw error;
      }
    }
    case "health":
      return (await client.health(command.timeoutMs)) ?? null;
    case "backup": {
      let progressCalls = 0;
      const result = await client.downloadBackup(command.destination ?? "", () => (progressCalls += 1));
      return { ...result, progressCalls };
    }
    case "testboot":
      return client.testboot({ deadlineMs: command.deadlineMs });
    case "switch":
      return client.switchSlot();
    case "commit":
      return client.commit();
    case "reboot":
      return client.reboot({ kexec: command.kexec ?? true });
  }
}

const command = JSON.parse(process.argv[2] ?? "{}") as Command;
try {
  console.log(JSON.stringify({ ok: true, result: await perform(command) }));
} catch (error) {
  console.log(
    JSON.stringify({
      ok: false,
      code: isRtr7Error(error) ? error.code : undefined,
      message: describeError(error),
      details: (error as { details?: unknown }).details,
    }),
  );
}
