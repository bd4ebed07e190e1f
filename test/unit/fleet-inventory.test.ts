// `rtr7 fleet add` and `rtr7 fleet rm` as a user runs them, against a
// temporary XDG_CONFIG_HOME: the inventory stays valid JSON after every edit,
// add replaces a unit's entry, rm removes it (and refuses an unknown unit
// with a meaningful exit code), and a malformed inventory is RTR7_ERR_INVENTORY
// without being overwritten.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readFile, writeFile, mkdir } from "node:fs/promises";
import path from "node:path";
import { cliEntry } from "../helpers/paths.js";
import { scratchDir } from "../helpers/scratch.js";
import { isRtr7Error } from "../../lib/errors.js";
import {
  addInventoryUnit,
  inventoryFile,
  readInventory,
  removeInventoryUnit,
} from "../../updates/fleet/inventory.js";

function rtr7(configHome: string, ...args: string[]) {
  const result = spawnSync(process.execPath, [cliEntry, ...args], {
    encoding: "utf8",
    timeout: 30_000,
    env: { ...process.env, XDG_CONFIG_HOME: configHome, XDG_DATA_HOME: path.join(configHome, "data") },
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

test("fleet add writes the inventory, replaces an entry, and fleet rm removes it", async (t) => {
  const home = await scratchDir(t, "fleet-inventory");
  const file = inventoryFile({ XDG_CONFIG_HOME: home });

  const added = rtr7(
    home,
    "fleet",
    "add",
    "shop-2",
    "--address",
    "10.2.0.1",
    "--mac",
    "00:0D:B9:AA:BB:CC",
    "--rebootor",
    "1234560",
    "--serial",
    "/dev/ttyUSB0",
    "--disk",
    "sda",
  );
  assert.equal(added.code, 0, added.stderr);
  assert.equal(rtr7(home, "fleet", "add", "shop-1", "--address", "10.1.0.1").code, 0);
  assert.deepEqual(JSON.parse(await readFile(file, "utf8")), {
    units: [
      { hostname: "shop-1", address: "10.1.0.1" },
      {
        hostname: "shop-2",
        address: "10.2.0.1",
        mac: "00:0d:b9:aa:bb:cc",
        rebootor: "1234560",
        serial: "/dev/ttyUSB0",
        disk: "sda",
      },
    ],
  });

  const replaced = rtr7(home, "fleet", "add", "shop-2", "--address", "10.2.0.7", "--json");
  assert.equal(replaced.code, 0, replaced.stdout);
  const event = JSON.parse(replaced.stdout.trim()) as { event: string; action: string };
  assert.deepEqual([event.event, event.action], ["inventory", "replaced"]);
  assert.deepEqual(await readInventory(file), [
    { hostname: "shop-1", address: "10.1.0.1" },
    { hostname: "shop-2", address: "10.2.0.7" },
  ]);

  assert.equal(rtr7(home, "fleet", "rm", "shop-1").code, 0);
  assert.deepEqual(JSON.parse(await readFile(file, "utf8")), {
    units: [{ hostname: "shop-2", address: "10.2.0.7" }],
  });

  const unknown = rtr7(home, "fleet", "rm", "shop-9", "--json");
  assert.equal(unknown.code, 1);
  assert.equal((JSON.parse(unknown.stdout.trim()) as { code: string }).code, "RTR7_ERR_INVENTORY");
  assert.deepEqual(await readInventory(file), [{ hostname: "shop-2", address: "10.2.0.7" }]);
});

test("fleet add checks its arguments before touching the inventory", async (t) => {
  const home = await scratchDir(t, "fleet-inventory");
  for (const args of [
    ["shop_1", "--address", "10.1.0.1"],
    ["shop-1"],
    ["shop-1", "--address", "10.1.0.1", "--mac", "not-a-mac"],
  ]) {
    const result = rtr7(home, "fleet", "add", ...args, "--json");
    assert.equal(result.code, 2, `${args.join(" ")}: ${result.stdout}${result.stderr}`);
    assert.equal((JSON.parse(result.stdout.trim()) as { code: string }).code, "RTR7_ERR_USAGE");
  }
  assert.deepEqual(await readInventory(inventoryFile({ XDG_CONFIG_HOME: home })), []);
});

test("a malformed inventory is RTR7_ERR_INVENTORY and is left as it was", async (t) => {
  const home = await scratchDir(t, "fleet-inventory");
  const file = inventoryFile({ XDG_CONFIG_HOME: home });
  await mkdir(path.dirname(file), { recursive: true });
  // Each command once, through the CLI...
  await writeFile(file, "{not json");
  for (const args of [
    ["add", "shop-1", "--address", "10.1.0.1"],
    ["rm", "a"],
    ["ls", "--no-browse"],
  ]) {
    const result = rtr7(home, "fleet", ...args, "--json");
    assert.equal(result.code, 1, `${args.join(" ")}: ${result.stdout}${result.stderr}`);
    const error = JSON.parse(result.stdout.trim().split("\n").at(-1) ?? "") as { code: string; msg: string };
    assert.equal(error.code, "RTR7_ERR_INVENTORY");
    assert.ok(error.msg.includes(file), error.msg);
  }
  assert.equal(await readFile(file, "utf8"), "{not json");
  // ...and the other ways to be malformed through the library the commands share.
  for (const content of [
    '{"hosts": []}',
    '{"units": [{"hostname": "a"}, {"hostname": "a"}]}',
    '{"units": [{"hostname": "a", "password": "x"}]}',
    '{"units": [{"hostname": "bad name"}]}',
    '{"units": [{"hostname": "a", "address": 7}]}',
  ]) {
    await writeFile(file, content);
    await assert.rejects(addInventoryUnit(file, { hostname: "b", address: "10.0.0.2" }), (error) =>
      isRtr7Error(error, "RTR7_ERR_INVENTORY"),
    );
    await assert.rejects(removeInventoryUnit(file, "a"), (error) => isRtr7Error(error, "RTR7_ERR_INVENTORY"));
    assert.equal(await readFile(file, "utf8"), content);
  }
});
