// What a unit is told to boot: loader per client architecture, and the
// generated pxelinux config with the run's parameters.
import { test } from "node:test";
import assert from "node:assert/strict";
import { bootFileFor, pxelinuxConfig, recoveryCmdline } from "../../server/pxe/boot-files.js";

test("BIOS gets pxelinux.0, x86-64 UEFI gets syslinux.efi, others nothing", () => {
  assert.equal(bootFileFor(0), "pxelinux.0");
  assert.equal(bootFileFor(7), "syslinux.efi");
  assert.equal(bootFileFor(9), "syslinux.efi");
  assert.equal(bootFileFor(6), undefined);
  assert.equal(bootFileFor(11), undefined);
});

test("the pxelinux config boots vmlinuz with router7's command line plus the server, hostname and token", () => {
  const parameters = { serverAddress: "10.0.0.1", httpPort: 7773, hostname: "router7", token: "abc123" };
  assert.equal(
    recoveryCmdline(parameters),
    "initrd=initrd rdinit=/rtr7-recovery-init console=ttyS0,115200n8 panic=10 rtr7.server=10.0.0.1 rtr7.port=7773 rtr7.hostname=router7 rtr7.token=abc123",
  );
  const config = pxelinuxConfig(parameters);
  assert.match(config, /^DEFAULT recover$/m);
  assert.match(config, /^ {2}KERNEL vmlinuz$/m);
  assert.match(config, new RegExp(`^ {2}APPEND ${recoveryCmdline(parameters)}$`, "m"));
});

test("--boot-over http: lpxelinux.0 under pxelinux.0's name, http:// kernel and initrd, both off TFTP", async () => {
  const { existsSync } = await import("node:fs");
  const { httpBootFiles, httpLoaderFile, pxeBootFiles } = await import("../../server/pxe/boot-files.js");
  if (!existsSync(httpLoaderFile)) return;
  const parameters = {
    serverAddress: "10.0.0.1",
    httpPort: 7773,
    hostname: "router7",
    token: "abc123",
    bootOver: "http" as const,
  };
  const config = pxelinuxConfig(parameters);
  assert.match(config, /^ {2}KERNEL http:\/\/10\.0\.0\.1:7773\/vmlinuz$/m);
  assert.match(recoveryCmdline(parameters), /^initrd=http:\/\/10\.0\.0\.1:7773\/initrd /);
  const inputs = { ...parameters, kernel: "/etc/hostname", initrd: "/etc/hostname" };
  const tftp = await pxeBootFiles(inputs);
  assert.equal(tftp.get("vmlinuz"), undefined);
  assert.equal(tftp.get("initrd"), undefined);
  assert.equal(tftp.get("pxelinux.0")?.diskPath, httpLoaderFile);
  assert.deepEqual(
    (await httpBootFiles(inputs)).map((file) => file.name),
    ["vmlinuz", "initrd"],
  );
  const plain = await pxeBootFiles({ ...inputs, bootOver: "tftp" });
  assert.ok(plain.get("vmlinuz") && plain.get("initrd"));
  assert.deepEqual(await httpBootFiles({ ...inputs, bootOver: "tftp" }), []);
});
