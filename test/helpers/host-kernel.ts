// The kernel installed on this machine (linux-image-amd64), for tests that
// read its modules or build an initramfs for it; undefined (with the reason
// to skip) when there is none.
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";

export type HostKernel =
  { kernel: string; release: string; modulesDir: string; missing?: undefined } | { missing: string };

export function hostKernel(bootDir = "/boot"): HostKernel {
  let names: string[] = [];
  try {
    names = readdirSync(bootDir).filter((name) => name.startsWith("vmlinuz-"));
  } catch {
    // no /boot: reported below
  }
  const newest = names.sort((a, b) => a.localeCompare(b, undefined, { numeric: true })).pop();
  if (newest === undefined)
    return { missing: "needs a kernel in /boot: run scripts/setup.sh (linux-image-amd64)" };
  const release = newest.slice("vmlinuz-".length);
  const modulesDir = path.join("/lib/modules", release);
  if (!existsSync(path.join(modulesDir, "modules.dep"))) {
    return { missing: `needs ${modulesDir}/modules.dep: reinstall linux-image-${release}` };
  }
  return { kernel: path.join(bootDir, newest), release, modulesDir };
}
