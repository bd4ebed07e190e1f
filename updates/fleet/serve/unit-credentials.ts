// The units' MQTT credentials, kept by `rtr7 fleet serve` (issue 15): each
// unit logs in to the broker with its hostname and a password of its own,
// which `enrollUnit` makes and hands out once (rtr7 fleet enroll writes it
// into the unit's /perm/rtr7/uplink.json). The server keeps no password,
// only hashes, in SQLite beside its other state (DATA/serve.sqlite):
//   - an scrypt hash (random salt, the cost stored with it) that the
//     embedded broker checks, in constant time, off the event loop;
//   - mosquitto's own `$7$` PBKDF2-SHA512 hash of the same password, made
//     at enrollment because it can be made only from the password itself,
//     so that `writeMosquittoConfig` can give an external broker its
//     password file later (mosquitto-config.ts).
// The passwords are 24 random URL-safe characters (144 bits): no guessing
// or dictionary reaches them, so the hashes' slowness is defence in depth
// and is kept modest (scrypt N=2^14: about 60 ms here; mosquitto's hash at
// 1,000 rounds, since mosquitto checks it on its one thread at each
// connect). The first login of each unit after a server start pays the
// scrypt; a login that matched is remembered in memory (a keyed digest,
// never the password), so a broker's reconnect storm costs little.
//
// The server's own user (`rtr7-server`, which may do everything on the
// broker) has a password too, made once into DATA/server-credential.json
// (0600): the server needs it in clear to log in to an external broker. The
// names `rtr7-server` and `rtr7-server-*` are reserved: no unit is enrolled
// under them, so no unit can pass for the server or take its session.
//
// The file may hold other components' tables (the job store's); this one
// keeps its schema version in a row of its own (`schema_versions`), not in
// SQLite's user_version, which another component may own.
import { createHmac, pbkdf2Sync, randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import { mkdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import path from "node:path";
import Database from "better-sqlite3";
import { writeFileAtomically } from "../../../lib/atomic-file.js";
import { Rtr7Error, describeError } from "../../../lib/errors.js";
import { checkedHostname } from "../../../lib/wire/names.js";

/** The broker user of `rtr7 fleet serve` itself. */
export const serverUsername = "rtr7-server";

/** Whether `name` is reserved for the server (its user name, and its MQTT client ids). */
export function isServerName(name: string): boolean {
  return name === serverUsername || name.startsWith(`${serverUsername}-`);
}

export interface ServerCredential {
  username: typeof serverUsername;
  password: string;
}

export interface EnrolledUnit {
  hostname: string;
  createdAt: string;
}

/** A unit's row as an external broker's password file needs it. */
export interface MosquittoHashedUser {
  username: string;
  /** `$7$ROUNDS$SALT$HASH`, base64, as mosquitto_passwd writes it. */
  mosquittoHash: string;
}

export interface UnitCredentialsOptions {
  /** Default: server-credential.json beside the database. */
  serverCredentialFile?: string;
  /** scrypt's cost for new hashes (a power of two); default 2^14. Existing rows keep theirs. */
  scryptCost?: number;
}

const schemaComponent = "unit_credentials";
const schemaVersion = 1;

const schema = `
CREATE TABLE IF NOT EXISTS schema_versions (
  component TEXT PRIMARY KEY,
  version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS unit_credentials (
  hostname TEXT PRIMARY KEY,
  password_hash TEXT NOT NULL,
  mosquitto_hash TEXT NOT NULL,
  created_at TEXT NOT NULL
);
`;

const passwordLength = 24;
const scryptKeyLength = 32;
const scryptBlockSize = 8;
const defaultScryptCost = 1 << 14;
const mosquittoRounds = 1000;

/** A new password: `passwordLength` characters of base64url (6 random bits each). */
export function newPassword(): string {
  return randomBytes((passwordLength * 3) / 4).toString("base64url");
}

function scryptAsync(password: string, salt: Buffer, cost: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    scrypt(
      password,
      salt,
      scryptKeyLength,
      { N: cost, r: scryptBlockSize, p: 1, maxmem: 256 * cost * scryptBlockSize },
      (error, key) => (error ? reject(error) : resolve(key)),
    );
  });
}

/** `scrypt$N$r$p$SALT$KEY` (base64url). */
async function scryptHash(password: string, cost: number): Promise<string> {
  const salt = randomBytes(16);
  const key = await scryptAsync(password, salt, cost);
  return ["scrypt", cost, scryptBlockSize, 1, salt.toString("base64url"), key.toString("base64url")].join(
    "$",
  );
}

