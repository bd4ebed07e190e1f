// The kernel installed on this machine (linux-image-amd64), for tests that
// read its modules or build an initramfs for it; undefined (with the reason
// to skip) when there is none.
import { existsSync } from "node:fs";
import path from "node:path";
import { newestKernel } from "../../lib/host-kernel.js";

export type HostKernel =
  { kernel: string; release: string; modulesDir: string; missing?: undefined } | { missing: string };

export function hostKernel(bootDir = "/boot"): HostKernel {
  let kernel: string;
  try {
    kernel = newestKernel(bootDir);
  } catch {
    return { missing: "needs a kernel in /boot: run scripts/setup.sh (linux-image-amd64)" };
  }
  const release = path.basename(kernel).slice("vmlinuz-".length);
  const modulesDir = path.join("/lib/modules", release);
  if (!existsSync(path.join(modulesDir, "modules.dep"))) {
    return { missing: `needs ${modulesDir}/modules.dep: reinstall linux-image-${release}` };
  }
  return { kernel, release, modulesDir };
}
