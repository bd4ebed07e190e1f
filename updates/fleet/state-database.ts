// What the fleet's SQLite stores share (the rollouts' store.ts, the server's
// serve/job-store.ts): opening a file with better-sqlite3 as both want it
// (write-ahead log, synchronous=NORMAL: a SIGKILL loses nothing, a power
// cut of the machine at most the last changes, never the file's
// consistency), a schema version that refuses a file a newer rtr7 wrote,
// prepared statements kept by their SQL, and one transaction per change
// with its failure as RTR7_ERR_FLEET_STATE naming the file.
import { mkdirSync } from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { Rtr7Error, describeError } from "../../lib/errors.js";

export interface StateSchema {
  /** CREATE TABLE IF NOT EXISTS ... for every table. */
  sql: string;
  version: number;
  /** Names the store in errors: "the fleet's state", "the job store". */
  what: string;
  foreignKeys?: boolean;
}

export abstract class StateDatabase {
  /** Prepared statements by their SQL: preparing costs more than running a small one. */
  private readonly statements = new Map<string, Database.Statement>();

  protected constructor(
    protected readonly db: Database.Database,
    readonly file: string,
  ) {}

  /** Opens (creating if need be) the file with the schema; RTR7_ERR_FLEET_STATE when it cannot. */
  protected static openDatabase(file: string, schema: StateSchema): Database.Database {
    try {
      mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
      const db = new Database(file, { timeout: 10_000 });
      db.pragma("journal_mode = WAL");
      db.pragma("synchronous = NORMAL");
      if (schema.foreignKeys) db.pragma("foreign_keys = ON");
      const version = Number(db.pragma("user_version", { simple: true }));
      if (version > schema.version)
        throw new Error(
          `it was written by a newer rtr7 (schema ${version}; this rtr7 knows ${schema.version})`,
        );
      db.exec(schema.sql);
      db.pragma(`user_version = ${schema.version}`);
      return db;
    } catch (error) {
      throw new Rtr7Error("RTR7_ERR_FLEET_STATE", `open ${schema.what} ${file}: ${describeError(error)}`, {
        cause: error,
      });
    }
  }

  protected statement(sql: string): Database.Statement {
    let prepared = this.statements.get(sql);
    if (!prepared) {
      prepared = this.db.prepare(sql);
      this.statements.set(sql, prepared);
    }
    return prepared;
  }

  /** One change, one transaction; a failure is RTR7_ERR_FLEET_STATE saying what and where. */
  protected write<T>(what: string, work: () => T): T {
    try {
      return this.db.transaction(work)();
    } catch (error) {
      throw new Rtr7Error("RTR7_ERR_FLEET_STATE", `${what} in ${this.file}: ${describeError(error)}`, {
        cause: error,
      });
    }
  }
}