async function scryptMatches(password: string, stored: string): Promise<boolean> {
  const [kind, cost, blockSize, parallel, salt, key] = stored.split("$");
  if (kind !== "scrypt" || blockSize !== String(scryptBlockSize) || parallel !== "1") return false;
  const expected = Buffer.from(key ?? "", "base64url");
  const n = Number(cost);
  if (expected.length !== scryptKeyLength || !Number.isSafeInteger(n) || n < 2) return false;
  const actual = await scryptAsync(password, Buffer.from(salt ?? "", "base64url"), n);
  return timingSafeEqual(actual, expected);
}

/** mosquitto 2.0's password hash: `$7$ROUNDS$base64(salt)$base64(PBKDF2-HMAC-SHA512(password, salt))`. */
export function mosquittoPasswordHash(
  password: string,
  rounds = mosquittoRounds,
  salt = randomBytes(12),
): string {
  const key = pbkdf2Sync(password, salt, rounds, 64, "sha512");
  return `$7$${rounds}$${salt.toString("base64")}$${key.toString("base64")}`;
}

function sameSecret(a: string, b: string): boolean {
  const key = randomBytes(32);
  const digest = (text: string): Buffer => createHmac("sha256", key).update(text).digest();
  return timingSafeEqual(digest(a), digest(b));
}

export class UnitCredentials {
  private readonly db: Database.Database;
  private readonly statements = new Map<string, Database.Statement>();
  private readonly scryptCost: number;
  private readonly serverCredentialFile: string;
  private server: Promise<ServerCredential> | undefined;
  /** Per-process key for `verified`'s digests. */
  private readonly cacheKey = randomBytes(32);
  /** hostname → keyed digest of the password that last logged in. */
  private readonly verified = new Map<string, Buffer>();

  /** Opens (creating if need be) the credentials' table in `databasePath`; RTR7_ERR_FLEET_STATE when it cannot. */
  constructor(
    readonly databasePath: string,
    options: UnitCredentialsOptions = {},
  ) {
    this.serverCredentialFile =
      options.serverCredentialFile ?? path.join(path.dirname(databasePath), "server-credential.json");
    this.scryptCost = options.scryptCost ?? defaultScryptCost;
    if (
      !Number.isSafeInteger(this.scryptCost) ||
      this.scryptCost < 2 ||
      (this.scryptCost & (this.scryptCost - 1)) !== 0
    )
      throw new Rtr7Error("RTR7_ERR_USAGE", `scrypt cost ${this.scryptCost}: want a power of two`);
    try {
      mkdirSync(path.dirname(databasePath), { recursive: true, mode: 0o700 });
      this.db = new Database(databasePath, { timeout: 10_000 });
      this.db.pragma("journal_mode = WAL");
      this.db.pragma("synchronous = NORMAL");
      this.db.exec(schema);
      const row = this.db
        .prepare("SELECT version FROM schema_versions WHERE component = ?")
        .get(schemaComponent) as { version: number } | undefined;
      if (row && row.version > schemaVersion)
        throw new Error(
          `its unit credentials were written by a newer rtr7 (schema ${row.version}; this rtr7 knows ${schemaVersion})`,
        );
      this.db
        .prepare("INSERT OR REPLACE INTO schema_versions (component, version) VALUES (?, ?)")
        .run(schemaComponent, schemaVersion);
    } catch (error) {
      throw new Rtr7Error(
        "RTR7_ERR_FLEET_STATE",
        `open the unit credentials in ${databasePath}: ${describeError(error)}`,
        { cause: error },
      );
    }
  }

  private statement(sql: string): Database.Statement {
    let statement = this.statements.get(sql);
    if (!statement) {
      statement = this.db.prepare(sql);
      this.statements.set(sql, statement);
    }
    return statement;
  }

  private digest(password: string): Buffer {
    return createHmac("sha256", this.cacheKey).update(password).digest();
  }

  /**
   * Enrolls `hostname` (or enrolls it again: the old password stops working)
   * and returns its new password. This is the only time the password is seen:
   * give it to the unit, never log it.
   */
  async enrollUnit(hostname: string): Promise<string> {
    const name = checkedHostname(hostname);
    if (isServerName(name))
      throw new Rtr7Error(
        "RTR7_ERR_USAGE",
        `hostname ${name}: names starting with ${serverUsername} are the server's own on the broker`,
        { hint: "Give the unit another hostname." },
      );
    const password = newPassword();
    const hash = await scryptHash(password, this.scryptCost);
    this.statement(
      `INSERT INTO unit_credentials (hostname, password_hash, mosquitto_hash, created_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (hostname) DO UPDATE SET password_hash = excluded.password_hash,
         mosquitto_hash = excluded.mosquitto_hash, created_at = excluded.created_at`,
    ).run(name, hash, mosquittoPasswordHash(password), new Date().toISOString());
    this.verified.delete(name);
    return password;
  }

