// Shared libraries from ldd: its output parsed (vDSO left out, the loader
// kept, a missing library refused), and run on this machine's node (dynamic)
// and busybox (static).
import { test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { isRtr7Error } from "../../lib/errors.js";
import { hasInterpreter, parseLddOutput, sharedLibraries } from "../../updates/image/initramfs/elf-deps.js";

const nodeLdd = `	linux-vdso.so.1 (0x00007ffd5a1f2000)
	libdl.so.2 => /lib/x86_64-linux-gnu/libdl.so.2 (0x00007f0b16d70000)
	libstdc++.so.6 => /lib/x86_64-linux-gnu/libstdc++.so.6 (0x00007f0b16a00000)
	libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f0b1681e000)
	/lib64/ld-linux-x86-64.so.2 (0x00007f0b16d89000)
`;

test("ldd output: every library path and the loader, without the vDSO", () => {
  assert.deepEqual(parseLddOutput("node", nodeLdd), [
    "/lib/x86_64-linux-gnu/libdl.so.2",
    "/lib/x86_64-linux-gnu/libstdc++.so.6",
    "/lib/x86_64-linux-gnu/libc.so.6",
    "/lib64/ld-linux-x86-64.so.2",
  ]);
  // Older glibc prints the vDSO with an empty arrow.
  assert.deepEqual(parseLddOutput("x", "\tlinux-vdso.so.1 =>  (0x00007ffd5a1f2000)\n"), []);
  assert.deepEqual(parseLddOutput("x", "\tstatically linked\n"), []);
});

test("a library ldd cannot find is an error naming it", () => {
  assert.throws(
    () => parseLddOutput("/usr/bin/tool", "\tlibgone.so.3 => not found\n"),
    (error) => isRtr7Error(error, "RTR7_ERR_INITRAMFS_BUILD") && error.message.includes("libgone.so.3"),
  );
});

test("this machine's node needs libraries that exist, the dynamic loader among them", async () => {
  const libraries = await sharedLibraries(process.execPath);
  assert.ok(libraries.length > 0);
  for (const library of libraries) assert.ok(existsSync(library), library);
  assert.ok(
    libraries.some((library) => /\/ld-linux[^/]*\.so\.\d+$/.test(library)),
    `the dynamic loader is listed: ${libraries.join(" ")}`,
  );
});

test("a static busybox needs no libraries", async (t) => {
  const ldd = spawnSync("ldd", ["/bin/busybox"], { encoding: "utf8" });
  if (!`${ldd.stdout}${ldd.stderr}`.includes("not a dynamic executable")) {
    return t.skip("needs busybox-static at /bin/busybox: run scripts/setup.sh");
  }
  assert.deepEqual(await sharedLibraries("/bin/busybox"), []);
});

test("a binary that does not exist is a missing file", async () => {
  await assert.rejects(sharedLibraries("/nonexistent/tool"), (error) =>
    isRtr7Error(error, "RTR7_ERR_FILE_MISSING"),
  );
});

test("hasInterpreter tells a dynamic program from a static one by its ELF headers", async () => {
  assert.equal(await hasInterpreter(process.execPath), true, "node is dynamically linked");
  assert.equal(await hasInterpreter("/bin/busybox"), false, "Debian's busybox-static is static");
  assert.equal(await hasInterpreter("/etc/hostname"), false, "not an ELF file");
});
