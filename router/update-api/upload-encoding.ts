// An upload's Content-Encoding: gokrazy's clients send images as they are;
// rtr7's client gzips a boot image for a unit that lists the `gzip` feature
// (lib/wire/update-protocol.ts). The body is inflated on its way to the
// target, so size limits and the reply's hash apply to the image itself.
import type { IncomingMessage } from "node:http";
import { pipeline, type Readable } from "node:stream";
import { createGunzip } from "node:zlib";
import { Rtr7Error } from "../../lib/errors.js";
import { quoteInput } from "../../lib/quote.js";

/** An upload's Content-Encoding: none (identity) or gzip; anything else is refused before a byte is read. */
export function uploadEncoding(value: string | string[] | undefined, url: string): "identity" | "gzip" {
  const encoding = (Array.isArray(value) ? value.join(",") : (value ?? "")).trim().toLowerCase();
  if (encoding === "" || encoding === "identity") return "identity";
  if (encoding === "gzip" || encoding === "x-gzip") return "gzip";
  throw new Rtr7Error(
    "RTR7_ERR_UPDATE_REQUEST",
    `PUT ${url}: Content-Encoding ${quoteInput(encoding)} is not supported; send the image as it is, or gzip'd`,
    { hint: "Send the image without Content-Encoding, or compressed with gzip (Content-Encoding: gzip)." },
  );
}

/**
 * The body inflated. A body that breaks off, or whose gzip stream ends
 * early, ends this stream with an error, which the upload reports as
 * truncated; the image's size limit applies to the inflated bytes.
 */
export function gunzipped(raw: IncomingMessage): Readable {
  const inflate = createGunzip();
  pipeline(raw, inflate, () => undefined);
  raw.on("aborted", () => inflate.destroy(new Error("the request was aborted")));
  return inflate;
}
