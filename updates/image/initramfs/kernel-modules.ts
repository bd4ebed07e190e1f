// Which kernel modules the recovery initramfs carries, and in which order
// recovery-init loads them. The init has only busybox `insmod`, which loads
// one file and resolves nothing, so the list is worked out here from the
// kernel's own tables: modules.dep (hard dependencies), modules.softdep
// (ext4 needs a crc32c implementation that modules.dep does not name),
// modules.alias (to turn "crypto-crc32c" into a module) and modules.builtin
// (drivers compiled into the kernel need no file).
import { readFile } from "node:fs/promises";
import path from "node:path";
import { Rtr7Error } from "../../../lib/errors.js";
import { silentLogger, type Logger } from "../../../lib/log.js";

/**
 * The drivers a recovery may need. Without the required ones no unit we know
 * of (QEMU's virtio disk and e1000 NIC, /perm on ext4) can be recovered; the
 * optional ones cover real units (apu2: ahci/sdhci disks, i210 NICs = igb) and
 * are skipped when a kernel lacks them.
 */
export const recoveryModules = {
  required: ["virtio_blk", "e1000", "ext4"],
  optional: [
    // disks and their buses
    "virtio_pci",
    "virtio_scsi",
    "ahci",
    "ata_piix",
    "libata",
    "sd_mod",
    "nvme",
    "mmc_block",
    "sdhci_pci",
    "sdhci_acpi",
    "usb_storage",
    "xhci_pci",
    "ehci_pci",
    // network cards
    "e1000e",
    "igb",
    "igc",
    "r8169",
    "virtio_net",
    // file systems
    "vfat",
    "nls_cp437",
    "nls_iso8859_1",
    "squashfs",
  ],
} as const;

export interface KernelModule {
  /** The module's name, with `_` for `-` ("crc32c_generic"). */
  name: string;
  /** Its file, as modules.dep names it (relative to /lib/modules/<release>). */
  path: string;
  /** The files it needs loaded first, as modules.dep lists them. */
  dependencies: string[];
}

export interface SoftDependencies {
  pre: string[];
  post: string[];
}

export interface ModuleIndex {
  byName: Map<string, KernelModule>;
  byPath: Map<string, KernelModule>;
  /** Names of modules compiled into the kernel. */
  builtin: Set<string>;
  /** Exact (wildcard-free) aliases → module names. */
  aliases: Map<string, string[]>;
  softdeps: Map<string, SoftDependencies>;
}

export interface ResolvedModules {
  /** Every module file to load, dependencies first, each once. */
  load: KernelModule[];
  /** Wanted names that need no file (built in) or that this kernel lacks. */
  skipped: { name: string; reason: "builtin" | "missing" }[];
}

/** "kernel/fs/ext4/ext4.ko", "crc32c-intel" or "x.ko.xz" → "ext4", "crc32c_intel", "x". */
export function moduleName(pathOrName: string): string {
  return path
    .basename(pathOrName)
    .replace(/\.ko(\.(xz|zst|gz))?$/, "")
    .replace(/-/g, "_");
}

/** Whether busybox insmod can load the file (it cannot decompress). */
export function isCompressedModule(modulePath: string): boolean {
  return !modulePath.endsWith(".ko");
}

function lines(text: string): string[] {
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
}

/** modules.dep: `kernel/path/x.ko: kernel/dep1.ko kernel/dep2.ko` per line. */
export function parseModulesDep(text: string): KernelModule[] {
  return lines(text).map((line) => {
    const colon = line.indexOf(":");
    if (colon <= 0) throw new Error(`modules.dep: malformed line ${JSON.stringify(line)}`);
    const file = line.slice(0, colon);
    const dependencies = line
      .slice(colon + 1)
      .split(/\s+/)
      .filter((dependency) => dependency !== "");
    return { name: moduleName(file), path: file, dependencies };
  });
}

/** modules.builtin: one `kernel/path/x.ko` per line. */
export function parseModulesBuiltin(text: string): Set<string> {
  return new Set(lines(text).map(moduleName));
}

