// updates/fleet/serve/unit-credentials.ts: a unit's password is handed out
// once and only hashes are kept; a new enrollment voids the old password;
// the server's own credential is made once, 0600, and kept across restarts;
// the server's names are not a unit's to take.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { isRtr7Error } from "../../lib/errors.js";
import {
  UnitCredentials,
  mosquittoPasswordHash,
  serverUsername,
} from "../../updates/fleet/serve/unit-credentials.js";
import { scratchDir } from "../helpers/scratch.js";

test("enrollment hands out a password once, keeps only hashes, and checks it", async (t) => {
  const dir = await scratchDir(t, "creds");
  const file = path.join(dir, "serve.sqlite");
  const credentials = new UnitCredentials(file, { scryptCost: 1 << 10 });
  const password = await credentials.enrollUnit("shop-7");
  assert.match(password, /^[A-Za-z0-9_-]{24,}$/);
  assert.equal(await credentials.checkUnit("shop-7", password), true);
  assert.equal(await credentials.checkUnit("shop-7", password), true, "again, from memory");
  assert.equal(await credentials.checkUnit("shop-7", password + "x"), false);
  assert.equal(await credentials.checkUnit("shop-8", password), false);
  assert.equal(await credentials.checkUnit("shop-7", ""), false);
  assert.deepEqual(
    credentials.listUnits().map((unit) => unit.hostname),
    ["shop-7"],
  );
  const again = await credentials.enrollUnit("shop-7");
  assert.notEqual(again, password);
  assert.equal(await credentials.checkUnit("shop-7", password), false, "the old password is void");
  assert.equal(await credentials.checkUnit("shop-7", again), true);
  credentials.close();
  const bytes = await readFile(file);
  assert.ok(
    !bytes.includes(Buffer.from(password)) && !bytes.includes(Buffer.from(again)),
    "no password on disk",
  );
  const reopened = new UnitCredentials(file);
  t.after(() => reopened.close());
  assert.equal(
    await reopened.checkUnit("shop-7", again),
    true,
    "the hash's own cost is used, not the default",
  );
  assert.equal(reopened.removeUnit("shop-7"), true);
  assert.equal(await reopened.checkUnit("shop-7", again), false);
  assert.equal(reopened.removeUnit("shop-7"), false);
});

test("the server's names are refused as units, and its credential is made once, 0600", async (t) => {
  const dir = await scratchDir(t, "creds");
  const credentials = new UnitCredentials(path.join(dir, "serve.sqlite"));
  for (const name of [serverUsername, `${serverUsername}-2`])
    await assert.rejects(credentials.enrollUnit(name), (error) => isRtr7Error(error, "RTR7_ERR_USAGE"));
  await assert.rejects(credentials.enrollUnit("a/b"));
  const server = await credentials.serverCredential();
  assert.equal(server.username, serverUsername);
  const file = path.join(dir, "server-credential.json");
  assert.equal((await stat(file)).mode & 0o777, 0o600);
  assert.equal(await credentials.checkServer(serverUsername, server.password), true);
  assert.equal(await credentials.checkServer(serverUsername, server.password + "x"), false);
  credentials.close();
  const reopened = new UnitCredentials(path.join(dir, "serve.sqlite"));
  t.after(() => reopened.close());
  assert.equal((await reopened.serverCredential()).password, server.password);
});

test("mosquitto's $7$ hash is PBKDF2-SHA512 in mosquitto_passwd's layout", () => {
  const hash = mosquittoPasswordHash("secret", 101, Buffer.alloc(12, 1));
  const [, kind, rounds, salt, key] = hash.split("$");
  assert.deepEqual([kind, rounds, salt], ["7", "101", Buffer.alloc(12, 1).toString("base64")]);
  assert.equal(Buffer.from(key ?? "", "base64").length, 64);
});
