// The two hashes a disk write is checked with, as gokrazy's update protocol
// names and formats them: SHA-256, or CRC-32 (IEEE) when a client sends
// `X-Gokrazy-Update-Hash: crc32`, both as lowercase hex. CRC-32 is the 8
// digits of its big-endian bytes, which is Go's
// `fmt.Sprintf("%x", crc32.NewIEEE().Sum(nil))`, what gokrazy's updater
// hex-decodes and compares. Shared by the update API's replies and the
// verified writer's read-back checks.
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import type { UpdateHash } from "../wire/update-protocol.js";

export type HashAlgorithm = UpdateHash;

export interface StreamHash {
  update(chunk: Uint8Array): void;
  /** Lowercase hex of what was fed so far: 64 digits for SHA-256, 8 for CRC-32. The hash goes on. */
  hex(): string;
}

export function createStreamHash(algorithm: HashAlgorithm): StreamHash {
  if (algorithm === "sha256") {
    const hash = createHash("sha256");
    return { update: (chunk) => void hash.update(chunk), hex: () => hash.copy().digest("hex") };
  }
  let value = 0;
  return {
    update: (chunk) => {
      value = crc32(chunk, value);
    },
    hex: () => value.toString(16).padStart(8, "0"),
  };
}
