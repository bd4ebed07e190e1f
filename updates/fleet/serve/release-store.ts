// The remote fleet server's release store: signed releases under
// DATA/releases/VERSION/ (mbr.img, boot.img, root.img, manifest.json,
// manifest.json.minisig), which units download over HTTPS with Range
// (release-routes.ts). A release arrives one file at a time into a staging
// directory of its own (DATA/releases/.staging/VERSION/) and is published
// by one rename once it is whole: every image matches the manifest
// (updates/release.ts's loadRelease), the manifest is signed, and the
// signature is by a key the server trusts (DATA/trusted-keys/*.pub, the
// fleet's public keys). An unsigned or foreign-signed release is refused
// here, at publish time: every unit that trusts a key would reject it
// anyway, and the person publishing hears it now instead of from a
// rollout's REJECTED jobs. A reader never sees half a release; a crash
// leaves at most a staging directory, which the next upload replaces.
// Bytes served are counted per file, so a test can tell a resumed download
// from one that started over.
import { createWriteStream } from "node:fs";
import { mkdir, readFile, readdir, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import type { Readable } from "node:stream";
import { Rtr7Error, describeError } from "../../../lib/errors.js";
import type { PublicKey } from "../../../lib/trust/minisign.js";
import { manifestSignatureFile, verifyManifest } from "../../../lib/trust/release-signature.js";
import { imageNames } from "../../../lib/wire/images.js";
import { syncDirectory } from "../../../lib/atomic-file.js";
import { loadRelease } from "../../release.js";

/** The files of a release, and the only names the store takes or serves. */
export const releaseFileNames: readonly string[] = [...imageNames, "manifest.json", manifestSignatureFile];

const versionPattern = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$/;

/** A release version fit for a directory name and a URL; RTR7_ERR_RELEASE when not. */
export function checkedVersion(version: string): string {
  if (!versionPattern.test(version))
    throw new Rtr7Error(
      "RTR7_ERR_RELEASE",
      `release version ${JSON.stringify(version.slice(0, 80))}: want 1 to 64 of A-Z a-z 0-9 . _ + -`,
    );
  return version;
}

function checkedFileName(name: string): string {
  if (!releaseFileNames.includes(name))
    throw new Rtr7Error(
      "RTR7_ERR_HTTP_NOT_FOUND",
      `${JSON.stringify(name.slice(0, 80))} is not a release file (${releaseFileNames.join(", ")})`,
    );
  return name;
}

export interface PublishedRelease {
  version: string;
  keyId: string;
  anyUnit: boolean;
  hostname: string | undefined;
  files: { name: string; size: number }[];
}

export interface ReleaseStoreOptions {
  /** The server's data directory: releases go in DATA/releases. */
  dataDir: string;
  /** The keys a release must be signed by (at least one, or nothing can be published). */
  trustedKeys: () => readonly PublicKey[];
}

export class ReleaseStore {
  readonly dir: string;
  private readonly staging: string;
  private readonly served = new Map<string, number>();

  constructor(private readonly options: ReleaseStoreOptions) {
    this.dir = path.join(options.dataDir, "releases");
    this.staging = path.join(this.dir, ".staging");
  }

  releaseDir(version: string): string {
    return path.join(this.dir, checkedVersion(version));
  }

  /** Where a published release's file is; RTR7_ERR_HTTP_NOT_FOUND for a name that is not one. */
  filePath(version: string, name: string): string {
    return path.join(this.releaseDir(version), checkedFileName(name));
  }

  /** Writes one file of a release being uploaded into its staging directory. */
  async stageFile(version: string, name: string, body: Readable): Promise<number> {
    const dir = path.join(this.staging, checkedVersion(version));
    checkedFileName(name);
    await this.refuseExisting(version);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const partial = path.join(dir, `.${name}.partial`);
    await pipeline(body, createWriteStream(partial, { mode: 0o644 }));
    await rename(partial, path.join(dir, name));
    return (await stat(path.join(dir, name))).size;
  }

  private async refuseExisting(version: string): Promise<void> {
    const exists = await stat(this.releaseDir(version)).then(
      () => true,
      () => false,
    );
    if (exists)
      throw new Rtr7Error("RTR7_ERR_RELEASE_EXISTS", `release ${version} is already published`, {
        hint: "A published release never changes (units may be downloading it): give the new build a new version.",
      });
  }

  /**
   * Checks the staged release (images against the manifest, the manifest's
   * signature against the trusted keys, the version it names) and publishes
   * it with one rename; on any failure the staging directory is removed.
   */
  async commit(version: string): Promise<PublishedRelease> {
    const dir = path.join(this.staging, checkedVersion(version));
    try {
      await this.refuseExisting(version);
      const release = await loadRelease(dir);
      const signature = await readFile(path.join(dir, manifestSignatureFile), "utf8").catch(() => {
        throw new Rtr7Error(
          "RTR7_ERR_SIGNATURE",
          `release ${version} is not signed (no ${manifestSignatureFile}): every unit that trusts a key would reject it`,
          { hint: "Sign it with the fleet's key (`rtr7 keys sign DIR`) and publish it again." },
        );
      });
      const keys = this.options.trustedKeys();
      if (keys.length === 0)
        throw new Rtr7Error(
          "RTR7_ERR_SIGNATURE",
          `release ${version}: the server trusts no key to check it with`,
          {
            hint: "Put the fleet's public key (`rtr7 keys show`, signing.pub) into DATA/trusted-keys/ and publish again.",
          },
        );
      const manifestBytes = await readFile(path.join(dir, "manifest.json"));
      const verified = verifyManifest(manifestBytes, signature, keys, `release ${version}'s manifest.json`);
      if (verified.version !== version)
        throw new Rtr7Error(
          "RTR7_ERR_RELEASE",
          `the release uploaded as ${version} is signed as ${verified.version}: publish it under its own version`,
        );
      await rename(dir, this.releaseDir(version));
      await syncDirectory(this.dir);
      return {
        version,
        keyId: verified.keyId,
        anyUnit: release.anyUnit,
        hostname: release.hostname,
        files: await this.files(version),
      };
    } catch (error) {
      await rm(dir, { recursive: true, force: true });
      if (error instanceof Rtr7Error) throw error;
      throw new Rtr7Error("RTR7_ERR_RELEASE", `publish release ${version}: ${describeError(error)}`, {
        cause: error,
      });
    }
  }

  /** Publishes a release directory on this machine (the files copied through staging, then checked). */
  async publishDirectory(source: string, version: string): Promise<PublishedRelease> {
    const { createReadStream } = await import("node:fs");
    await rm(path.join(this.staging, checkedVersion(version)), { recursive: true, force: true });
    for (const name of releaseFileNames) {
      const file = path.join(source, name);
      const there = await stat(file).then(
        () => true,
        () => false,
      );
      if (there) await this.stageFile(version, name, createReadStream(file));
    }
    return this.commit(version);
  }

  private async files(version: string): Promise<{ name: string; size: number }[]> {
    const dir = this.releaseDir(version);
    const found: { name: string; size: number }[] = [];
    for (const name of releaseFileNames) {
      const info = await stat(path.join(dir, name)).catch(() => undefined);
      if (info) found.push({ name, size: info.size });
    }
    return found;
  }

  /** The published versions, sorted. */
  async versions(): Promise<string[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    return names.filter((name) => versionPattern.test(name)).sort();
  }

  /** Counts bytes sent of a release file (whole or a range, or as far as a cut connection got). */
  noteServed(version: string, name: string, bytes: number): void {
    const key = `${version}/${name}`;
    this.served.set(key, (this.served.get(key) ?? 0) + bytes);
  }

  /** Bytes of VERSION/NAME served since the server started. */
  bytesServed(version: string, name: string): number {
    return this.served.get(`${version}/${name}`) ?? 0;
  }
}
