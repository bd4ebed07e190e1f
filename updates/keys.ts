// The fleet's signing keys on the workstation, in $XDG_CONFIG_HOME/rtr7/keys/
// (~/.config without an absolute XDG_CONFIG_HOME):
//   signing.key            the current secret key (PKCS#8 PEM, 0600; the directory 0700)
//   signing.pub            its public key in minisign's format (what `minisign -V -p` takes)
//   rotations/NNNN-ID.pub  each key after the first, with ID.pub.minisig: the
//                          statement, signed by the key it replaced, that
//                          introduces it (`minisign -V -m NNNN-ID.pub -p OLD.pub`)
//   retired/ID.key, .pub   keys a rotation replaced, kept so old signatures can be checked
// `rtr7 keys init` makes the first key and never overwrites one; `rotate`
// makes the next, and its statement, before the new key takes the old one's
// place: a crash in between leaves rotating.key beside a statement that
// names it, which the next load completes. `rtr7 image build` and
// safe-update sign with the current key; safe-update sends the rotation
// statements to a unit that trusts an older key, in order.
import { chmod, link, mkdir, readdir, readFile, rename, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { syncDirectory, writeFileAtomically } from "../lib/atomic-file.js";
import { Rtr7Error, describeError } from "../lib/errors.js";
import {
  formatPublicKey,
  formatSecretKey,
  generateSigningKey,
  parsePublicKey,
  parseSecretKey,
  type PublicKey,
  type SigningKey,
} from "../lib/trust/minisign.js";
import {
  manifestSignatureFile,
  signManifest,
  signRotation,
  type RotationStatement,
} from "../lib/trust/release-signature.js";

/** $XDG_CONFIG_HOME/rtr7/keys. */
export function keysDir(env: NodeJS.ProcessEnv = process.env, home = os.homedir()): string {
  const xdg = env.XDG_CONFIG_HOME;
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(home, ".config");
  return path.join(base, "rtr7", "keys");
}

const files = (dir: string) => ({
  key: path.join(dir, "signing.key"),
  pub: path.join(dir, "signing.pub"),
  rotating: path.join(dir, "rotating.key"),
  rotations: path.join(dir, "rotations"),
  retired: path.join(dir, "retired"),
});

async function readIfThere(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new Rtr7Error("RTR7_ERR_KEY", `read ${file}: ${describeError(error)}`, { cause: error });
  }
}

async function writeKeyPair(dir: string, key: SigningKey, keyFile: string, pubFile: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  await writeFileAtomically(pubFile, formatPublicKey(key.publicKey), { mode: 0o644 });
  await writeFileAtomically(
    keyFile,
    formatSecretKey(key, `rtr7 fleet signing key ${key.publicKey.keyId}: keep it secret, keep a backup`),
    { mode: 0o600 },
  );
}

/** Makes the first key; RTR7_ERR_KEY when one is there already. */
export async function initKeys(dir: string): Promise<PublicKey> {
  const paths = files(dir);
  const existing = await loadSigningKey(dir);
  if (existing)
    throw new Rtr7Error(
      "RTR7_ERR_KEY",
      `rtr7 keys init: ${paths.key} already holds key ${existing.publicKey.keyId}; it is never overwritten`,
      {
        hint: "Use it as it is (`rtr7 keys show`), or replace it with `rtr7 keys rotate`, which units follow.",
      },
    );
  const key = generateSigningKey();
  // Linked into place from a temporary name: of two inits at once, only one key wins.
  const staging = path.join(dir, `.init-${process.pid}`);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  await rm(staging, { recursive: true, force: true });
  await writeKeyPair(staging, key, path.join(staging, "signing.key"), path.join(staging, "signing.pub"));
  try {
    await link(path.join(staging, "signing.key"), paths.key);
  } catch (error) {
    await rm(staging, { recursive: true, force: true });
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return initKeys(dir);
    throw error;
  }
  await rename(path.join(staging, "signing.pub"), paths.pub);
  await rm(staging, { recursive: true, force: true });
  await syncDirectory(dir);
  return key.publicKey;
}

