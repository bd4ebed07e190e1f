// The newc cpio writer, read back by GNU cpio (the format the kernel unpacks).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, readFile, readlink, stat, writeFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { cpioArchive, type CpioEntry } from "../../updates/image/initramfs/cpio.js";

async function archive(entries: CpioEntry[]): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of cpioArchive(entries)) chunks.push(chunk);
  return Buffer.concat(chunks);
}

test("GNU cpio extracts what the writer wrote: directories, files with modes, symlinks", async (t) => {
  if (spawnSync("cpio", ["--version"]).status !== 0) return t.skip("needs GNU cpio: run scripts/setup.sh");
  const work = await mkdtemp(path.join(tmpdir(), "rtr7-cpio-"));
  t.after(() => rm(work, { recursive: true, force: true }));
  const source = path.join(work, "source.bin");
  const big = Buffer.alloc(3 * 1024 * 1024 + 3, 0xab);
  await writeFile(source, big);
  const bytes = await archive([
    { kind: "directory", path: "bin" },
    { kind: "file", path: "bin/tool", mode: 0o755, data: Buffer.from("#!/bin/sh\necho hi\n") },
    { kind: "file", path: "big.bin", source },
    { kind: "file", path: "empty", data: Buffer.alloc(0) },
    { kind: "symlink", path: "bin/sh", target: "tool" },
  ]);
  assert.equal(bytes.length % 4, 0);
  const out = path.join(work, "out");
  const extracted = spawnSync("sh", ["-c", `mkdir -p "${out}" && cd "${out}" && cpio -idm --quiet`], {
    input: bytes,
  });
  assert.equal(extracted.status, 0, extracted.stderr.toString());
  assert.equal(await readFile(path.join(out, "bin/tool"), "utf8"), "#!/bin/sh\necho hi\n");
  assert.equal((await stat(path.join(out, "bin/tool"))).mode & 0o777, 0o755);
  assert.ok((await readFile(path.join(out, "big.bin"))).equals(big));
  assert.equal((await readFile(path.join(out, "empty"))).length, 0);
  assert.equal(await readlink(path.join(out, "bin/sh")), "tool");
});

test("the same entries give the same bytes", async () => {
  const entries: CpioEntry[] = [
    { kind: "directory", path: "etc" },
    { kind: "file", path: "etc/x", data: Buffer.from("x") },
  ];
  assert.ok((await archive(entries)).equals(await archive(entries)));
});

test("entry paths that could escape the archive root are refused", async () => {
  for (const bad of ["../x", "a/../../x", "", "/", "a//b"]) {
    await assert.rejects(
      archive([{ kind: "file", path: bad, data: Buffer.from("x") }]),
      /bad entry path/,
      bad,
    );
  }
});
