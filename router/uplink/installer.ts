// What the uplink's job runner (job-runner.ts) asks of the unit, as an
// interface: the boot state, health, /perm's backup, and the install steps
// (hand over the verified manifest, stream each image into the inactive
// slot, testboot, reboot, commit, roll back). The runner decides; the
// installer only does, so the state machine is tested with a fake that
// records calls (test/unit/uplink.test.ts) and no slot is touched. The real
// one (update-api-installer.ts) goes through the unit's own update API, so
// its signed-release gate checks the manifest and every image a second time.
import type { Readable } from "node:stream";
import type { ManifestImage } from "../../lib/wire/manifest.js";
import type { Slot } from "../unit.js";

export interface BootState {
  /** The running image's version. */
  version: string;
  slot: Slot;
  /** True while the running slot is on trial (testboot, not yet committed). */
  trial: boolean;
  /** The slot the boot loader's default names. */
  committedSlot: Slot;
  uptimeSeconds: number;
}

/** Where one image's bytes go: written in order, once, as one continuous stream. */
export interface ImageSink {
  write(chunk: Buffer): Promise<void>;
  /** All bytes were written (and their SHA-256 matched the manifest's): complete the image. */
  finish(): Promise<void>;
  /** The download failed: leave the target marked incomplete. */
  abort(reason: string): Promise<void>;
}

export interface SignedRelease {
  /** manifest.json's text, exactly as fetched and verified. */
  manifest: string;
  /** manifest.json.minisig's text. */
  signature: string;
  allowDowngrade: boolean;
}

export interface Installer {
  bootState(): Promise<BootState>;
  /** diagd's first_error: "" when healthy. */
  health(): Promise<string>;
  /** /perm's backup (a gzip'd tar), streamed. */
  backup(): Promise<Readable>;
  /** The verified manifest, for the inactive slot (the unit's gate checks it again): the first write. */
  acceptManifest(release: SignedRelease): Promise<void>;
  openImage(image: ManifestImage): Promise<ImageSink>;
  /** The next reboot runs the inactive slot once, on trial, with this commit deadline. */
  testboot(deadlineMs: number): Promise<void>;
  /** Reboots (kexec) into the trial; resolves once the reboot is under way. */
  reboot(): Promise<void>;
  /** The running trial slot becomes the default. */
  commit(): Promise<void>;
  /** Reboots into the committed slot now (a trial that failed its health gate). */
  rollback(): Promise<void>;
}
