// The unit's PID 1 helpers that need no unit: which modules are still to be
// loaded after the boot initrd (names as /proc/modules spells them), and
// the slot and trial deadline read from the kernel command line.
import { test } from "node:test";
import assert from "node:assert/strict";
import { moduleName, modulesToLoad, parseUnitCmdline } from "../../router/init.js";

test("modules the boot initrd loaded are skipped; names follow the kernel's spelling", () => {
  assert.equal(moduleName("/lib/modules/6.1.0/kernel/drivers/net/virtio_net.ko"), "virtio_net");
  assert.equal(moduleName("/lib/modules/6.1.0/kernel/fs/nls/nls_cp437.ko.xz"), "nls_cp437");
  assert.equal(moduleName("/lib/modules/6.1.0/kernel/crypto/crc32c-generic.ko"), "crc32c_generic");
  const list = [
    "/lib/modules/6.1.0/kernel/drivers/virtio/virtio.ko",
    "/lib/modules/6.1.0/kernel/crypto/crc32c-generic.ko",
    "",
    "/lib/modules/6.1.0/kernel/drivers/net/e1000/e1000.ko",
  ].join("\n");
  const procModules = [
    "virtio 16384 5 virtio_net,virtio_blk, Live 0x0000000000000000",
    "crc32c_generic 16384 0 - Live 0x0000000000000000",
    "",
  ].join("\n");
  assert.deepEqual(modulesToLoad(list, procModules), [
    "/lib/modules/6.1.0/kernel/drivers/net/e1000/e1000.ko",
  ]);
  assert.equal(modulesToLoad(list, "").length, 3, "nothing loaded yet: every module");
});

test("the slot and the trial deadline come from the kernel command line", () => {
  assert.deepEqual(parseUnitCmdline("root=PARTUUID=afd726cc-03 ro rtr7.slot=b rtr7.trial=345000\n"), {
    slot: "b",
    trialDeadlineMs: 345000,
  });
  assert.deepEqual(parseUnitCmdline("root=PARTUUID=afd726cc-03 ro"), {
    slot: "b",
    trialDeadlineMs: undefined,
  });
  assert.deepEqual(parseUnitCmdline("root=PARTUUID=afd726cc-02 rtr7.trial=soon"), {
    slot: "a",
    trialDeadlineMs: undefined,
  });
});
