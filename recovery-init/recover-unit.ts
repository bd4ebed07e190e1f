// The steps of a recovery on the unit, in order: network, disk, manifest,
// partition table, images (each verified on disk), boot.img's syslinux.cfg
// pointed at this disk (a fleet release names none), /perm (made only if it
// holds no file system: existing data is never formatted away), the backup,
// interfaces.json, /perm/hostname, the update API's password fetched with
// the session token, the trusted keys, then success. Between the manifest
// and the partition table, step "verify" reads the keys the disk's existing
// /perm trusts (read-only) and refuses a release they did not sign
// (trust.ts says why it is done there). Each step reports progress; the first
// failure stops everything with the step's name, and nothing after it runs,
// so a half-written disk is never rebooted into.
import { access, open } from "node:fs/promises";
import { Readable } from "node:stream";
import { parseManifest, type ManifestImage } from "../lib/wire/manifest.js";
import type { RecoveryParameters } from "./cmdline.js";
import type { Reporter } from "./reporter.js";
import type { Lease, UnitSystem } from "./system.js";
import { writeImage, type ImageTarget } from "./write-image.js";
import { mountPerm, writeInterfacesJson, writeUnitHostname } from "./perm.js";
import { fitBootConfigToDisk } from "./boot-config.js";
import { fetchUnitPassword, passwordFile, writeUnitPassword } from "./credentials.js";
import {
  decideTrust,
  fetchRelease,
  fetchServedKeys,
  readPreviousKeys,
  refusalError,
  writeKeys,
} from "./trust.js";
import { fsDisk } from "../lib/disk/device.js";
import { chooseDisk } from "./disk/choose.js";
import {
  diskIdentifier,
  mbrBootCodeBytes,
  partitionDevice,
  partitionNumbers,
  partitionTableBytes,
  partitionTableLength,
  partitionTableOffset,
  planLayout,
  minimumDiskBytes,
} from "../lib/wire/disk-layout.js";
import { restoreBackup } from "./backup/restore.js";
import { ensureUnitCertificate } from "../lib/tls/unit-certificate.js";
import { imageFiles } from "../lib/wire/images.js";
import { installedRelease, recordInstalledRelease } from "../lib/trust/installed-release.js";
import { readTrustedKeys } from "../lib/trust/trusted-keys.js";

export class StepError extends Error {
  constructor(
    readonly step: string,
    cause: unknown,
  ) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
  }
}

export interface RecoverUnitOptions {
  parameters: RecoveryParameters;
  /** The unit's DHCP lease, for interfaces.json. */
  lease: Lease;
  system: UnitSystem;
  reporter: Reporter;
  /** /etc/rtr7/modules in the initramfs: module files in load order. */
  modulesList?: string;
  sysBlock?: string;
  permDirectory?: string;
  /** Where the disk's existing /perm is mounted read-only to read its trusted keys. */
  previousPermDirectory?: string;
  say?: (line: string) => void;
  fetch?: typeof fetch;
}

/** What the unit reports with its success: its TLS certificate's fingerprint, for the workstation to pin. */
export interface RecoveredUnit {
  tlsFingerprint: string | undefined;
}

