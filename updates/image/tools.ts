// The host programs the image builder runs (mksquashfs, mkfs.fat, mcopy,
// syslinux, ...): each is looked up before any work starts, so a missing one
// is reported with the Debian package that provides it instead of failing
// half-way through a build, and each run's failure carries its stderr.
import { execFile } from "node:child_process";
import { access, constants } from "node:fs/promises";
import path from "node:path";
import { promisify } from "node:util";
import { Rtr7Error } from "../../lib/errors.js";

const execFileAsync = promisify(execFile);

export interface HostTool {
  /** The program's name (looked up on PATH) or an absolute path. */
  command: string;
  /** The Debian package that installs it, for the error. */
  debianPackage: string;
  /** What the builder needs it for, for the error. */
  purpose: string;
}

/** The programs and files a unit image build needs, with their Debian packages. */
export const imageTools = {
  mksquashfs: { command: "mksquashfs", debianPackage: "squashfs-tools", purpose: "make root.img" },
  mkfsFat: { command: "mkfs.fat", debianPackage: "dosfstools", purpose: "make boot.img" },
  mcopy: { command: "mcopy", debianPackage: "mtools", purpose: "copy files onto boot.img" },
  mmd: { command: "mmd", debianPackage: "mtools", purpose: "make directories on boot.img" },
  syslinux: { command: "syslinux", debianPackage: "syslinux", purpose: "install the boot loader" },
  ldd: { command: "ldd", debianPackage: "libc-bin", purpose: "list the libraries of node" },
  mtools: { command: "/usr/bin/mtools", debianPackage: "mtools", purpose: "put mtools into root.img" },
  kexec: { command: "kexec", debianPackage: "kexec-tools", purpose: "put kexec into root.img" },
  busybox: {
    command: "/bin/busybox",
    debianPackage: "busybox-static",
    purpose: "the shell of the boot initrd",
  },
  efiLoader: {
    command: "/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi",
    debianPackage: "syslinux-efi",
    purpose: "the UEFI loader on boot.img",
  },
  efiCore: {
    command: "/usr/lib/syslinux/modules/efi64/ldlinux.e64",
    debianPackage: "syslinux-efi",
    purpose: "the UEFI loader's core module on boot.img",
  },
  mbrCode: {
    command: "/usr/lib/syslinux/mbr/mbr.bin",
    debianPackage: "syslinux-common",
    purpose: "the MBR boot code (mbr.img)",
  },
} as const satisfies Record<string, HostTool>;

// mkfs.fat and kexec live in sbin, which a non-root PATH may lack.
const extraDirectories = ["/usr/local/sbin", "/usr/sbin", "/sbin"];

/** The absolute path of `tool`, or RTR7_ERR_TOOL_MISSING naming its package. */
export async function findTool(tool: HostTool, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const candidates = path.isAbsolute(tool.command)
    ? [tool.command]
    : [...(env.PATH ?? "").split(":").filter((dir) => dir !== ""), ...extraDirectories].map((dir) =>
        path.join(dir, tool.command),
      );
  for (const candidate of candidates) {
    try {
      await access(candidate, path.isAbsolute(tool.command) ? constants.R_OK : constants.X_OK);
      return candidate;
    } catch {
      // try the next directory
    }
  }
  throw new Rtr7Error(
    "RTR7_ERR_TOOL_MISSING",
    `build the unit images: ${tool.command} (to ${tool.purpose}) is not installed`,
    { hint: `Install the Debian package ${tool.debianPackage} (apt-get install ${tool.debianPackage}).` },
  );
}

/** Resolves every tool of `tools` at once; the first missing one is the error. */
export async function findTools<K extends string>(tools: Record<K, HostTool>): Promise<Record<K, string>> {
  const keys = Object.keys(tools) as K[];
  const found = await Promise.all(keys.map((key) => findTool(tools[key])));
  return Object.fromEntries(keys.map((key, index) => [key, found[index]])) as Record<K, string>;
}

/** Runs a program to completion; a failure is RTR7_ERR_IMAGE_BUILD with `what` and its stderr. */
export async function runTool(
  command: string,
  args: string[],
  options: { what: string; env?: NodeJS.ProcessEnv; timeoutMs?: number; hint?: string },
): Promise<{ stdout: string; stderr: string }> {
  try {
    return await execFileAsync(command, args, {
      encoding: "utf8",
      env: { ...process.env, ...options.env },
      timeout: options.timeoutMs ?? 10 * 60_000,
      maxBuffer: 16 * 1024 * 1024,
    });
  } catch (cause) {
    const failure = cause as { stderr?: string; stdout?: string; message: string };
    const said = (failure.stderr?.trim() || failure.stdout?.trim() || failure.message).split("\n");
    throw new Rtr7Error(
      "RTR7_ERR_IMAGE_BUILD",
      `${options.what}: ${path.basename(command)} failed: ${said.slice(-5).join(" / ")}`,
      options.hint === undefined ? { cause } : { cause, hint: options.hint },
    );
  }
}
