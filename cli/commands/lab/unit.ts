// `rtr7 lab unit`: a virtual unit as ordinary processes. The work is in
// lab/unit.ts (the firmware and boot loader) and router/ (the suite it runs).
import { Flags } from "@oclif/core";
import { Rtr7Command } from "../../base.js";
import { hostnameFlag } from "../../flags.js";

export default class LabUnit extends Rtr7Command {
  static override summary = "Run a virtual unit as processes: the suite of the slot it boots, on ADDR.";

  static override description = `The unit's disk is files under --dir: boot.img, root-a.img, root-b.img and perm/.
A new directory is first filled from the images of \`rtr7 image build\` (--image-dir), checked
against their manifest as a recovery would. The unit then runs the code found in the root
image of the slot its boot configuration names, with the update API on ADDR:80, diagd on
ADDR:7733 and backupd on ADDR:8077. A reboot through the update API starts the suite again on
the slot the boot state names (testboot runs the other slot once; commit makes it stay).
A new directory's unit trusts the workstation's signing key (\`rtr7 keys init\`), as a recovered
unit does, and then takes only signed updates.
Stop it with Ctrl-C.`;

  static override examples = [
    {
      description: "Build images, then run a unit from them on 127.0.0.2:",
      command:
        "<%= config.bin %> image build --out /tmp/img --hostname lab1\n<%= config.bin %> lab unit --dir /tmp/lab1 --hostname lab1 --address 127.0.0.2 --image-dir /tmp/img",
    },
    {
      description: "Start the same unit again later (its slots and /perm are kept):",
      command: "<%= config.bin %> lab unit --dir /tmp/lab1 --hostname lab1 --address 127.0.0.2",
    },
  ];

  static override flags = {
    dir: Flags.string({ description: "The unit's directory (its disk).", required: true, helpValue: "DIR" }),
    hostname: hostnameFlag(),
    address: Flags.string({
      description: "Address the unit's services listen on.",
      default: "127.0.0.1",
      helpValue: "ADDR",
    }),
    "image-dir": Flags.string({
      description: "Images to fill a new --dir from (mbr.img, boot.img, root.img, manifest.json).",
      helpValue: "IMAGES",
    }),
    "trust-key": Flags.file({
      description:
        "A minisign public key file a new --dir's unit trusts (repeatable) [default: this workstation's signing.pub, once `rtr7 keys init` made it, as `rtr7 recover` installs it].",
      multiple: true,
      exists: true,
      helpValue: "KEY.pub",
    }),
  };

  async run(): Promise<void> {
    const { flags } = await this.parse(LabUnit);
    const log = this.makeLogger(flags);
    const { startLabUnit } = await import("../../../lab/unit.js");
    const { readFile } = await import("node:fs/promises");
    const { keysDir } = await import("../../../updates/keys.js");
    const keyFiles = flags["trust-key"] ?? [`${keysDir()}/signing.pub`];
    const trustKeys: string[] = [];
    for (const file of keyFiles)
      try {
        trustKeys.push(await readFile(file, "utf8"));
      } catch (error) {
        // The default key file is only there once `rtr7 keys init` ran.
        if (flags["trust-key"] || (error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
      }
    const unit = await startLabUnit({
      dir: flags.dir,
      hostname: flags.hostname,
      address: flags.address,
      imageDir: flags["image-dir"],
      trustKeys,
      log,
    });
    const stop = (): void => void unit.stop();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    await unit.done;
  }
}
