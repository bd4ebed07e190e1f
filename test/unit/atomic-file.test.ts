// lib/atomic-file.ts: the new content or the old, exact modes, and a
// temporary file that cannot be hijacked by a link planted beside the target.
import { test } from "node:test";
import assert from "node:assert/strict";
import { lstat, readdir, readFile, stat, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { writeFileAtomically } from "../../lib/atomic-file.js";
import { scratchDir } from "../helpers/scratch.js";

test("the target gets the new content with exactly the mode asked for, and no temporary is left", async (t) => {
  const dir = await scratchDir(t, "atomic");
  const file = path.join(dir, "gokr-pw.txt");
  await writeFile(file, "old");
  await writeFileAtomically(file, "new", { mode: 0o600 });
  assert.equal(await readFile(file, "utf8"), "new");
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  assert.deepEqual(await readdir(dir), ["gokr-pw.txt"]);
});

test("a symlink planted at the PID-named temporary is not followed: the file it points at is untouched", async (t) => {
  const dir = await scratchDir(t, "atomic");
  const outside = path.join(dir, "outside.txt");
  await writeFile(outside, "precious");
  const file = path.join(dir, "slots.json");
  const predictable = `${file}.${process.pid}.tmp`;
  await symlink(outside, predictable);
  await writeFileAtomically(file, '{"active":"a"}');
  assert.equal(await readFile(outside, "utf8"), "precious");
  assert.equal(await readFile(file, "utf8"), '{"active":"a"}');
  // The planted link is someone else's: left where it was, still a link.
  assert.ok((await lstat(predictable)).isSymbolicLink());
});

test("two writers at once each leave a whole file, never a mix", async (t) => {
  const dir = await scratchDir(t, "atomic");
  const file = path.join(dir, "state.json");
  const contents = Array.from({ length: 20 }, (_, index) => JSON.stringify({ writer: index }).repeat(1000));
  await Promise.all(contents.map((content) => writeFileAtomically(file, content)));
  assert.ok(contents.includes(await readFile(file, "utf8")));
  assert.deepEqual(await readdir(dir), ["state.json"]);
});
