// The unit's reports: sent with the bearer token; success and failure are
// checked and retried until the server takes them; a lost progress report
// does not stop the recovery.
import { test, type TestContext } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { httpReporter } from "../../recovery-init/reporter.js";

async function server(t: TestContext, statuses: number[]) {
  const seen: { path: string; authorization?: string; body: string }[] = [];
  const http = createServer((request, response) => {
    let body = "";
    request.on("data", (chunk: Buffer) => (body += chunk.toString()));
    request.on("end", () => {
      seen.push({ path: request.url ?? "", authorization: request.headers.authorization, body });
      response.writeHead(statuses.shift() ?? 200).end("{}");
    });
  });
  await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
  t.after(() => http.close());
  return { seen, baseUrl: `http://127.0.0.1:${(http.address() as { port: number }).port}` };
}

test("success is retried until the server answers 200, with the token each time", async (t) => {
  const { seen, baseUrl } = await server(t, [500, 403, 200]);
  const said: string[] = [];
  await httpReporter({ baseUrl, token: "tok", retryDelayMs: 1, say: (line) => said.push(line) }).success({
    message: "ok",
  });
  assert.equal(seen.length, 3);
  assert.ok(seen.every((request) => request.path === "/success" && request.authorization === "Bearer tok"));
  assert.deepEqual(JSON.parse(seen[2]?.body ?? ""), { message: "ok" });
  assert.match(said[0] ?? "", /report success failed \(attempt 1\/6\): POST \/success: HTTP 500/);
});

test("a failure report the server never takes ends in an error after the attempts", async (t) => {
  const { seen, baseUrl } = await server(t, [500, 500, 500]);
  await assert.rejects(
    httpReporter({ baseUrl, token: "tok", attempts: 3, retryDelayMs: 1, say: () => undefined }).failure({
      step: "write",
      message: "x",
    }),
    /could not report failure/,
  );
  assert.equal(seen.length, 3);
});

test("a lost progress report is said and does not throw", async (t) => {
  const { baseUrl } = await server(t, [503]);
  const said: string[] = [];
  await httpReporter({ baseUrl, token: "tok", say: (line) => said.push(line) }).progress({ step: "disk" });
  assert.match(said[0] ?? "", /progress report lost/);
});
