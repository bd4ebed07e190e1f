// Malformed HTTP/1.1 requests for fuzzing a server over raw TCP: random and
// mutated methods, paths, headers, bodies, and broken framing (truncated
// heads, bare LFs, lying or doubled Content-Length, bad chunked encoding,
// pipelined junk, oversized lines). Deterministic for a seed, so a failure
// replays. None carries valid credentials: the server must answer each
// with an error (or close), write nothing, and keep serving.
import net from "node:net";

export function seededRandom(seed: number): () => number {
  let state = seed >>> 0 || 1;
  return () => {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    return state / 2 ** 32;
  };
}

export function malformedRequest(random: () => number, host: string): Buffer {
  const below = (n: number): number => Math.floor(random() * n);
  const pick = <T>(items: readonly T[]): T => items[below(items.length)] as T;
  const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => below(256)));
  const ascii = (n: number): string =>
    Array.from({ length: n }, () => String.fromCharCode(32 + below(95))).join("");

  if (below(10) === 0) return bytes(1 + below(2048));
  const method = pick([
    "GET",
    "PUT",
    "POST",
    "DELETE",
    "PATCH",
    "OPTIONS",
    "HEAD",
    "TRACE",
    "CONNECT",
    "PUT\x00",
    "G\tET",
    ascii(1 + below(20)),
  ]);
  const path = pick([
    "/update/root",
    "/update/boot",
    "/update/mbr",
    "/update/bootonly",
    "/update/switch",
    "/update/testboot",
    "/update/commit",
    "/update/features",
    "/reboot",
    "/",
    "/../../etc/passwd",
    "/update/root/../../perm/gokr-pw.txt",
    "/update/%2e%2e/%00",
    "//update//root",
    "*",
    "/" + "a".repeat(below(9000)),
    "/" + ascii(below(200)),
    "/reboot?kexec=" + "9".repeat(below(5000)),
  ]);
  const version = pick(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1 extra", "", "HTTP/9"]);
  const headers: string[] = [];
  if (below(5) !== 0) headers.push(`Host: ${pick([host, "", "evil.example", "[::1", ascii(30)])}`);
  const auth = pick([
    undefined,
    "Basic " + Buffer.from(`gokrazy:${ascii(below(40))}`).toString("base64"),
    "Basic " + ascii(below(100)),
    "Basic ",
    "Bearer x",
    "Basic " + Buffer.from(`gokrazy${ascii(5)}`).toString("base64"),
    "Basic " + "A".repeat(below(20_000)),
  ]);
  if (auth !== undefined) headers.push(`Authorization: ${auth}`);
  const bodyLength = below(4) === 0 ? 0 : below(70_000);
  const body = bytes(Math.min(bodyLength, 4096));
  const framing = below(9);
  if (framing === 0) headers.push(`Content-Length: ${bodyLength}`);
  else if (framing === 1)
    headers.push(
      `Content-Length: ${pick(["-1", "1e9", "0x10", "18446744073709551616", "9007199254740993", ascii(8)])}`,
    );
  else if (framing === 2) headers.push(`Content-Length: ${bodyLength}`, `Content-Length: ${bodyLength + 1}`);
  else if (framing === 3) headers.push("Transfer-Encoding: chunked");
  else if (framing === 4) headers.push("Transfer-Encoding: chunked", `Content-Length: ${bodyLength}`);
  else if (framing === 5)
    headers.push(`Transfer-Encoding: ${pick(["gzip", "chunked, identity", "xchunked", ascii(10)])}`);
  else if (framing === 6) headers.push("Expect: 100-continue", `Content-Length: ${bodyLength}`);
  if (below(3) === 0)
    headers.push(`X-Gokrazy-Update-Hash: ${pick(["crc32", "md5", "", ascii(50), "CRC32"])}`);
  if (below(3) === 0)
    headers.push(
      `Content-Type: ${pick(["application/x-www-form-urlencoded", "multipart/form-data; boundary=", "text/plain", ascii(40)])}`,
    );
  if (below(4) === 0) headers.push(`Origin: ${pick(["http://evil.example", "null", ascii(20)])}`);
  for (let index = below(4); index > 0; index -= 1)
    headers.push(
      pick([
        `${ascii(10)}: ${ascii(below(200))}`,
        `X-Long: ${"x".repeat(below(40_000))}`,
        ascii(30),
        ": empty name",
        "Bad Name: v",
        "X-Nul: a\x00b",
      ]),
    );
  const eol = pick(["\r\n", "\r\n", "\r\n", "\n", "\r"]);
  let head = `${method} ${path} ${version}${eol}${headers.join(eol)}${eol}${eol}`;
  let payload: Buffer = body;
  if (framing === 3 || framing === 4)
    payload = Buffer.from(
      pick([
        `${(body.length + 5).toString(16)}\r\n`,
        "zz\r\n",
        "-1\r\n",
        "ffffffffffffffff\r\n",
        "5;ext=" + ascii(500) + "\r\n",
      ]) +
        body.toString("latin1") +
        pick(["\r\n0\r\n\r\n", "", "\r\n", "0\r\n"]),
      "latin1",
    );
  if (below(6) === 0) head = head.slice(0, below(head.length));
  const whole = Buffer.concat([Buffer.from(head, "latin1"), payload]);
  // Pipelined junk after a request, now and then.
  return below(8) === 0 ? Buffer.concat([whole, bytes(below(300))]) : whole;
}

/** Sends `count` requests, `parallel` connections at a time; each is closed after 2 s at most. */
export async function fuzzHttp(
  port: number,
  host: string,
  count: number,
  seed: number,
  parallel = 32,
): Promise<{ answered: number; statuses: Map<string, number> }> {
  const random = seededRandom(seed);
  const statuses = new Map<string, number>();
  let answered = 0;
  let sent = 0;
  const one = (request: Buffer): Promise<void> =>
    new Promise((resolve) => {
      const socket = net.connect({ port, host });
      let head = "";
      const finish = (): void => {
        clearTimeout(timer);
        socket.destroy();
        resolve();
      };
      const timer = setTimeout(finish, 2000);
      socket.on("error", finish);
      socket.on("close", finish);
      socket.on("data", (chunk: Buffer) => {
        if (head === "") {
          head = chunk.subarray(0, 12).toString("latin1");
          answered += 1;
          const status = /^HTTP\/1\.[01] (\d{3})/.exec(head)?.[1] ?? "other";
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
        }
      });
      socket.on("connect", () => {
        socket.write(request);
        // Half the time the client also stops sending: a truncated request.
        if (random() < 0.5) socket.end();
      });
    });
  const worker = async (): Promise<void> => {
    while (sent < count) {
      sent += 1;
      await one(malformedRequest(random, `${host}:${port}`));
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return { answered, statuses };
}