export async function recoverUnit(options: RecoverUnitOptions): Promise<RecoveredUnit> {
  const { parameters, system, reporter } = options;
  const say = options.say ?? ((line: string) => console.log(`rtr7-recovery: ${line}`));
  const doFetch = options.fetch ?? fetch;
  const perm = options.permDirectory ?? "/perm";
  const base = `http://${parameters.server}:${parameters.port}`;
  let step = "start";
  let tlsFingerprint: string | undefined;
  const begin = async (name: string, message: string): Promise<void> => {
    step = name;
    say(message);
    await reporter.progress({ step: name, message });
  };

  try {
    await begin("disk", "choosing the disk");
    const layoutFloor = minimumDiskBytes();
    const disk = await chooseDisk({
      ...(options.sysBlock ? { sysBlock: options.sysBlock } : {}),
      ...(parameters.disk ? { explicit: parameters.disk } : {}),
      minimumBytes: layoutFloor,
    });
    const layout = planLayout(disk.bytes, disk.sectorSize);
    await begin(
      "manifest",
      `disk ${disk.device} (${Math.round(disk.bytes / 2 ** 20)} MiB); fetching the manifest`,
    );
    const release = await fetchRelease(base, doFetch);
    const manifest = parseManifest(JSON.parse(release.bytes.toString("utf8")));
    const image = (name: string): ManifestImage => {
      const entry = manifest.images.find((candidate) => candidate.name === name);
      if (!entry) throw new Error(`manifest.json lists no ${name}`);
      return entry;
    };
    const images = { mbr: image(imageFiles.mbr), boot: image(imageFiles.boot), root: image(imageFiles.root) };

    await begin("verify", "reading the keys the unit trusts");
    const served = await fetchServedKeys({ baseUrl: base, token: parameters.token, fetch: doFetch });
    const previousKeys = served.replace
      ? []
      : await readPreviousKeys({
          system,
          disk: disk.device,
          mountPoint: options.previousPermDirectory ?? "/tmp/rtr7-previous-perm",
          say,
        });
    const trust = decideTrust({
      previousKeys,
      manifestBytes: release.bytes,
      signature: release.signature,
      servedKeys: served.keys,
      replace: served.replace,
      hostname: parameters.hostname,
    });
    if (trust.verdict === "refuse") throw refusalError(trust);
    if (served.replace)
      say("--new-key: the unit's trusted keys are replaced, the release is not checked against them");
    else if (trust.checked !== undefined) say(`verified: ${trust.checked}`);

    await begin("partition", `writing the partition table of ${disk.device}`);
    const device = await open(disk.device, "r+");
    try {
      await device.write(
        partitionTableBytes(layout, diskIdentifier(parameters.hostname)),
        0,
        partitionTableLength,
        partitionTableOffset,
      );
      await device.sync();
    } finally {
      await device.close();
    }
    await system.rereadPartitions(disk.device);
    await waitForDevices(
      Object.values(partitionNumbers).map((n) => partitionDevice(disk.device, n)),
      10_000,
    );

    step = "write";
    const [bootPartition, rootPartition] = [layout.partitions[0], layout.partitions[1]];
    if (!bootPartition || !rootPartition) throw new Error("layout without boot and root partitions");
    const targets: [ManifestImage, ImageTarget][] = [
      [
        images.mbr,
        { path: disk.device, offset: 0, capacity: mbrBootCodeBytes, writeLimit: mbrBootCodeBytes },
      ],
      [
        images.boot,
        { path: disk.device, offset: bootPartition.byteOffset, capacity: bootPartition.byteSize },
      ],
      [
        images.root,
        { path: disk.device, offset: rootPartition.byteOffset, capacity: rootPartition.byteSize },
      ],
    ];
    for (const [expected, target] of targets) {
      await begin("write", `writing ${expected.name} (${expected.size} bytes)`);
      let lastReport = 0;
      await writeImage({
        url: `${base}/${expected.name}`,
        expected,
        target,
        fetch: doFetch,
        dropCaches: () => system.dropCaches(),
        onProgress: (bytesDone, bytesTotal) => {
          const now = Date.now();
          if (now - lastReport < 500 && bytesDone < bytesTotal) return;
          lastReport = now;
          void reporter.progress({ step: "write", image: expected.name, bytesDone, bytesTotal });
        },
      });
      say(`${expected.name}: written and verified on disk`);
    }
    await begin("boot-config", "pointing syslinux.cfg at this disk's root slots");
    await fitBootConfigToDisk({
      disk: disk.device,
      partitionOffset: bootPartition.byteOffset,
      diskId: diskIdentifier(parameters.hostname),
      device: fsDisk({ dropCaches: () => system.dropCaches() }),
      say,
    });

    await begin("perm", "mounting /perm");
    const permDevice = partitionDevice(disk.device, partitionNumbers.perm);
    await mountPerm(system, permDevice, perm, say);

    await begin("restore", "restoring the backup of /perm");
    const backup = await doFetch(`${base}/backup.tar.gz`);
    if (backup.status === 404) {
      await backup.arrayBuffer();
      say("no backup offered: /perm keeps what it has");
    } else if (backup.status !== 200 || !backup.body) {
      throw new Error(`GET /backup.tar.gz: HTTP ${backup.status}`);
    } else {
      const restored = await restoreBackup({
        source: Readable.fromWeb(backup.body),
        target: perm,
      });
      say(`restored ${restored.files} files, ${restored.directories} directories (${restored.bytes} bytes)`);
    }
    await writeInterfacesJson(perm, options.lease, say);
    await writeUnitHostname(perm, parameters.hostname);
    say(`wrote ${perm}/hostname (${parameters.hostname})`);
    // After the restore: a pair the backup brought (or /perm kept) is the unit's and stays.
    const tls = await ensureUnitCertificate(perm, parameters.hostname);
    say(`${tls.created ? "made" : "kept"} the TLS certificate, SHA-256 ${tls.fingerprint256}`);
    tlsFingerprint = tls.fingerprint256;

    // After the restore, so a password in the backup does not win over the workstation's.
    await begin("credentials", "fetching the update API password");
    const password = await fetchUnitPassword({ baseUrl: base, token: parameters.token, fetch: doFetch });
    if (password === undefined) {
      say(`the server offers no password: ${perm}/${passwordFile} stays as it is`);
    } else {
      await writeUnitPassword(perm, password);
      say(`wrote ${perm}/${passwordFile} (the workstation's password for ${parameters.hostname})`);
    }

    // After the restore, so keys the backup brought count as the unit's own.
    await begin("trusted-keys", "installing the keys the unit trusts");
    say(await writeKeys(perm, trust.plan));
    // What slot a now holds, signed by a key the unit trusts or not: what a
    // rollback may switch back to, and what rollback protection compares with.
    const installed = installedRelease(
      release.bytes,
      release.signature,
      [...previousKeys, ...(await readTrustedKeys(perm)).keys],
      new Date(),
    );
    await recordInstalledRelease(perm, "a", installed);
    say(
      `slot a holds release ${installed.version || "(no version in the manifest)"}${installed.keyId ? `, signed by key ${installed.keyId}` : ", unsigned"}`,
    );

    await begin("finish", "syncing and unmounting /perm");
    await system.sync();
    await system.unmount(perm);
  } catch (error) {
    throw error instanceof StepError ? error : new StepError(step, error);
  }
  return { tlsFingerprint };
}

async function waitForDevices(paths: string[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const path of paths) {
    for (;;) {
      try {
        await access(path);
        break;
      } catch {
        if (Date.now() > deadline) throw new Error(`${path} did not appear within ${timeoutMs / 1000} s`);
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  }
}
