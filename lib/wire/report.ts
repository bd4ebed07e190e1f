// What the unit reports to the recovery server during a recovery: progress,
// success and failure. recovery-init sends these; server/http checks them
// against the same JSON schemas. Each carries the per-run session token as
// `Authorization: Bearer <token>`. The same token fetches the update API's
// password (GET /credentials), which recovery-init writes to
// /perm/gokr-pw.txt: it never travels on the kernel command line or TFTP.

export interface ProgressReport {
  /** A short step name: "dhcp", "partition", "write", "perm", "restore", ... */
  step: string;
  message?: string;
  /** While writing an image: its name and the bytes done out of total. */
  image?: string;
  bytesDone?: number;
  bytesTotal?: number;
}

export interface SuccessReport {
  message?: string;
  /** The SHA-256 fingerprint of the unit's TLS certificate (/perm/rtr7/tls), for the workstation to pin. */
  tlsFingerprint?: string;
}

export interface FailureReport {
  step: string;
  message: string;
}

const text = (maxLength: number) => ({ type: "string", maxLength }) as const;
const count = { type: "integer", minimum: 0, maximum: Number.MAX_SAFE_INTEGER } as const;

export const progressReportSchema = {
  type: "object",
  required: ["step"],
  additionalProperties: false,
  properties: {
    step: text(64),
    message: text(4096),
    image: text(64),
    bytesDone: count,
    bytesTotal: count,
  },
} as const;

export const successReportSchema = {
  type: "object",
  additionalProperties: false,
  properties: {
    message: text(4096),
    tlsFingerprint: { type: "string", pattern: "^([0-9A-F]{2}:){31}[0-9A-F]{2}$" },
  },
} as const;

export const failureReportSchema = {
  type: "object",
  required: ["step", "message"],
  additionalProperties: false,
  properties: { step: text(64), message: text(4096) },
} as const;

/** Where the unit fetches the update API's password, with the session token. */
export const credentialsPath = "/credentials";

/** GET /credentials's JSON body. */
export interface CredentialsReply {
  password: string;
}

/** Kernel command-line parameters that tell the unit where its server is. */
export { recoveryCmdlineKeys as cmdlineKeys } from "./kernel-cmdline.js";
