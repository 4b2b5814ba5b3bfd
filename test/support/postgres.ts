import { createHash, randomBytes } from 'node:crypto';
import { Client } from 'pg';

/** The PostgreSQL server of this machine (and CI): trust auth, database `test`. */
export const POSTGRES_ADMIN_URL =
  process.env.TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/**
 * A fresh database for one suite, dropped afterwards. A suite that needs PostgreSQL fails
 * when the server is missing; it never skips.
 */
export async function createTestDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `ledger_test_${randomBytes(6).toString('hex')}`;
  const admin = new Client({ connectionString: POSTGRES_ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(POSTGRES_ADMIN_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const client = new Client({ connectionString: POSTGRES_ADMIN_URL });
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}

/**
 * `TEST_EVENT_STORE=postgres` runs the end-to-end suites with the PostgreSQL event store:
 * each ledger keeps its events and read models in a database named after its data folder,
 * so a restart on the same folder finds them again.
 */
export const E2E_ON_POSTGRES = process.env.TEST_EVENT_STORE === 'postgres';
const E2E_DATABASE_PREFIX = 'ledger_e2e_';

export async function eventStoreEnvFor(dataDir: string): Promise<Record<string, string>> {
  if (!E2E_ON_POSTGRES) return {};
  const name = E2E_DATABASE_PREFIX + createHash('sha1').update(dataDir).digest('hex').slice(0, 16);
  const admin = new Client({ connectionString: POSTGRES_ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } catch (error) {
    // 42P04: it exists already, from this folder's previous start.
    if ((error as { code?: string }).code !== '42P04') throw error;
  } finally {
    await admin.end();
  }
  const url = new URL(POSTGRES_ADMIN_URL);
  url.pathname = `/${name}`;
  return { LEDGER_EVENT_STORE: 'postgres', DATABASE_URL: url.toString() };
}

/** Drops every database the end-to-end suites made (Jest's global teardown). */
export async function dropEndToEndDatabases(): Promise<void> {
  const admin = new Client({ connectionString: POSTGRES_ADMIN_URL });
  await admin.connect();
  try {
    const { rows } = await admin.query<{ datname: string }>(
      `SELECT datname FROM pg_database WHERE datname LIKE '${E2E_DATABASE_PREFIX}%'`,
    );
    for (const { datname } of rows) await admin.query(`DROP DATABASE ${datname} WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}
