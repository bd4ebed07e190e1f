// /perm on the unit during a recovery: mounted if it holds a file system,
// made only where there is none (existing data is never formatted away, not
// even when its ext4 refuses to mount), and given router7's interfaces.json
// when it has none, and the unit's hostname (/perm/hostname, which a fleet
// release boots by), both written atomically (lib/atomic-file.ts).
import { access, open } from "node:fs/promises";
import { writeFileAtomically } from "../lib/atomic-file.js";
import { hostnameFileText, permHostnameFile } from "../lib/wire/unit-hostname.js";
import type { Lease, UnitSystem } from "./system.js";

/** The ext4 superblock magic (0xEF53) at byte 1080 of the partition. */
export async function hasExt4(device: string): Promise<boolean> {
  const handle = await open(device, "r");
  try {
    const magic = Buffer.alloc(2);
    await handle.read(magic, 0, 2, 1080);
    return magic.readUInt16LE(0) === 0xef53;
  } finally {
    await handle.close();
  }
}

export async function mountPerm(
  system: UnitSystem,
  device: string,
  directory: string,
  say: (line: string) => void,
) {
  try {
    await system.mount(device, directory, "ext4");
    say(`/perm mounted from ${device}`);
    return;
  } catch (error) {
    // Only a partition with no ext4 at all gets a new file system: if one is
    // there but does not mount, formatting would destroy the unit's data.
    if (await hasExt4(device)) {
      throw new Error(`${device} holds an ext4 file system that does not mount; not formatting it`, {
        cause: error,
      });
    }
  }
  say(`${device} holds no file system: creating ext4 for /perm`);
  await system.makeExt4(device, "perm");
  await system.mount(device, directory, "ext4");
}

export async function writeInterfacesJson(
  perm: string,
  lease: Lease,
  say: (line: string) => void,
): Promise<void> {
  const path = `${perm}/interfaces.json`;
  try {
    await access(path);
    return;
  } catch {
    // absent: write it
  }
  const content = JSON.stringify(
    {
      interfaces: [
        { hardware_addr: lease.mac, name: "lan0", addr: `${lease.address}/${lease.prefixLength}` },
      ],
    },
    null,
    2,
  );
  await writeFileAtomically(path, content + "\n", { mode: 0o644 });
  say(`wrote ${path} (lan0 ${lease.mac} ${lease.address}/${lease.prefixLength})`);
}

/** /perm/hostname: the unit's name whatever release it boots (lib/wire/unit-hostname.ts). */
export async function writeUnitHostname(perm: string, hostname: string): Promise<void> {
  await writeFileAtomically(`${perm}/${permHostnameFile}`, hostnameFileText(hostname), { mode: 0o644 });
}
