// The release string of a kernel image (what `uname -r` prints once it runs),
// which names its /lib/modules/<release> directory. Read from the bzImage
// setup header, so a kernel copied to a plain name like `vmlinuz` still works;
// the `vmlinuz-<release>` file name is the fallback for other image formats.
import { open } from "node:fs/promises";
import path from "node:path";
import { Rtr7Error } from "../../../lib/errors.js";

// Boot protocol (Documentation/x86/boot.rst): "HdrS" at 0x202; the 16-bit
// field at 0x20E points (less 0x200) to a NUL-terminated version string.
const headerMagicOffset = 0x202;
const versionPointerOffset = 0x20e;
const headerSize = 0x4000;

/** The release from a bzImage header, or undefined when the bytes are no bzImage. */
export function releaseFromBzImageHeader(header: Buffer): string | undefined {
  if (header.length < versionPointerOffset + 2) return undefined;
  if (header.toString("latin1", headerMagicOffset, headerMagicOffset + 4) !== "HdrS") return undefined;
  const pointer = header.readUInt16LE(versionPointerOffset);
  if (pointer === 0) return undefined;
  const start = pointer + 0x200;
  if (start >= header.length) return undefined;
  const end = header.indexOf(0, start);
  const version = header.toString("latin1", start, end === -1 ? header.length : end);
  // "6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1 SMP ..." → first word.
  const release = version.split(" ")[0] ?? "";
  return /^[0-9][\w.+~-]*$/.test(release) ? release : undefined;
}

/** The release from a `vmlinuz-<release>` file name, or undefined. */
export function releaseFromFileName(kernelPath: string): string | undefined {
  return /^(?:vmlinuz|bzImage|vmlinux)-(.+)$/.exec(path.basename(kernelPath))?.[1];
}

export async function kernelRelease(kernelPath: string): Promise<string> {
  let header: Buffer;
  try {
    const file = await open(kernelPath, "r");
    try {
      const { buffer, bytesRead } = await file.read(Buffer.alloc(headerSize), 0, headerSize, 0);
      header = buffer.subarray(0, bytesRead);
    } finally {
      await file.close();
    }
  } catch (cause) {
    throw new Rtr7Error("RTR7_ERR_FILE_MISSING", `read kernel ${kernelPath}: cannot open it`, { cause });
  }
  const release = releaseFromBzImageHeader(header) ?? releaseFromFileName(kernelPath);
  if (release === undefined) {
    throw new Rtr7Error(
      "RTR7_ERR_KERNEL_MODULES",
      `find the release of kernel ${kernelPath}: no bzImage version string and no vmlinuz-<release> file name`,
      { hint: "Pass the kernel's modules directory (/lib/modules/<release>) explicitly." },
    );
  }
  return release;
}
