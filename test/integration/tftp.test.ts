// rtr7's TFTP server against real clients: the server (tftp-server-runner)
// in one network namespace, curl and tftp-hpa's tftp in another, joined by a
// veth pair. Every file is fetched byte-exact with curl at blksize 512 and
// 1468 and with tftp-hpa (no options, 512); names outside the map get error
// 1, writes error 2, and the OACK carries the file's size as tsize. Needs
// root, curl and tftp-hpa.
//
// What the clients print, seen here: curl 7.88 exits 68 (CURLE_TFTP_NOTFOUND)
// for error 1 and 69 (CURLE_TFTP_PERM) for error 2, but its message is a
// stale "getpeername() failed with errno 107", so only the exit code is
// checked. tftp-hpa prints "Error code 1: File not found" and exits 0. curl
// refuses an OACK with tsize 0 (exit 71, tftpd-hpa gets the same), so the
// empty file is fetched with --tftp-no-options.
import { test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { joinWithVeth, namespacesFor, requireRootAndTools, type Netns } from "../helpers/netns.js";
import { scratchDir } from "../helpers/scratch.js";

const runner = fileURLToPath(new URL("./tftp-server-runner.js", import.meta.url));
const probe = fileURLToPath(new URL("./tftp-probe.js", import.meta.url));
const serverAddress = "10.79.0.254";

/** Served name → size. 187904 is a multiple of both 512 and 1468; rollover.bin needs more than 65535 blocks of 512. */
const sizes: Record<string, number> = {
  "pxelinux.0": 42 * 1024 + 3,
  "pxelinux.cfg/default": 300,
  "exact.bin": 187_904 * 2,
  "one.bin": 1,
  "initrd.img": 3 * 1024 * 1024 + 17,
  "rollover.bin": 32 * 1024 * 1024 + 1000,
  "empty.bin": 0,
};
const refusedNames = ["missing.bin", "../etc/passwd", "/etc/passwd", "pxelinux.cfg/01-52-54-00-12-34-56"];

interface Exit {
  code: number;
  output: string;
}

/** Runs a client in the namespace; its exit code and output instead of a rejection. */
async function clientRun(ns: Netns, command: string, args: string[]): Promise<Exit> {
  try {
    const result = await ns.exec(command, args, { timeoutMs: 120_000 });
    return { code: 0, output: result.stdout + result.stderr };
  } catch (error) {
    const cause = (error as { cause?: { code?: unknown; stdout?: string; stderr?: string } }).cause;
    return { code: Number(cause?.code ?? -1), output: `${cause?.stdout ?? ""}${cause?.stderr ?? ""}` };
  }
}

test(
  "curl and tftp-hpa fetch every file byte-exact; other names, writes and tsize",
  { timeout: 600_000 },
  async (t) => {
    if (!(await requireRootAndTools(t, ["curl", "tftp", "ip"]))) return;
    const work = await scratchDir(t, "tftp");
    const served = path.join(work, "served");
    const contents = new Map<string, Buffer>();
    for (const [name, size] of Object.entries(sizes)) {
      const bytes = randomBytes(size);
      contents.set(name, bytes);
      await mkdir(path.dirname(path.join(served, name)), { recursive: true });
      await writeFile(path.join(served, name), bytes);
    }

    const [server, client] = await namespacesFor(t, "tftpsrv", "tftpcli");
    if (!server || !client) throw new Error("no namespaces");
    await joinWithVeth(server, { device: "lan0", cidr: `${serverAddress}/24` }, client, {
      device: "eth0",
      cidr: "10.79.0.9/24",
    });
    const tftpServer = server.start(process.execPath, [runner, "--address", serverAddress, "--dir", served]);
    await tftpServer.waitForLine(/"event":"tftp-listening"/, 15_000);
    const fetched = path.join(work, "fetched");

    await t.test("curl, blksize 512 and 1468", async () => {
      for (const [name, bytes] of contents) {
        for (const blockSize of ["512", "1468"]) {
          await rm(fetched, { force: true });
          const options = bytes.length === 0 ? ["--tftp-no-options"] : ["--tftp-blksize", blockSize];
          const url = `tftp://${serverAddress}/${name}`;
          const result = await clientRun(client, "curl", ["-sS", ...options, "-o", fetched, url]);
          assert.equal(result.code, 0, `${name} at ${blockSize}: ${result.output}`);
          const got = await readFile(fetched).catch(() => Buffer.alloc(0));
          assert.ok(
            got.equals(bytes),
            `${name} at blksize ${blockSize}: ${got.length} bytes, want ${bytes.length}`,
          );
        }
      }
    });

    await t.test("tftp-hpa (no options: 512-byte blocks)", async () => {
      for (const [name, bytes] of contents) {
        await rm(fetched, { force: true });
        const result = await clientRun(client, "tftp", [
          serverAddress,
          "-m",
          "binary",
          "-c",
          "get",
          name,
          fetched,
        ]);
        assert.doesNotMatch(result.output, /error/i, name);
        assert.ok((await readFile(fetched)).equals(bytes), name);
      }
    });

    await t.test("names not in the map get error 1 from both clients", async () => {
      for (const name of refusedNames) {
        const url = `tftp://${serverAddress}/${name}`;
        const curl = await clientRun(client, "curl", ["-sS", "--path-as-is", "-o", fetched, url]);
        assert.equal(curl.code, 68, `curl ${name}: ${curl.output}`);
        const hpa = await clientRun(client, "tftp", [
          serverAddress,
          "-m",
          "binary",
          "-c",
          "get",
          name,
          fetched,
        ]);
        assert.match(hpa.output, /Error code 1: File not found/, `tftp ${name}`);
      }
      const log = tftpServer.output();
      for (const name of refusedNames) assert.ok(log.includes(`"file":${JSON.stringify(name)}`), name);
    });

    await t.test("a write gets error 2, Access violation", async () => {
      const upload = path.join(work, "upload.bin");
      await writeFile(upload, randomBytes(1000));
      const curl = await clientRun(client, "curl", [
        "-sS",
        "-T",
        upload,
        `tftp://${serverAddress}/upload.bin`,
      ]);
      assert.equal(curl.code, 69, curl.output);
      const hpa = await clientRun(client, "tftp", [
        serverAddress,
        "-m",
        "binary",
        "-c",
        "put",
        upload,
        "upload.bin",
      ]);
      assert.match(hpa.output, /Error code 2: Access violation/);
    });

    await t.test("the OACK answers tsize with the file's size", async () => {
      for (const name of ["exact.bin", "rollover.bin", "pxelinux.cfg/default"]) {
        const result = await client.exec(process.execPath, [
          probe,
          serverAddress,
          "69",
          name,
          "tsize",
          "0",
          "blksize",
          "1468",
        ]);
        const answer = JSON.parse(result.stdout) as { opcode: number; options: Record<string, string> };
        assert.deepEqual(
          answer,
          { opcode: 6, options: { tsize: String(sizes[name]), blksize: "1468" } },
          name,
        );
      }
      const missing = await client.exec(process.execPath, [
        probe,
        serverAddress,
        "69",
        "missing.bin",
        "tsize",
        "0",
      ]);
      assert.deepEqual(JSON.parse(missing.stdout), { opcode: 5, code: 1, message: "File not found" });
    });

    assert.equal(tftpServer.child.exitCode, null, `the server died:\n${tftpServer.output().slice(-3000)}`);
    assert.doesNotMatch(tftpServer.output(), /uncaught|unhandled|TypeError|RangeError/i);
    const sent = tftpServer.output().match(/"event":"tftp-sent"/g) ?? [];
    assert.equal(sent.length, contents.size * 3);
  },
);
