// Where the update client finds a unit's password: RTR7_PASSWORD, then
// gokrazy's per-host file, then its global file, under an absolute
// XDG_CONFIG_HOME or ~/.config; the trailing newline is not part of it, the
// source never is the password, and without one the error lists every place
// looked at.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { isRtr7Error } from "../../lib/errors.js";
import { updatePassword } from "../../updates/credentials.js";
import { scratchDir } from "../helpers/scratch.js";

async function put(file: string, content: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, content);
}

test("RTR7_PASSWORD comes first, then the host's file, then the global one", async (t) => {
  const home = await scratchDir(t, "credentials");
  const hostFile = path.join(home, ".config/gokrazy/hosts/lab1/http-password.txt");
  const globalFile = path.join(home, ".config/gokrazy/http-password.txt");
  await put(hostFile, "host-secret\n");
  await put(globalFile, "global-secret\n");

  assert.deepEqual(await updatePassword("lab1", { RTR7_PASSWORD: "env-secret" }, home), {
    password: "env-secret",
    source: "RTR7_PASSWORD",
  });
  assert.deepEqual(await updatePassword("lab1", {}, home), { password: "host-secret", source: hostFile });
  assert.deepEqual(await updatePassword("lab1", { RTR7_PASSWORD: "" }, home), {
    password: "host-secret",
    source: hostFile,
  });
  assert.deepEqual(await updatePassword("other", {}, home), {
    password: "global-secret",
    source: globalFile,
  });
});

test("an absolute XDG_CONFIG_HOME is used, a relative one is not; only the final newline is trimmed", async (t) => {
  const home = await scratchDir(t, "credentials");
  const xdg = path.join(home, "xdg");
  await put(path.join(xdg, "gokrazy/hosts/lab1/http-password.txt"), " spaced pass \r\n");
  await put(path.join(home, ".config/gokrazy/hosts/lab1/http-password.txt"), "dotconfig\n");

  const fromXdg = await updatePassword("lab1", { XDG_CONFIG_HOME: xdg }, home);
  assert.deepEqual(fromXdg, {
    password: " spaced pass ",
    source: path.join(xdg, "gokrazy/hosts/lab1/http-password.txt"),
  });
  const relative = await updatePassword("lab1", { XDG_CONFIG_HOME: "xdg" }, home);
  assert.equal(relative.password, "dotconfig");
});

test("an empty file is skipped; none at all names every place looked at", async (t) => {
  const home = await scratchDir(t, "credentials");
  const hostFile = path.join(home, ".config/gokrazy/hosts/lab1/http-password.txt");
  const globalFile = path.join(home, ".config/gokrazy/http-password.txt");
  await put(hostFile, "\n");
  await put(globalFile, "global-secret");
  assert.equal((await updatePassword("lab1", {}, home)).password, "global-secret");

  const empty = await scratchDir(t, "credentials");
  await assert.rejects(updatePassword("lab1", {}, empty), (error: unknown) => {
    assert.ok(isRtr7Error(error, "RTR7_ERR_PASSWORD_MISSING"), String(error));
    assert.match(error.message, /RTR7_PASSWORD \(not set\)/);
    assert.ok(error.message.includes(path.join(empty, ".config/gokrazy/hosts/lab1/http-password.txt")));
    assert.ok(error.message.includes(path.join(empty, ".config/gokrazy/http-password.txt")));
    assert.match(error.hint, /gokr-pw\.txt/);
    return true;
  });
});

test("a recovery gives the unit the workstation's password, else makes one and keeps it 0600, never overwriting", async (t) => {
  const { provisionUnitPassword } = await import("../../updates/credentials.js");
  const { readFile: read, stat } = await import("node:fs/promises");
  const home = await scratchDir(t, "credentials");
  const xdg = path.join(home, "xdg");
  const hostFile = path.join(xdg, "gokrazy/hosts/shop-1/http-password.txt");

  // None anywhere: a new one, written to the host's file before it is handed out.
  const made = await provisionUnitPassword("shop-1", { XDG_CONFIG_HOME: xdg }, home);
  assert.equal(made.created, true);
  assert.equal(made.source, hostFile);
  assert.match(made.password, /^[A-Za-z0-9_-]{24}$/);
  assert.equal(await read(hostFile, "utf8"), `${made.password}\n`);
  assert.equal((await stat(hostFile)).mode & 0o777, 0o600);
  // The next recovery uses it.
  assert.deepEqual(await provisionUnitPassword("shop-1", { XDG_CONFIG_HOME: xdg }, home), {
    password: made.password,
    source: hostFile,
    created: false,
  });
  // The workstation's own wins, found as safe-update finds it; no file is written for it.
  assert.deepEqual(
    await provisionUnitPassword("shop-2", { XDG_CONFIG_HOME: xdg, RTR7_PASSWORD: "env-pw" }, home),
    {
      password: "env-pw",
      source: "RTR7_PASSWORD",
      created: false,
    },
  );
  await put(path.join(xdg, "gokrazy/http-password.txt"), "global-pw\n");
  const global = await provisionUnitPassword("shop-3", { XDG_CONFIG_HOME: xdg }, home);
  assert.deepEqual(global, {
    password: "global-pw",
    source: path.join(xdg, "gokrazy/http-password.txt"),
    created: false,
  });
  // An empty host file is never overwritten.
  const other = path.join(home, "other");
  await put(path.join(other, "gokrazy/hosts/shop-4/http-password.txt"), "");
  await assert.rejects(
    provisionUnitPassword("shop-4", { XDG_CONFIG_HOME: other }, home),
    (error) => isRtr7Error(error, "RTR7_ERR_PASSWORD_MISSING") && /exists but is empty/.test(error.message),
  );
  assert.equal(await read(path.join(other, "gokrazy/hosts/shop-4/http-password.txt"), "utf8"), "");
});