  /** Whether `password` is `hostname`'s current password. Never throws on a stranger's input. */
  async checkUnit(hostname: string, password: string): Promise<boolean> {
    const row = this.statement("SELECT password_hash FROM unit_credentials WHERE hostname = ?").get(
      hostname,
    ) as { password_hash: string } | undefined;
    const digest = this.digest(password);
    const remembered = this.verified.get(hostname);
    if (row && remembered && timingSafeEqual(remembered, digest)) return true;
    // A stranger's name costs the same scrypt as a unit's, so timing does not tell which names are enrolled.
    const stored = row?.password_hash ?? (await scryptHash("", this.scryptCost));
    let matches: boolean;
    try {
      matches = (await scryptMatches(password, stored)) && row !== undefined;
    } catch {
      matches = false;
    }
    if (!matches) return false;
    // The row may have changed (re-enrolled, removed) during the scrypt.
    const now = this.statement("SELECT password_hash FROM unit_credentials WHERE hostname = ?").get(
      hostname,
    ) as { password_hash: string } | undefined;
    if (now?.password_hash !== stored) return false;
    this.verified.set(hostname, digest);
    return true;
  }

  /** Removes `hostname`'s credential; whether it had one. Its open connection is the broker's to close. */
  removeUnit(hostname: string): boolean {
    this.verified.delete(hostname);
    return this.statement("DELETE FROM unit_credentials WHERE hostname = ?").run(hostname).changes > 0;
  }

  isEnrolled(hostname: string): boolean {
    return this.statement("SELECT 1 FROM unit_credentials WHERE hostname = ?").get(hostname) !== undefined;
  }

  /** The enrolled units, by hostname. */
  listUnits(): EnrolledUnit[] {
    const rows = this.statement(
      "SELECT hostname, created_at FROM unit_credentials ORDER BY hostname",
    ).all() as {
      hostname: string;
      created_at: string;
    }[];
    return rows.map((row) => ({ hostname: row.hostname, createdAt: row.created_at }));
  }

  /** Every enrolled unit's mosquitto hash, by hostname (for mosquitto-config.ts). */
  mosquittoHashes(): MosquittoHashedUser[] {
    const rows = this.statement(
      "SELECT hostname, mosquitto_hash FROM unit_credentials ORDER BY hostname",
    ).all() as {
      hostname: string;
      mosquitto_hash: string;
    }[];
    return rows.map((row) => ({ username: row.hostname, mosquittoHash: row.mosquitto_hash }));
  }

  /** The server's own credential, made into its file (0600) the first time. */
  serverCredential(): Promise<ServerCredential> {
    this.server ??= this.loadServerCredential().catch((error: unknown) => {
      this.server = undefined;
      throw error;
    });
    return this.server;
  }

  /** Whether `username`/`password` are the server's own credential (constant time). */
  async checkServer(username: string, password: string): Promise<boolean> {
    const server = await this.serverCredential();
    return sameSecret(`${username}\n${password}`, `${server.username}\n${server.password}`);
  }

  private async loadServerCredential(): Promise<ServerCredential> {
    const file = this.serverCredentialFile;
    let text: string | undefined;
    try {
      text = await readFile(file, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT")
        throw new Rtr7Error("RTR7_ERR_FLEET_STATE", `read ${file}: ${describeError(error)}`, {
          cause: error,
        });
    }
    if (text !== undefined) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch (error) {
        throw new Rtr7Error("RTR7_ERR_FLEET_STATE", `${file} is not JSON: ${describeError(error)}`, {
          hint: `Remove ${file}: the server makes a new credential (give an external broker its new password file).`,
        });
      }
      const record = parsed as Partial<ServerCredential> | null;
      if (
        record?.username !== serverUsername ||
        typeof record.password !== "string" ||
        record.password.length < 16
      )
        throw new Rtr7Error(
          "RTR7_ERR_FLEET_STATE",
          `${file}: want {"username": "${serverUsername}", "password": ...}`,
          {
            hint: `Remove ${file}: the server makes a new credential (give an external broker its new password file).`,
          },
        );
      return { username: serverUsername, password: record.password };
    }
    const credential: ServerCredential = { username: serverUsername, password: newPassword() };
    await writeFileAtomically(file, JSON.stringify(credential, null, 2) + "\n", {
      mode: 0o600,
      makeDirectory: true,
    });
    return credential;
  }

  close(): void {
    this.db.close();
  }
}
