import { Flags } from "@oclif/core";
import { Rtr7Command } from "../../base.js";
import { checkedHostname } from "../../../lib/wire/names.js";
import { kernelFlag } from "../../flags.js";

export default class ImageBuild extends Rtr7Command {
  static override summary = "Build a unit's images (mbr.img, boot.img, root.img) and their manifest.";

  static override description = `Builds the three images a recovery or an update writes to a unit, and manifest.json
with their sizes and SHA-256 sums: root.img (squashfs: the router suite as /rtr7/init,
node, busybox, mtools, kexec and the kernel's disk, NIC and file system modules),
boot.img (100 MiB FAT32: syslinux with one label per root slot, the kernel, and a small
initrd that finds the root slot by the disk's MBR identifier) and mbr.img (syslinux's
MBR boot code). The same inputs give byte-identical images; the default --version is
derived from them. A failed build leaves --out as it was.

Without --hostname the images are a fleet release that boots on any unit: build.json and
manifest.json say "anyUnit": true, syslinux.cfg names disk 0, and each unit takes its
hostname from /perm/hostname and its own disk identifier (written there by \`rtr7 recover\`
and the update API). With --hostname they are for that one unit, as gokrazy builds them.

Once \`rtr7 keys init\` has made the fleet's key, manifest.json is signed with it into
manifest.json.minisig (minisign's format: \`minisign -Vm manifest.json -p signing.pub\` checks it),
and a unit that trusts the key takes only releases it signed.`;

  static override examples = [
    {
      description: "Build one fleet release for every unit into ./release:",
      command: "<%= config.bin %> image build --out ./release",
    },
    {
      description: "Build the images for router7 into ./build with the newest /boot/vmlinuz-*:",
      command: "<%= config.bin %> image build --out ./build --hostname router7",
    },
    {
      description: "Name the version, choose the kernel, and add diagd's configuration:",
      command:
        "<%= config.bin %> image build --out ./build --hostname router7 --version 2024.06.1 --kernel /boot/vmlinuz-6.1.0-21-amd64 --add ./diagd.json:/etc/rtr7/diagd.json",
    },
    {
      description: "Print the manifest as one JSON line for a script:",
      command: "<%= config.bin %> image build --out ./build --hostname router7 --json",
    },
  ];

  static override flags = {
    out: Flags.string({
      description:
        "Directory to write mbr.img, boot.img, root.img and manifest.json to (created if missing).",
      required: true,
    }),
    hostname: Flags.string({
      description:
        "The one unit the images are for; its hash is the disk identifier the boot config names [default: none, a fleet release for any unit].",
      helpValue: "H",
      parse: (input) => Promise.resolve(checkedHostname(input)),
    }),
    version: Flags.string({
      description:
        "Version recorded in build.json and the manifest [default: g + 12 hex digits of a digest of the inputs].",
    }),
    kernel: kernelFlag("Kernel for boot.img [default: the newest /boot/vmlinuz-*]."),
    modules: Flags.directory({
      description: "The kernel's modules directory [default: /lib/modules/<the kernel's release>].",
      exists: true,
    }),
    add: Flags.string({
      description:
        "SRC:DEST: put a local file or directory (recursively) at the absolute path DEST in root.img. Repeatable.",
      multiple: true,
    }),
    "router-entry": Flags.file({
      description:
        "Compiled router suite to bundle as /rtr7/init [default: this rtr7's dist/router/main.js].",
      exists: true,
    }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(ImageBuild);
    const log = this.makeLogger(flags);
    const { buildUnitImages } = await import("../../../updates/image/build.js");
    const { parseAddition } = await import("../../../updates/image/additions.js");
    const { formatBytes } = await import("../../../lib/log.js");
    const { keysDir, loadSigningKey } = await import("../../../updates/keys.js");
    const signingKey = await loadSigningKey(keysDir());
    const built = await buildUnitImages({
      signingKey,
      outDir: flags.out,
      hostname: flags.hostname,
      version: flags.version,
      kernel: flags.kernel,
      modulesDir: flags.modules,
      add: (flags.add ?? []).map(parseAddition),
      routerEntry: flags["router-entry"],
      log,
    });
    const dir = (await import("node:path")).dirname(built.paths.manifest);
    if (flags.json) {
      log.info(
        { event: "images", ...built.manifest, dir, signedBy: built.signedBy },
        `built the images in ${dir}`,
      );
      return;
    }
    const forWhom = built.manifest.hostname ?? "fleet release (any unit)";
    log.info(`${forWhom} version ${built.version} in ${dir}:`);
    log.info(
      built.signedBy
        ? `manifest.json is signed by key ${built.signedBy} (manifest.json.minisig)`
        : "manifest.json is not signed: no fleet key yet (`rtr7 keys init` makes one)",
    );
    for (const image of built.manifest.images) {
      log.info(
        `${image.name.padEnd(8)} ${formatBytes(image.size).padStart(10)}  sha256 ${image.sha256.slice(0, 16)}`,
      );
    }
  }
}