/** The rotation statements, oldest first: each introduces the key after the one before. */
export async function rotationStatements(dir: string): Promise<RotationStatement[]> {
  const { rotations } = files(dir);
  let names: string[];
  try {
    names = (await readdir(rotations)).filter((name) => /^\d{4}-[0-9A-F]{16}\.pub$/.test(name)).sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
  const statements: RotationStatement[] = [];
  for (const name of names) {
    const file = path.join(rotations, name);
    const signature = await readIfThere(`${file}.minisig`);
    if (signature === undefined)
      throw new Rtr7Error(
        "RTR7_ERR_KEY",
        `${file} has no ${name}.minisig beside it: the rotation is incomplete`,
      );
    statements.push({ publicKey: await readFile(file, "utf8"), signature });
  }
  return statements;
}

/** The current key, or undefined when there is none; finishes a rotation a crash interrupted. */
export async function loadSigningKey(dir: string): Promise<SigningKey | undefined> {
  const paths = files(dir);
  const rotating = await readIfThere(paths.rotating);
  if (rotating !== undefined) {
    const next = parseSecretKey(rotating, paths.rotating);
    const last = (await rotationStatements(dir)).at(-1);
    if (last && parsePublicKey(last.publicKey, "rotation").keyId === next.publicKey.keyId) {
      await writeFileAtomically(paths.pub, formatPublicKey(next.publicKey), { mode: 0o644 });
      await rename(paths.rotating, paths.key);
      await syncDirectory(dir);
    } else {
      // Made, but never introduced: no unit can know it. Drop it.
      await rm(paths.rotating, { force: true });
    }
  }
  const text = await readIfThere(paths.key);
  return text === undefined ? undefined : parseSecretKey(text, paths.key);
}

/** The current key; RTR7_ERR_KEY when there is none. */
export async function requireSigningKey(dir: string, what: string): Promise<SigningKey> {
  const key = await loadSigningKey(dir);
  if (!key)
    throw new Rtr7Error("RTR7_ERR_KEY", `${what}: there is no signing key in ${dir}`, {
      hint: "Make one with `rtr7 keys init`.",
    });
  return key;
}

export interface KeysState {
  dir: string;
  current: PublicKey;
  publicKeyFile: string;
  /** Keys in the order they were used, the current one last. */
  history: string[];
}

export async function showKeys(dir: string): Promise<KeysState> {
  const key = await requireSigningKey(dir, "rtr7 keys show");
  const rotations = await rotationStatements(dir);
  const introduced = rotations.map((statement) => parsePublicKey(statement.publicKey, "rotation").keyId);
  const retired = (await readdir(files(dir).retired).catch(() => [] as string[]))
    .filter((name) => name.endsWith(".pub"))
    .map((name) => name.slice(0, -4));
  const first = retired.find((id) => !introduced.includes(id));
  const history = [...(first ? [first] : []), ...introduced];
  if (!history.includes(key.publicKey.keyId)) history.push(key.publicKey.keyId);
  return { dir, current: key.publicKey, publicKeyFile: files(dir).pub, history };
}

/**
 * Makes the next key and the statement, signed by the current one, that
 * introduces it; the current key is kept in retired/. Returns both ids.
 */
export async function rotateKeys(
  dir: string,
  now: () => number = Date.now,
): Promise<{ old: PublicKey; next: PublicKey }> {
  const paths = files(dir);
  const old = await requireSigningKey(dir, "rtr7 keys rotate");
  const next = generateSigningKey();
  await writeKeyPair(
    paths.retired,
    old,
    path.join(paths.retired, `${old.publicKey.keyId}.key`),
    path.join(paths.retired, `${old.publicKey.keyId}.pub`),
  );
  await writeFileAtomically(
    paths.rotating,
    formatSecretKey(next, `rtr7 fleet signing key ${next.publicKey.keyId} (being introduced)`),
    { mode: 0o600 },
  );
  const statement = signRotation(next.publicKey, old, now());
  const sequence = (await rotationStatements(dir)).length + 1;
  const base = path.join(paths.rotations, `${String(sequence).padStart(4, "0")}-${next.publicKey.keyId}.pub`);
  await mkdir(paths.rotations, { recursive: true, mode: 0o700 });
  await writeFileAtomically(`${base}.minisig`, statement.signature, { mode: 0o644 });
  await writeFileAtomically(base, statement.publicKey, { mode: 0o644 });
  // The statement is on disk: the new key may now take the old one's place.
  await loadSigningKey(dir);
  return { old: old.publicKey, next: next.publicKey };
}

/**
 * When a release was made, for ordering releases (rollback protection): its
 * manifest's buildTime, so signing an old build later never makes it newer;
 * `now` for a manifest without one.
 */
export function releaseTime(manifestBytes: Buffer, now: () => number = Date.now): number {
  try {
    const buildTime = (JSON.parse(manifestBytes.toString("utf8")) as { buildTime?: unknown }).buildTime;
    const ms = typeof buildTime === "string" ? Date.parse(buildTime) : NaN;
    if (Number.isSafeInteger(ms) && ms > 0) return ms;
  } catch {
    // Not JSON: signManifest names the problem.
  }
  return now();
}

/**
 * Signs DIR/manifest.json into DIR/manifest.json.minisig (atomically, so a
 * hard-linked old signature is replaced, never written through); returns
 * the signature's text. `signedAtMs` defaults to the release's time.
 */
export async function signReleaseDir(
  releaseDir: string,
  key: SigningKey,
  options: { signedAtMs?: number; now?: () => number } = {},
): Promise<string> {
  const manifestFile = path.join(releaseDir, "manifest.json");
  const manifest = await readFile(manifestFile).catch((error: unknown) => {
    throw new Rtr7Error(
      "RTR7_ERR_RELEASE",
      `sign the release in ${releaseDir}: read ${manifestFile}: ${describeError(error)}`,
    );
  });
  const signature = signManifest(manifest, key, options.signedAtMs ?? releaseTime(manifest, options.now));
  await writeFileAtomically(path.join(releaseDir, manifestSignatureFile), signature, { mode: 0o644 });
  return signature;
}

/** The public keys of retired/, whose old signatures a re-sign may keep the time of. */
export async function retiredPublicKeys(dir: string): Promise<PublicKey[]> {
  const retired = files(dir).retired;
  const names = await readdir(retired).catch(() => [] as string[]);
  const keys: PublicKey[] = [];
  for (const name of names.filter((entry) => entry.endsWith(".pub")))
    keys.push(parsePublicKey(await readFile(path.join(retired, name), "utf8"), path.join(retired, name)));
  return keys;
}
