// `--add SRC:DEST`: files and directories from the workstation put into the
// root image (a diagd.json, a test's fixture, a site's extra binaries). A
// source is read as it is (a directory recursively, symlinks kept as
// symlinks); a destination is an absolute path inside the image and may not
// climb out of it with `..`.
import { lstat, readdir, readlink } from "node:fs/promises";
import path from "node:path";
import { Rtr7Error } from "../../lib/errors.js";
import type { CpioEntry } from "./initramfs/cpio.js";

export interface ImageAddition {
  /** A file or directory on this machine. */
  source: string;
  /** An absolute path inside the root image. */
  destination: string;
}

function refuse(message: string, hint?: string): Rtr7Error {
  return new Rtr7Error("RTR7_ERR_IMAGE_BUILD", message, hint === undefined ? {} : { hint });
}

/** "SRC:DEST" → {source, destination}; the last colon separates them. */
export function parseAddition(spec: string): ImageAddition {
  const colon = spec.lastIndexOf(":");
  if (colon <= 0 || colon === spec.length - 1) {
    throw refuse(
      `--add ${JSON.stringify(spec)}: want SRC:DEST (a local file or directory, then an absolute path in the image)`,
      "Write it as --add ./diagd.json:/etc/rtr7/diagd.json.",
    );
  }
  return { source: spec.slice(0, colon), destination: spec.slice(colon + 1) };
}

/** The destination as a clean absolute path; refuses relative ones and `..`. */
export function checkedDestination(addition: ImageAddition): string {
  const { destination } = addition;
  if (!destination.startsWith("/")) {
    throw refuse(
      `--add ${addition.source}:${destination}: the destination must be an absolute path in the image`,
    );
  }
  if (destination.split("/").includes("..")) {
    throw refuse(
      `--add ${addition.source}:${destination}: the destination may not contain "..", it would leave the image`,
    );
  }
  return path.posix.normalize(destination);
}

async function walk(source: string, destination: string, entries: CpioEntry[]): Promise<void> {
  const info = await lstat(source);
  const mode = info.mode & 0o7777;
  if (info.isSymbolicLink()) {
    entries.push({ kind: "symlink", path: destination, target: await readlink(source) });
  } else if (info.isFile()) {
    entries.push({ kind: "file", path: destination, mode, source });
  } else if (info.isDirectory()) {
    if (destination !== "/") entries.push({ kind: "directory", path: destination, mode });
    const names = (await readdir(source)).sort();
    for (const name of names) {
      await walk(path.join(source, name), path.posix.join(destination, name), entries);
    }
  } else {
    throw refuse(`--add: ${source} is neither a file, a directory nor a symlink; the image cannot hold it`);
  }
}

/** The entries one --add puts into the image, sources checked. */
export async function additionEntries(addition: ImageAddition): Promise<CpioEntry[]> {
  const destination = checkedDestination(addition);
  const source = path.resolve(addition.source);
  let info;
  try {
    info = await lstat(source);
  } catch (cause) {
    throw new Rtr7Error(
      "RTR7_ERR_IMAGE_BUILD",
      `--add ${addition.source}:${addition.destination}: the source ${source} does not exist or cannot be read`,
      { cause, hint: "Check the path before the colon: a file or directory on this machine." },
    );
  }
  if (destination === "/" && !info.isDirectory()) {
    throw refuse(`--add ${addition.source}:/: only a directory can be added at the image's root`);
  }
  const entries: CpioEntry[] = [];
  try {
    await walk(source, destination, entries);
  } catch (cause) {
    if (cause instanceof Rtr7Error) throw cause;
    throw new Rtr7Error("RTR7_ERR_IMAGE_BUILD", `--add ${addition.source}: cannot read ${source}`, {
      cause,
    });
  }
  return entries;
}
