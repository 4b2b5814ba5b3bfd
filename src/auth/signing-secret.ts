import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LedgerConfig } from '../config/config';

export const DEV_SECRET_FILE = 'dev-jwt-secret';

/**
 * The HS256 secret: LEDGER_JWT_SECRET, or on the embedded default without one, a random
 * secret kept in the data folder (made on first use) so `npm start` is never open to all.
 * Undefined when tokens are checked against a JWKS instead.
 */
export function signingSecret(
  config: LedgerConfig,
): { secret: string; source: 'env' | 'dev-file'; file?: string } | undefined {
  if (config.jwtSecret) return { secret: config.jwtSecret, source: 'env' };
  if (config.jwksUrl) return undefined;
  const file = join(config.dataDir, DEV_SECRET_FILE);
  try {
    return { secret: readFileSync(file, 'utf8').trim(), source: 'dev-file', file };
  } catch {
    mkdirSync(config.dataDir, { recursive: true });
    const secret = randomBytes(32).toString('base64url');
    // wx: two processes starting at once must not overwrite each other's secret.
    try {
      writeFileSync(file, `${secret}\n`, { mode: 0o600, flag: 'wx' });
    } catch {
      return { secret: readFileSync(file, 'utf8').trim(), source: 'dev-file', file };
    }
    return { secret, source: 'dev-file', file };
  }
}
