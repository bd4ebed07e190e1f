// The recovery server's HTTP side through fastify's inject(): images with
// HEAD and Range, the manifest, 404 for anything else (the backup only when
// one was given), the token check on the unit's reports, errors in rtr7's
// one shape with the catalogue's status, and a success report with no body
// or a body of any Content-Type, as router7's recovery-init sends it (also
// with real curl against a listening server).
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { buildRecoveryHttp, type RecoveryHttpOptions } from "../../server/http/recovery-http.js";
import { FileMap, fileFromBuffer } from "../../lib/served-files.js";
import { errorCatalogue, type ErrorCode } from "../../lib/errors.js";
import { silentLogger } from "../../lib/log.js";
import type { FailureReport, ProgressReport, SuccessReport } from "../../lib/wire/report.js";

const root = randomBytes(300_000);
const token = "0123456789abcdef0123456789abcdef";

/** Asserts an error reply: the catalogue's status for `code`, exact JSON type, {code, message, hint}. */
function assertErrorReply(
  response: { statusCode: number; headers: Record<string, unknown>; body: string },
  code: ErrorCode,
  what: string,
): { code: string; message: string; hint: string } {
  assert.equal(response.statusCode, errorCatalogue[code].status, `${what}: ${response.body}`);
  assert.equal(response.headers["content-type"], "application/json", what);
  const body = JSON.parse(response.body) as { code: string; message: string; hint: string };
  assert.deepEqual(Object.keys(body).sort(), ["code", "hint", "message"], what);
  assert.equal(body.code, code, what);
  assert.ok(body.message.length > 0 && body.hint.length > 0, what);
  return body;
}

function build(overrides: Partial<RecoveryHttpOptions> = {}) {
  const files = new FileMap([
    fileFromBuffer("mbr.img", randomBytes(446)),
    fileFromBuffer("boot.img", randomBytes(4096)),
    fileFromBuffer("root.img", root),
  ]);
  const http = buildRecoveryHttp({
    files,
    manifest: { images: [{ name: "root.img", size: root.length, sha256: "0".repeat(64) }] },
    token,
    log: silentLogger(),
    ...overrides,
  });
  return http;
}

test("GET serves an image whole with its length; HEAD gives the headers without a body", async (t) => {
  const { app } = build();
  t.after(() => app.close());
  const whole = await app.inject({ method: "GET", url: "/root.img" });
  assert.equal(whole.statusCode, 200);
  assert.equal(whole.headers["content-length"], String(root.length));
  assert.equal(whole.headers["accept-ranges"], "bytes");
  assert.ok(whole.rawPayload.equals(root));
  const head = await app.inject({ method: "HEAD", url: "/root.img" });
  assert.equal(head.statusCode, 200);
  assert.equal(head.headers["content-length"], String(root.length));
  assert.equal(head.rawPayload.length, 0);
});

test("Range requests get 206 with the exact bytes, or 416 when unsatisfiable", async (t) => {
  const { app } = build();
  t.after(() => app.close());
  const middle = await app.inject({ method: "GET", url: "/root.img", headers: { range: "bytes=1000-1999" } });
  assert.equal(middle.statusCode, 206);
  assert.equal(middle.headers["content-range"], `bytes 1000-1999/${root.length}`);
  assert.equal(middle.headers["content-length"], "1000");
  assert.ok(middle.rawPayload.equals(root.subarray(1000, 2000)));
  const tail = await app.inject({ method: "GET", url: "/root.img", headers: { range: "bytes=-10" } });
  assert.ok(tail.rawPayload.equals(root.subarray(root.length - 10)));
  const open = await app.inject({ method: "GET", url: "/root.img", headers: { range: "bytes=299990-" } });
  assert.ok(open.rawPayload.equals(root.subarray(299_990)));
  const beyond = await app.inject({
    method: "GET",
    url: "/root.img",
    headers: { range: "bytes=400000-500000" },
  });
  assert.equal(beyond.statusCode, 416);
  assert.equal(beyond.headers["content-range"], `bytes */${root.length}`);
  const malformed = await app.inject({ method: "GET", url: "/root.img", headers: { range: "pages=1-2" } });
  assert.equal(malformed.statusCode, 200, "a malformed Range is ignored");
  assert.equal(malformed.rawPayload.length, root.length);
});

test("anything but the images and the manifest is 404; the backup only exists when given", async (t) => {
  const { app } = build();
  t.after(() => app.close());
  for (const url of [
    "/backup.tar.gz",
    "/etc/passwd",
    "/root.img/",
    "/ROOT.IMG",
    "/images/../../root.img.bak",
    "/pxelinux.0",
  ]) {
    const response = await app.inject({ method: "GET", url });
    assert.equal(response.statusCode, 404, url);
    assertErrorReply(response, "RTR7_ERR_HTTP_NOT_FOUND", url);
  }
  const withBackup = buildRecoveryHttp({
    files: new FileMap([fileFromBuffer("backup.tar.gz", Buffer.from("x"))]),
    manifest: { images: [] },
    token,
    log: silentLogger(),
  });
  t.after(() => withBackup.app.close());
  assert.equal((await withBackup.app.inject({ method: "GET", url: "/backup.tar.gz" })).statusCode, 200);
});

