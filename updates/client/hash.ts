// The hashes of gokrazy's update protocol, computed incrementally as an
// upload is sent and printed as the unit prints them (lowercase hex):
// SHA-256, or CRC-32 (IEEE) zero-padded to eight digits.
import { createHash } from "node:crypto";
import { crc32 } from "node:zlib";
import type { UpdateHash } from "../../lib/wire/update-protocol.js";

export interface UpdateHasher {
  update(chunk: Buffer): void;
  hex(): string;
}

export function updateHasher(algorithm: UpdateHash): UpdateHasher {
  if (algorithm === "sha256") {
    const hash = createHash("sha256");
    let digest: string | undefined;
    return { update: (chunk) => hash.update(chunk), hex: () => (digest ??= hash.digest("hex")) };
  }
  let value = 0;
  return {
    update: (chunk) => (value = crc32(chunk, value)),
    hex: () => value.toString(16).padStart(8, "0"),
  };
}
