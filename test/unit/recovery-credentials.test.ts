// The unit's update API password during a recovery: the recovery server
// hands it out at GET /credentials with the run's session token only (403
// without, and the password is not even looked up), never logs it, and marks
// it no-store; recovery-init fetches it and writes /perm/gokr-pw.txt 0600
// over the one a restored backup put there; a server that offers none (404)
// leaves /perm's own.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { buildRecoveryHttp, type RecoveryHttpOptions } from "../../server/http/recovery-http.js";
import { FileMap, fileFromBuffer } from "../../lib/served-files.js";
import { errorCatalogue } from "../../lib/errors.js";
import { createLogger, silentLogger } from "../../lib/log.js";
import { fetchUnitPassword, writeUnitPassword } from "../../recovery-init/credentials.js";
import { scratchDir } from "../helpers/scratch.js";

const token = "0123456789abcdef0123456789abcdef";

function build(overrides: Partial<RecoveryHttpOptions> = {}) {
  return buildRecoveryHttp({
    files: new FileMap([fileFromBuffer("root.img", randomBytes(1024))]),
    manifest: { images: [] },
    token,
    log: silentLogger(),
    ...overrides,
  });
}

function assertErrorReply(response: { statusCode: number; body: string }, what: string): void {
  assert.equal(response.statusCode, errorCatalogue.RTR7_ERR_REPORT_TOKEN.status, `${what}: ${response.body}`);
  assert.equal((JSON.parse(response.body) as { code: string }).code, "RTR7_ERR_REPORT_TOKEN", what);
}

test("GET /credentials hands out the password with the token only, and never logs it", async (t) => {
  const lines: string[] = [];
  const password = "s3cret-Pw_for-shop1";
  let asked = 0;
  const { app } = build({
    log: createLogger({ json: true, level: "trace", stream: { write: (line: string) => lines.push(line) } }),
    password: () => {
      asked += 1;
      return Promise.resolve(password);
    },
  });
  t.after(() => app.close());
  for (const authorization of [undefined, "Bearer wrong", `Basic ${token}`, `Bearer ${token}x`]) {
    const refused = await app.inject({
      method: "GET",
      url: "/credentials",
      headers: authorization === undefined ? {} : { authorization },
    });
    assertErrorReply(refused, `credentials with ${authorization ?? "no token"}`);
  }
  assert.equal(asked, 0, "the password was asked for without the token");
  const given = await app.inject({
    method: "GET",
    url: "/credentials",
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(given.statusCode, 200);
  assert.equal(given.headers["cache-control"], "no-store");
  assert.deepEqual(JSON.parse(given.body), { password });
  assert.ok(
    lines.some((line) => line.includes('"event":"credentials"')),
    lines.join(""),
  );
  assert.ok(!lines.join("").includes(password), "the password reached the log");

  // Without a provider (a test server, say) there is none to hand out.
  const { app: bare } = build();
  t.after(() => bare.close());
  const none = await bare.inject({
    method: "GET",
    url: "/credentials",
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(none.statusCode, 404);
});

test("recovery-init fetches the password over HTTP and writes it 0600 over a restored one", async (t) => {
  const password = "fresh-from-the-workstation";
  const { app } = build({ password: () => Promise.resolve(password) });
  t.after(() => app.close());
  const address = await app.listen({ host: "127.0.0.1", port: 0 });
  const perm = await scratchDir(t, "recovery-credentials");
  await mkdir(perm, { recursive: true });
  await writeFile(path.join(perm, "gokr-pw.txt"), "old-from-the-backup\n", { mode: 0o644 });

  await assert.rejects(fetchUnitPassword({ baseUrl: address, token: "0".repeat(32) }), /HTTP 403/);
  const fetched = await fetchUnitPassword({ baseUrl: address, token });
  assert.equal(fetched, password);
  await writeUnitPassword(perm, fetched ?? "");
  assert.equal(await readFile(path.join(perm, "gokr-pw.txt"), "utf8"), `${password}\n`);
  assert.equal((await stat(path.join(perm, "gokr-pw.txt"))).mode & 0o777, 0o600);

  // A server that offers none (404): /perm keeps its own.
  const { app: bare } = build();
  t.after(() => bare.close());
  const bareAddress = await bare.listen({ host: "127.0.0.1", port: 0 });
  assert.equal(await fetchUnitPassword({ baseUrl: bareAddress, token }), undefined);
});
