// The shared libraries a dynamically linked program needs at run time, as
// `ldd` lists them (the dynamic loader included), so the initramfs can carry
// node and mke2fs with everything they load. ldd already follows libraries
// of libraries, so its list is the whole closure. A static binary (busybox
// from busybox-static) needs none.
import { execFile } from "node:child_process";
import { access, open } from "node:fs/promises";
import { promisify } from "node:util";
import { Rtr7Error } from "../../../lib/errors.js";

const run = promisify(execFile);

/**
 * The absolute library paths in `ldd` output, in its order, each once.
 * Virtual objects without a file (linux-vdso.so.1) are left out; a library
 * ldd could not find is an error, since the program would not start.
 */
export function parseLddOutput(binary: string, output: string): string[] {
  const libraries: string[] = [];
  for (const rawLine of output.split("\n")) {
    const line = rawLine.trim();
    if (line === "" || line === "statically linked" || line === "not a dynamic executable") continue;
    const arrow = /^(\S+) => (.+?)(?: \(0x[0-9a-f]+\))?$/.exec(line);
    if (arrow) {
      const [, soname = "", target = ""] = arrow;
      if (target === "not found") {
        throw new Rtr7Error(
          "RTR7_ERR_INITRAMFS_BUILD",
          `list the libraries of ${binary}: ldd cannot find ${soname}`,
          { hint: `Install the package that provides ${soname} (apt-file search ${soname}).` },
        );
      }
      // "linux-vdso.so.1 =>  (0x...)" on older glibc: no file to copy.
      if (target.startsWith("/")) libraries.push(target);
      continue;
    }
    const bare = /^(\S+) \(0x[0-9a-f]+\)$/.exec(line);
    // The loader appears as "/lib64/ld-linux-x86-64.so.2 (0x...)"; the vDSO
    // as "linux-vdso.so.1 (0x...)", with no path.
    if (bare?.[1]?.startsWith("/")) libraries.push(bare[1]);
  }
  return [...new Set(libraries)];
}

/**
 * The libraries `binary` loads, as the absolute paths ldd prints them (which
 * may be symlinks, such as /lib64/ld-linux-x86-64.so.2; the caller resolves
 * them and keeps both the link and its target). [] for a static binary.
 */
export async function sharedLibraries(binary: string, options: { ldd?: string } = {}): Promise<string[]> {
  const ldd = options.ldd ?? "ldd";
  try {
    await access(binary);
  } catch (cause) {
    throw new Rtr7Error("RTR7_ERR_FILE_MISSING", `list the libraries of ${binary}: no such file`, { cause });
  }
  let output: string;
  try {
    output = (await run(ldd, [binary], { encoding: "utf8" })).stdout;
  } catch (cause) {
    const failure = cause as { code?: unknown; stdout?: string; stderr?: string };
    if (failure.code === "ENOENT") {
      throw new Rtr7Error(
        "RTR7_ERR_TOOL_MISSING",
        `list the libraries of ${binary}: ${ldd} is not installed`,
        {
          cause,
        },
      );
    }
    // glibc's ldd exits 1 for a static binary: told by the ELF file itself.
    if (!(await hasInterpreter(binary))) return [];
    throw new Rtr7Error("RTR7_ERR_INITRAMFS_BUILD", `list the libraries of ${binary}: ldd failed`, { cause });
  }
  return parseLddOutput(binary, output);
}

/**
 * Whether an ELF file names a program interpreter (a PT_INTERP program
 * header): a dynamically linked program does, a static one does not. Read
 * from the file's own headers (64- or 32-bit, either byte order), so a
 * failed ldd is judged by what the binary is, not by what ldd printed.
 */
export async function hasInterpreter(binary: string): Promise<boolean> {
  const handle = await open(binary, "r");
  try {
    const header = Buffer.alloc(64);
    await handle.read(header, 0, 64, 0);
    if (header.readUInt32BE(0) !== 0x7f454c46) return false;
    const is64 = header[4] === 2;
    const little = header[5] === 1;
    const u16 = (buffer: Buffer, at: number): number =>
      little ? buffer.readUInt16LE(at) : buffer.readUInt16BE(at);
    const u32 = (buffer: Buffer, at: number): number =>
      little ? buffer.readUInt32LE(at) : buffer.readUInt32BE(at);
    const tableOffset = is64
      ? Number(little ? header.readBigUInt64LE(32) : header.readBigUInt64BE(32))
      : u32(header, 28);
    const entrySize = u16(header, is64 ? 54 : 42);
    const count = u16(header, is64 ? 56 : 44);
    const table = Buffer.alloc(entrySize * count);
    await handle.read(table, 0, table.length, tableOffset);
    const interpreterType = 3;
    for (let index = 0; index < count; index += 1)
      if (u32(table, index * entrySize) === interpreterType) return true;
    return false;
  } finally {
    await handle.close();
  }
}