test("the manifest lists each image's name, size and sha256", async (t) => {
  const { app } = build();
  t.after(() => app.close());
  const response = await app.inject({ method: "GET", url: "/manifest.json" });
  assert.equal(response.statusCode, 200);
  assert.deepEqual(response.json(), {
    images: [{ name: "root.img", size: root.length, sha256: "0".repeat(64) }],
  });
});

test("reports need the session token: 403 without it or with a wrong one, and nothing happens", async (t) => {
  const seen: string[] = [];
  const { app } = build({
    onProgress: () => seen.push("progress"),
    onSuccess: () => seen.push("success"),
    onFailure: () => seen.push("failure"),
  });
  t.after(() => app.close());
  for (const url of ["/progress", "/success", "/failure"]) {
    for (const authorization of [
      undefined,
      "Bearer wrong",
      `Basic ${token}`,
      `Bearer ${token}x`,
      `bearer ${token}`,
    ]) {
      const response = await app.inject({
        method: "POST",
        url,
        headers: authorization ? { authorization } : {},
        payload: { step: "write", message: "x" },
      });
      assert.equal(response.statusCode, 403, `${url} with ${authorization}`);
      const body = assertErrorReply(response, "RTR7_ERR_REPORT_TOKEN", `${url} with ${authorization}`);
      assert.ok(!body.message.includes(token), "the token is in the reply");
    }
  }
  assert.deepEqual(seen, []);
});

test("progress, success and failure reports with the token reach their handlers", async (t) => {
  const progress: ProgressReport[] = [];
  const success: SuccessReport[] = [];
  const failure: FailureReport[] = [];
  const { app } = build({
    onProgress: (report) => progress.push(report),
    onSuccess: (report) => success.push(report),
    onFailure: (report) => failure.push(report),
  });
  t.after(() => app.close());
  const authorization = `Bearer ${token}`;
  const report = { step: "write", image: "root.img", bytesDone: 10, bytesTotal: 20 };
  const sent = await app.inject({
    method: "POST",
    url: "/progress",
    headers: { authorization },
    payload: report,
  });
  assert.equal(sent.statusCode, 200);
  assert.deepEqual(progress, [report]);
  // busybox wget labels its body as a form; it is parsed as JSON all the same.
  const wgetStyle = await app.inject({
    method: "POST",
    url: "/success",
    headers: { authorization, "content-type": "application/x-www-form-urlencoded" },
    payload: JSON.stringify({ message: "done" }),
  });
  assert.equal(wgetStyle.statusCode, 200);
  assert.deepEqual(success, [{ message: "done" }]);
  const failed = await app.inject({
    method: "POST",
    url: "/failure",
    headers: { authorization },
    payload: { step: "write", message: "root.img: sha256 mismatch" },
  });
  assert.equal(failed.statusCode, 200);
  assert.deepEqual(failure, [{ step: "write", message: "root.img: sha256 mismatch" }]);
});

test("malformed reports get 400 and reach no handler", async (t) => {
  const seen: unknown[] = [];
  const { app } = build({
    onProgress: (report) => seen.push(report),
    onFailure: (report) => seen.push(report),
  });
  t.after(() => app.close());
  const authorization = `Bearer ${token}`;
  const bad = [
    { url: "/progress", payload: "{not json", headers: { "content-type": "application/json" } },
    {
      url: "/progress",
      payload: JSON.stringify({ message: "no step" }),
      headers: { "content-type": "application/json" },
    },
    {
      url: "/progress",
      payload: JSON.stringify({ step: "x", bytesDone: -1 }),
      headers: { "content-type": "application/json" },
    },
    {
      url: "/failure",
      payload: JSON.stringify({ step: "x" }),
      headers: { "content-type": "application/json" },
    },
    { url: "/progress", payload: "x".repeat(100_000), headers: { "content-type": "text/plain" } },
  ];
  for (const request of bad) {
    const response = await app.inject({
      method: "POST",
      url: request.url,
      payload: request.payload,
      headers: { ...request.headers, authorization },
    });
    const what = `${request.url} ${request.payload.slice(0, 30)}`;
    assert.ok([400, 413].includes(response.statusCode), `${what}: ${response.statusCode}`);
    assertErrorReply(
      response,
      response.statusCode === 413 ? "RTR7_ERR_HTTP_TOO_LARGE" : "RTR7_ERR_HTTP_REQUEST",
      what,
    );
  }
  assert.deepEqual(seen, []);
});