/** modules.alias: `alias ALIAS MODULE`; device aliases with wildcards are left out. */
export function parseModulesAlias(text: string): Map<string, string[]> {
  const aliases = new Map<string, string[]>();
  for (const line of lines(text)) {
    const [keyword, alias, module] = line.split(/\s+/);
    if (keyword !== "alias" || !alias || !module || /[*?[]/.test(alias)) continue;
    const names = aliases.get(alias) ?? [];
    names.push(moduleName(module));
    aliases.set(alias, names);
  }
  return aliases;
}

/**
 * modules.softdep: `softdep MODULE pre: A B post: C`. As in kmod, names
 * before the first `pre:` or `post:` belong to neither and are ignored.
 */
export function parseModulesSoftdep(text: string): Map<string, SoftDependencies> {
  const softdeps = new Map<string, SoftDependencies>();
  for (const line of lines(text)) {
    const [keyword, module, ...words] = line.split(/\s+/);
    if (keyword !== "softdep" || !module) continue;
    const entry = softdeps.get(moduleName(module)) ?? { pre: [], post: [] };
    let list: string[] | undefined;
    for (const word of words) {
      if (word === "pre:") list = entry.pre;
      else if (word === "post:") list = entry.post;
      else list?.push(word);
    }
    softdeps.set(moduleName(module), entry);
  }
  return softdeps;
}

export function moduleIndex(tables: {
  dep: string;
  builtin?: string;
  alias?: string;
  softdep?: string;
}): ModuleIndex {
  const modules = parseModulesDep(tables.dep);
  return {
    byName: new Map(modules.map((module) => [module.name, module])),
    byPath: new Map(modules.map((module) => [module.path, module])),
    builtin: parseModulesBuiltin(tables.builtin ?? ""),
    aliases: parseModulesAlias(tables.alias ?? ""),
    softdeps: parseModulesSoftdep(tables.softdep ?? ""),
  };
}

async function optionalText(file: string): Promise<string> {
  try {
    return await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return "";
    throw error;
  }
}

/** Reads the tables depmod wrote into /lib/modules/<release>. */
export async function readModuleIndex(modulesDir: string): Promise<ModuleIndex> {
  let dep: string;
  try {
    dep = await readFile(path.join(modulesDir, "modules.dep"), "utf8");
  } catch (cause) {
    throw new Rtr7Error("RTR7_ERR_KERNEL_MODULES", `read ${modulesDir}/modules.dep: cannot read it`, {
      cause,
    });
  }
  const [builtin, alias, softdep] = await Promise.all(
    ["modules.builtin", "modules.alias", "modules.softdep"].map((table) =>
      optionalText(path.join(modulesDir, table)),
    ),
  );
  return moduleIndex({ dep, builtin, alias, softdep });
}

/**
 * The modules a soft dependency names: a module of that name, else the
 * modules its alias points to. Of several providers ("crypto-crc32c" →
 * crc32c_intel, crc32c_generic) the `_generic` ones are taken when there are
 * any: they load on every CPU, while crc32c_intel refuses one without SSE4.2
 * (QEMU's default CPU), and a failed insmod would stop the recovery.
 */
function softDependencyProviders(index: ModuleIndex, name: string): KernelModule[] {
  const direct = index.byName.get(moduleName(name));
  if (direct) return [direct];
  const providers = (index.aliases.get(name) ?? [])
    .map((provider) => index.byName.get(provider))
    .filter((module): module is KernelModule => module !== undefined);
  const generic = providers.filter((module) => module.name.endsWith("_generic"));
  return generic.length > 0 ? generic : providers;
}

/**
 * The closure of `wanted` in load order: for each module, its pre soft
 * dependencies, then its hard dependencies (recursively), then the module,
 * then its post soft dependencies. Built-in modules are skipped; a missing
 * module is skipped unless it is in `required`. Compressed files are refused.
 */
export function resolveModules(
  index: ModuleIndex,
  wanted: readonly string[],
  options: { required?: readonly string[]; log?: Logger } = {},
): ResolvedModules {
  const log = options.log ?? silentLogger();
  const required = new Set((options.required ?? []).map(moduleName));
  const load: KernelModule[] = [];
  const skipped: ResolvedModules["skipped"] = [];
  const loaded = new Set<string>();
  const visiting = new Set<string>();

  const visitSoft = (name: string, from: string): void => {
    const providers = softDependencyProviders(index, name);
    if (providers.length === 0) {
      log.debug(
        { module: from, softdep: name },
        `Soft dependency ${name} of ${from} is not a module; skipped.`,
      );
    }
    // A soft dependency that is already on the way is no cycle worth failing for.
    for (const provider of providers) if (!visiting.has(provider.path)) visit(provider);
  };

  const visit = (module: KernelModule): void => {
    if (loaded.has(module.path)) return;
    if (visiting.has(module.path)) {
      throw new Rtr7Error(
        "RTR7_ERR_KERNEL_MODULES",
        `resolve kernel modules: ${module.path} depends on itself`,
      );
    }
    visiting.add(module.path);
    const soft = index.softdeps.get(module.name);
    for (const name of soft?.pre ?? []) visitSoft(name, module.name);
    // modules.dep lists the whole closure with the last-to-load first, as
    // modprobe reads it; visiting each dependency's own line keeps the order
    // right whatever the list's order.
    for (const dependency of [...module.dependencies].reverse()) {
      visit(
        index.byPath.get(dependency) ?? { name: moduleName(dependency), path: dependency, dependencies: [] },
      );
    }
    visiting.delete(module.path);
    loaded.add(module.path);
    load.push(module);
    for (const name of soft?.post ?? []) visitSoft(name, module.name);
  };

  for (const wantedName of wanted) {
    const name = moduleName(wantedName);
    const module = index.byName.get(name);
    if (module) {
      visit(module);
    } else if (index.builtin.has(name)) {
      log.debug({ module: name }, `Module ${name} is built into the kernel.`);
      skipped.push({ name, reason: "builtin" });
    } else if (required.has(name)) {
      throw new Rtr7Error(
        "RTR7_ERR_KERNEL_MODULES",
        `resolve kernel modules: ${name} is neither a module in modules.dep nor built into the kernel; a recovery needs it`,
      );
    } else {
      log.debug({ module: name }, `This kernel has no module ${name}; skipped.`);
      skipped.push({ name, reason: "missing" });
    }
  }

  const compressed = load.filter((module) => isCompressedModule(module.path));
  if (compressed.length > 0) {
    throw new Rtr7Error(
      "RTR7_ERR_KERNEL_MODULES",
      `resolve kernel modules: ${compressed.map((module) => module.path).join(", ")} ` +
        `${compressed.length === 1 ? "is" : "are"} compressed; busybox insmod loads only uncompressed .ko files`,
    );
  }
  return { load, skipped };
}

/** The recovery's modules for the kernel whose tables are in `modulesDir`. */
export async function recoveryModuleClosure(modulesDir: string, log?: Logger): Promise<ResolvedModules> {
  const index = await readModuleIndex(modulesDir);
  return resolveModules(index, [...recoveryModules.required, ...recoveryModules.optional], {
    required: recoveryModules.required,
    log,
  });
}
