// The update API's password, provisioned by the recovery: fetched from the
// recovery server over HTTP with the run's session token (GET /credentials;
// never on the kernel command line or over TFTP, and never printed), then
// written to /perm/gokr-pw.txt, 0600 and atomically (lib/atomic-file.ts),
// after the backup is restored so a restored old password does not win. The
// workstation keeps the same password in its gokrazy http-password.txt, so
// nobody has to read it off the unit's console.
import { writeFileAtomically } from "../lib/atomic-file.js";
import { credentialsPath, type CredentialsReply } from "../lib/wire/report.js";

/** Where gokrazy (and the unit's update API) keep the password on /perm. */
export const passwordFile = "gokr-pw.txt";

/**
 * The password the server hands out, or undefined when it offers none (404:
 * a server from before provisioning; /perm then keeps its own).
 */
export async function fetchUnitPassword(options: {
  baseUrl: string;
  token: string;
  fetch?: typeof fetch;
}): Promise<string | undefined> {
  const url = `${options.baseUrl}${credentialsPath}`;
  const response = await (options.fetch ?? fetch)(url, {
    headers: { authorization: `Bearer ${options.token}` },
    signal: AbortSignal.timeout(30_000),
  });
  if (response.status === 404) {
    await response.arrayBuffer();
    return undefined;
  }
  if (response.status !== 200) {
    const text = await response.text().catch(() => "");
    throw new Error(`GET ${credentialsPath}: HTTP ${response.status} ${text.slice(0, 200)}`);
  }
  const body = (await response.json()) as Partial<CredentialsReply> | null;
  const password = body?.password;
  // The unit trims whitespace around the file's content, and a line break would end it.
  if (
    typeof password !== "string" ||
    password.trim() === "" ||
    password !== password.trim() ||
    /[\r\n]/.test(password)
  )
    throw new Error(`GET ${credentialsPath}: the reply holds no usable password`);
  return password;
}

/** Writes /perm/gokr-pw.txt (mode 0600), replacing whatever the backup held. */
export async function writeUnitPassword(perm: string, password: string): Promise<void> {
  await writeFileAtomically(`${perm}/${passwordFile}`, `${password}\n`, { mode: 0o600 });
}