test("disk files are sent whole and by range, byte-exact, through the buffer ring", async (t) => {
  const { mkdtemp, writeFile, rm } = await import("node:fs/promises");
  const { tmpdir } = await import("node:os");
  const { fileFromDisk } = await import("../../lib/served-files.js");
  const dir = await mkdtemp(`${tmpdir()}/rtr7-http-`);
  t.after(() => rm(dir, { recursive: true, force: true }));
  // Larger than the ring (4 × 1 MiB) and not a multiple of its buffers.
  const big = randomBytes(5 * 1024 * 1024 + 12_345);
  await writeFile(`${dir}/root.img`, big);
  const { app } = buildRecoveryHttp({
    files: new FileMap([await fileFromDisk("root.img", `${dir}/root.img`)]),
    manifest: { images: [] },
    token,
    log: silentLogger(),
  });
  await app.listen({ host: "127.0.0.1", port: 0 });
  t.after(() => app.close());
  const address = app.server.address() as { port: number };
  const url = `http://127.0.0.1:${address.port}/root.img`;
  const whole = await fetch(url);
  assert.equal(whole.headers.get("content-length"), String(big.length));
  assert.ok(Buffer.from(await whole.arrayBuffer()).equals(big));
  const range = await fetch(url, { headers: { range: "bytes=262000-3000000" } });
  assert.equal(range.status, 206);
  assert.ok(Buffer.from(await range.arrayBuffer()).equals(big.subarray(262_000, 3_000_001)));
  // A client that goes away mid-transfer does not disturb the next one.
  const controller = new AbortController();
  const aborted = await fetch(url, { signal: controller.signal });
  const reader = aborted.body?.getReader();
  await reader?.read();
  controller.abort();
  const again = await fetch(url);
  assert.ok(Buffer.from(await again.arrayBuffer()).equals(big));
});

test("a success report may have no body, and a body of any Content-Type (router7 posts an empty one)", async (t) => {
  const success: unknown[] = [];
  const progress: unknown[] = [];
  const { app } = build({
    onSuccess: (report) => success.push(report),
    onProgress: (report) => progress.push(report),
  });
  t.after(() => app.close());
  const authorization = `Bearer ${token}`;
  const cases: { name: string; headers: Record<string, string>; payload?: string; want: unknown }[] = [
    // Go's http.Post(url, "", nil): no body, Content-Length 0, an empty Content-Type.
    { name: "router7's empty POST", headers: { "content-type": "", "content-length": "0" }, want: {} },
    { name: "no body, no Content-Type", headers: {}, want: {} },
    { name: "empty JSON", headers: { "content-type": "application/json" }, payload: "", want: {} },
    { name: "empty text", headers: { "content-type": "text/plain" }, payload: "", want: {} },
    {
      name: "octet-stream",
      headers: { "content-type": "application/octet-stream" },
      payload: '{"message":"bytes"}',
      want: { message: "bytes" },
    },
    {
      name: "JSON with a charset",
      headers: { "content-type": "application/json; charset=utf-8" },
      payload: '{"message":"utf8"}',
      want: { message: "utf8" },
    },
    { name: "text", headers: { "content-type": "text/plain" }, payload: "{}", want: {} },
  ];
  for (const { name, headers, payload, want } of cases) {
    success.length = 0;
    const response = await app.inject({
      method: "POST",
      url: "/success",
      headers: { ...headers, authorization },
      ...(payload === undefined ? {} : { payload }),
    });
    assert.equal(response.statusCode, 200, `${name}: ${response.body}`);
    assert.deepEqual(success, [want], name);
  }
  // A report whose fields are required still wants them.
  const empty = await app.inject({ method: "POST", url: "/progress", headers: { authorization } });
  assertErrorReply(empty, "RTR7_ERR_HTTP_REQUEST", "an empty progress report");
  assert.deepEqual(progress, []);
  // Not JSON at all, whatever the type says.
  const garbage = await app.inject({
    method: "POST",
    url: "/success",
    headers: { authorization, "content-type": "application/octet-stream" },
    payload: "\u0000\u0001",
  });
  assertErrorReply(garbage, "RTR7_ERR_HTTP_REQUEST", "a body that is not JSON");
});

test("curl's empty POST /success reaches the handler over real HTTP", async (t) => {
  const { execFile } = await import("node:child_process");
  const { promisify } = await import("node:util");
  const { haveTool } = await import("../../lab/processes.js");
  if (!(await haveTool("curl"))) {
    t.skip("needs curl: run scripts/setup.sh");
    return;
  }
  const success: unknown[] = [];
  const { app } = build({ onSuccess: (report) => success.push(report) });
  await app.listen({ host: "127.0.0.1", port: 0 });
  t.after(() => app.close());
  const { port } = app.server.address() as { port: number };
  const curl = async (args: string[]): Promise<string> =>
    (
      await promisify(execFile)("curl", [
        "-sS",
        "--max-time",
        "20",
        "-w",
        "%{http_code}",
        "-o",
        "/dev/null",
        ...args,
      ])
    ).stdout;
  const url = `http://127.0.0.1:${port}/success`;
  assert.equal(
    await curl(["-X", "POST", "-H", `Authorization: Bearer ${token}`, "--data-binary", "", url]),
    "200",
  );
  assert.equal(
    await curl(["-X", "POST", "-H", `Authorization: Bearer ${token}`, "-H", "Content-Type:", url]),
    "200",
  );
  assert.equal(await curl(["-X", "POST", "--data-binary", "", url]), "403");
  // The success callback runs once the reply has gone out.
  for (let attempt = 0; attempt < 50 && success.length < 2; attempt++)
    await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(success, [{}, {}]);
});
