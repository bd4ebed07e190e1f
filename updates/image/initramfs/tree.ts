// The file tree of an initramfs before it becomes a cpio archive: each path
// once, every parent directory present (the kernel's unpacker does not
// create missing parents, it skips the file), host files placed with the
// symlinks that lead to them, and a content hash of the whole tree that keys
// the build cache.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { realpath, stat } from "node:fs/promises";
import path from "node:path";
import { Rtr7Error } from "../../../lib/errors.js";
import type { CpioEntry } from "./cpio.js";

function normalise(entryPath: string): string {
  const relative = path.posix.normalize("/" + entryPath).slice(1);
  if (relative === "" || relative.startsWith("..")) throw new Error(`initramfs: bad path ${entryPath}`);
  return relative;
}

function sameEntry(a: CpioEntry, b: CpioEntry): boolean {
  if (a.kind !== b.kind) return false;
  if (a.kind === "symlink" && b.kind === "symlink") return a.target === b.target;
  if (a.kind === "directory" && b.kind === "directory") return (a.mode ?? 0o755) === (b.mode ?? 0o755);
  if (a.kind === "file" && b.kind === "file") {
    if ((a.mode ?? 0o644) !== (b.mode ?? 0o644)) return false;
    if ("source" in a && "source" in b) return a.source === b.source;
    if ("data" in a && "data" in b) return a.data.equals(b.data);
  }
  return false;
}

export class InitramfsTree {
  private readonly byPath = new Map<string, CpioEntry>();

  add(entry: CpioEntry): this {
    const key = normalise(entry.path);
    const existing = this.byPath.get(key);
    if (existing && !sameEntry(existing, entry)) {
      throw new Rtr7Error(
        "RTR7_ERR_INTERNAL",
        `initramfs: /${key} would be both a ${existing.kind} and a ${entry.kind}`,
      );
    }
    this.byPath.set(key, { ...entry, path: key });
    return this;
  }

  directory(entryPath: string, mode = 0o755): this {
    return this.add({ kind: "directory", path: entryPath, mode });
  }

  data(entryPath: string, data: Buffer, mode = 0o644): this {
    return this.add({ kind: "file", path: entryPath, mode, data });
  }

  hostFile(entryPath: string, source: string, mode: number): this {
    return this.add({ kind: "file", path: entryPath, mode, source });
  }

  symlink(entryPath: string, target: string): this {
    return this.add({ kind: "symlink", path: entryPath, target });
  }

  /**
   * A host file at the same path inside: the real file at its resolved path
   * (with the host's mode), and when `hostPath` is reached through symlinks
   * (/lib64/ld-linux-x86-64.so.2 on a merged-/usr system) a symlink there to
   * it, so both the name the program asks for and the real file exist.
   */
  async mirrorHostFile(hostPath: string): Promise<this> {
    let real: string;
    let mode: number;
    try {
      real = await realpath(hostPath);
      mode = (await stat(real)).mode & 0o7777;
    } catch (cause) {
      throw new Rtr7Error("RTR7_ERR_FILE_MISSING", `copy ${hostPath} into the initramfs: cannot read it`, {
        cause,
      });
    }
    this.hostFile(real, real, mode);
    if (path.resolve(hostPath) !== real) this.symlink(hostPath, real);
    return this;
  }

  /** Every entry, implied parent directories included, sorted by path (parents first). */
  entries(): CpioEntry[] {
    const all = new Map(this.byPath);
    for (const key of this.byPath.keys()) {
      for (let parent = path.posix.dirname(key); parent !== "."; parent = path.posix.dirname(parent)) {
        const existing = all.get(parent);
        if (existing === undefined) all.set(parent, { kind: "directory", path: parent, mode: 0o755 });
        else if (existing.kind !== "directory") {
          throw new Rtr7Error(
            "RTR7_ERR_INTERNAL",
            `initramfs: /${parent} is a ${existing.kind} with entries below`,
          );
        }
      }
    }
    return [...all.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }
}

async function fileDigest(source: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(source, { highWaterMark: 1024 * 1024 })) {
    hash.update(chunk as Buffer);
  }
  return hash.digest("hex");
}

/**
 * SHA-256 over what the archive will hold: each entry's kind, path, mode and
 * content (file bytes, link target), plus `extra` (builder version, kernel
 * release). Equal hashes mean equal archives.
 */
export async function treeDigest(
  entries: readonly CpioEntry[],
  extra: Record<string, string>,
): Promise<string> {
  const hash = createHash("sha256");
  hash.update(JSON.stringify(Object.entries(extra).sort()) + "\n");
  for (const entry of entries) {
    let content: string;
    if (entry.kind === "directory") content = "";
    else if (entry.kind === "symlink") content = entry.target;
    else if ("data" in entry) content = createHash("sha256").update(entry.data).digest("hex");
    else content = await fileDigest(entry.source);
    const mode =
      entry.kind === "symlink" ? 0o777 : (entry.mode ?? (entry.kind === "directory" ? 0o755 : 0o644));
    hash.update(JSON.stringify([entry.kind, entry.path, mode.toString(8), content]) + "\n");
  }
  return hash.digest("hex");
}
