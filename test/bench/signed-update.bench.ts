// A signed update against an unsigned one of the same images: the unit's
// update API (router/update-api, in this process, listening on 127.0.0.1,
// file-backed slots and boot partition as in process mode) driven by the
// real unit target (updates/client). Unsigned: root, boot, mbr, testboot to
// a unit that trusts no key. Signed: trust, the signed manifest, then the
// same pushes and testboot to a unit that trusts the key, which verifies
// the manifest and compares the SHA-256 of what it holds with it. The
// ratio is what signing costs an update (signed time / unsigned time).
// Never asserts on time. Needs mksquashfs and mkfs.fat/mtools.
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, truncate, writeFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { haveTool } from "../../lab/processes.js";
import { silentLogger } from "../../lib/log.js";
import { generateSigningKey } from "../../lib/trust/minisign.js";
import { signManifest } from "../../lib/trust/release-signature.js";
import { addTrustedKey, removeTrustedKey } from "../../lib/trust/trusted-keys.js";
import { sha256OfFile } from "../../lib/wire/manifest.js";
import { buildUpdateApi } from "../../router/update-api/server.js";
import { openUnit } from "../../updates/client/index.js";
import {
  FakeBootControl,
  makeBootImage,
  makeMbrSector,
  makeSquashfs,
  MiB,
  rootSlotBytes,
} from "../integration/update-api-fixture.js";
import { fileBackedUnitPaths } from "../helpers/unit-paths.js";
import { compare, printComparisons } from "./harness.js";

const rounds = Number(process.env.RTR7_BENCH_SIGNED_ROUNDS ?? 5);

async function main(): Promise<void> {
  for (const tool of ["mksquashfs", "mkfs.fat", "mcopy"])
    if (!(await haveTool(tool))) {
      console.log(`signed-update bench skipped: needs ${tool}: run scripts/setup.sh`);
      return;
    }
  const dir = await mkdtemp(path.join(tmpdir(), "rtr7-bench-signed-"));
  try {
    const root = await makeSquashfs(dir, "root", 32 * MiB);
    const boot = await makeBootImage(dir, "boot", "a", { diskId: 0 });
    const mbr = path.join(dir, "mbr.img");
    await writeFile(mbr, randomBytes(440));
    const entry = async (name: string, file: string) => ({ name, ...(await sha256OfFile(file)) });
    const manifest = Buffer.from(
      JSON.stringify({
        anyUnit: true,
        version: "v2",
        images: [await entry("mbr.img", mbr), await entry("boot.img", boot), await entry("root.img", root)],
      }),
    );
    const key = generateSigningKey();
    const signature = signManifest(manifest, key, Date.now());

    const paths = await fileBackedUnitPaths(path.join(dir, "unit"));
    for (const slot of ["a", "b"] as const) {
      await writeFile(paths.roots[slot], "");
      await truncate(paths.roots[slot], rootSlotBytes);
    }
    await writeFile(paths.boot, await readFile(boot));
    await writeFile(paths.mbr, makeMbrSector());
    const control = new FakeBootControl({ running: "a", trial: false, committed: "a" });
    const password = randomBytes(12).toString("hex");
    const app = buildUpdateApi({ paths, boot: control, password, log: silentLogger() });
    await app.listen({ host: "127.0.0.1", port: 0 });
    const port = (app.server.address() as AddressInfo).port;
    const unit = await openUnit({ host: "127.0.0.1", port }, { password });

    const update = (signed: boolean) => async (): Promise<number> => {
      if (signed) await addTrustedKey(paths.perm, key.publicKey);
      else await removeTrustedKey(paths.perm, key.publicKey.keyId);
      const started = performance.now();
      if (signed) {
        await unit.trust();
        await unit.sendManifest({ manifest, signature });
      }
      await unit.streamTo("root", root);
      await unit.streamTo("boot", boot);
      await unit.streamTo("mbr", mbr);
      await unit.testboot();
      return performance.now() - started;
    };
    try {
      const result = await compare(
        "root 32 MiB + boot + mbr",
        { name: "signed", run: update(true) },
        { name: "unsigned", run: update(false) },
        rounds,
      );
      printComparisons(
        "Signed update (manifest, verify, SHA-256 compare) against unsigned, same images; ratio < 1: signing costs that share",
        "unsigned",
        [result],
      );
    } finally {
      await app.close();
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
