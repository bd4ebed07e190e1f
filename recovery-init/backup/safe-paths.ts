// Turning tar entry names into paths under a root directory without ever
// leaving it. This is the security boundary of the backup restore, so it is
// small and hand-written rather than borrowed from a general extractor (tar-fs,
// node-tar) with its own policy on links: a name is split into components and
// refused if it is absolute or has a `..`; every component on the way is
// checked with lstat, so no symlink is ever followed; files are opened with
// O_NOFOLLOW, directories are only ever created with mkdir.
//
// The calls are synchronous on purpose (restore.ts does the same for file
// data and metadata): each is one cheap syscall, and a round trip through
// libuv's thread pool costs several times that. Restoring 5000 small files
// took about 8 s with fs/promises and about 3 s like this, as long as GNU tar
// took on the same disk.
import { closeSync, constants, lstatSync, mkdirSync, openSync, type Stats } from "node:fs";
import path from "node:path";

/** Throws the caller's error saying why the current entry is refused. */
export type Refuse = (reason: string) => never;

/** Longest name component ext4 (and Linux) accepts, in bytes. */
const maxComponentBytes = 255;

/**
 * Splits a tar entry name into its path components. `./a/b`, `a//b` and `a/`
 * are accepted as `a/b`, `a/b` and `a`; `./` and the empty name give no
 * components (the root itself).
 */
export function entryComponents(name: string, refuse: Refuse): string[] {
  if (name.includes("\0")) refuse("its name contains a NUL byte");
  if (name.startsWith("/")) refuse("its name is absolute");
  const components = name.split("/").filter((component) => component !== "" && component !== ".");
  if (components.includes("..")) refuse('its name has a ".." component');
  if (components.some((component) => Buffer.byteLength(component) > maxComponentBytes))
    refuse(`a component of its name is longer than ${maxComponentBytes} bytes`);
  return components;
}

/**
 * The paths under one root that are known to be real directories. Once a
 * directory is checked (or created) it is not checked again: the root is a
 * fresh private staging directory, and only this restore writes into it.
 */
export class DirectoriesBeneath {
  private readonly checked = new Set<string>();

  constructor(readonly root: string) {
    this.checked.add(root);
  }

  /** Makes every parent of `components` a real directory and returns the full path. */
  parentsOf(components: readonly string[], refuse: Refuse): string {
    let current = this.root;
    for (const component of components.slice(0, -1)) {
      current = path.join(current, component);
      if (this.checked.has(current)) continue;
      const existing = lstatOrNull(current);
      if (existing === null) mkdirSync(current, { mode: 0o755 });
      else if (existing.isSymbolicLink())
        refuse(`its parent ${relativeName(this.root, current)} is a symlink`);
      else if (!existing.isDirectory())
        refuse(`its parent ${relativeName(this.root, current)} is not a directory`);
      this.checked.add(current);
    }
    return path.join(this.root, ...components);
  }

  /** Creates the directory (or accepts an existing one) and returns its path. */
  directory(components: readonly string[], refuse: Refuse): string {
    const full = this.parentsOf(components, refuse);
    if (this.checked.has(full)) return full;
    const existing = lstatOrNull(full);
    if (existing === null) mkdirSync(full, { mode: 0o700 });
    else if (!existing.isDirectory()) refuse("something that is not a directory has that name already");
    this.checked.add(full);
    return full;
  }

  /**
   * Opens the file for writing, created or truncated, and returns its file
   * descriptor. A later entry with the same name replaces an earlier file (as
   * GNU tar does); it may not replace a directory.
   */
  file(components: readonly string[], refuse: Refuse): number {
    const full = this.parentsOf(components, refuse);
    const existing = lstatOrNull(full);
    if (existing !== null && !existing.isFile())
      refuse("something that is not a regular file has that name already");
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW;
    return openSync(full, flags, 0o600);
  }
}

/** Opens a directory for fchmod/fchown/futimes without following a symlink. */
export function openDirectory(full: string): number {
  return openSync(full, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
}

/** Runs `use` on the file descriptor and closes it, also when `use` throws. */
export function withDescriptor<T>(fd: number, use: (fd: number) => T): T {
  try {
    return use(fd);
  } finally {
    closeSync(fd);
  }
}

function lstatOrNull(full: string): Stats | null {
  try {
    return lstatSync(full);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw error;
  }
}

function relativeName(root: string, full: string): string {
  return JSON.stringify(path.relative(root, full));
}
