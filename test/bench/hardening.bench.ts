// What the unit's hardening costs a normal update (issue 11): the same
// 256 MiB PUT /update/root by curl -T, alternated in one run, into an update
// API with everything on (the request guard's source, Host and cross-site
// checks, the connection caps, the password limiter, the upload's deadline
// and minimum rate) and into one without the guard and caps, as the API was
// before them. Both write a file-backed slot and read it back. The ratio
// (hardened speed / plain speed) is the number to keep at 0.95 or above.
// Never asserts on time.
import { randomBytes } from "node:crypto";
import { mkdtemp, open, rm, truncate, writeFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { silentLogger } from "../../lib/log.js";
import { listenUnitApp } from "../../router/http-guard/serve.js";
import { buildUpdateApi } from "../../router/update-api/server.js";
import { FakeBootControl, makeMbrSector } from "../integration/update-api-fixture.js";
import { fileBackedUnitPaths } from "../helpers/unit-paths.js";
import { compare, printComparisons, timeCommand } from "./harness.js";
import { curlPushArgs } from "../helpers/curl.js";

const sizeMiB = 256;
const rounds = Number(process.env.RTR7_BENCH_HARDENING_ROUNDS ?? 5);
const password = "bench-hardening";

async function unitApi(dir: string, hardened: boolean): Promise<{ url: string; close: () => Promise<void> }> {
  const paths = await fileBackedUnitPaths(dir);
  for (const slot of [paths.roots.a, paths.roots.b]) {
    await writeFile(slot, "");
    await truncate(slot, (sizeMiB + 16) * 1024 * 1024);
  }
  await writeFile(paths.mbr, makeMbrSector());
  const app = buildUpdateApi({
    paths,
    boot: new FakeBootControl({ running: "a", trial: false, committed: "a" }),
    password,
    log: silentLogger(),
    withoutRequestGuard: !hardened,
  });
  if (hardened) await listenUnitApp(app, { address: "127.0.0.1" }, 0, "update API", silentLogger());
  else await app.listen({ host: "127.0.0.1", port: 0 });
  const port = (app.server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}/update/root`, close: () => app.close() };
}

async function main(): Promise<void> {
  const work = await mkdtemp(path.join(tmpdir(), "rtr7-bench-hardening-"));
  try {
    const image = path.join(work, "root.img");
    const handle = await open(image, "w");
    for (let done = 0; done < sizeMiB; done += 16) await handle.write(randomBytes(16 * 1024 * 1024));
    await handle.close();
    const plain = await unitApi(path.join(work, "plain"), false);
    const hardened = await unitApi(path.join(work, "hardened"), true);
    try {
      const push = (url: string) => () => timeCommand("curl", curlPushArgs(password, image, url));
      const result = await compare(
        `PUT ${sizeMiB} MiB root`,
        { name: "hardened", run: push(hardened.url) },
        { name: "plain", run: push(plain.url) },
        rounds,
      );
      printComparisons(
        "Update API with its hardening (rtr7 column) vs without the guard and caps (peer column), curl -T, loopback",
        "unguarded",
        [result],
        sizeMiB * 1024 * 1024,
      );
    } finally {
      await Promise.all([plain.close(), hardened.close()]);
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await main();
