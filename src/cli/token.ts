import { Command, InvalidArgumentError } from 'commander';
import { SignJWT } from 'jose';
import { ConfigError, loadConfig } from '../config/config';
import { signingSecret } from '../auth/signing-secret';
import { isIdentifier } from '../ledger/identifiers';

/**
 * Mints a token signed with the configured HS256 secret (LEDGER_JWT_SECRET, or the dev
 * secret of the data folder), for operators and local use:
 *   npm run -s token -- --sub ops --scope ledger:service
 *   npm run -s token -- --sub alice                      (acts as the user alice)
 *   npm run -s token -- --sub alice --org acme           (an integration of alice in acme)
 */
const identifier = (value: string) => {
  if (!isIdentifier(value))
    throw new InvalidArgumentError('must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$');
  return value;
};

async function main(argv: string[]): Promise<void> {
  const program = new Command('token')
    .description('Print a bearer token for the credit ledger')
    .requiredOption('--sub <id>', 'subject: a service name or a userId')
    .option(
      '--scope <scopes>',
      'space or comma separated: ledger:service, ledger:reports, ledger:audit',
    )
    .option(
      '--org <organizationId>',
      'make an integration token for this one organization',
      identifier,
    )
    .option('--expires-in <duration>', 'lifetime, e.g. 15m, 12h, 30d', '12h')
    .showHelpAfterError()
    .parse(argv);
  const options = program.opts<{ sub: string; scope?: string; org?: string; expiresIn: string }>();

  const config = loadConfig();
  const secret = signingSecret(config);
  if (!secret) {
    throw new ConfigError(
      'LEDGER_JWKS_URL is set: tokens come from your identity provider, not from this command',
    );
  }
  const claims: Record<string, string> = {};
  const scope = options.scope
    ?.split(/[\s,]+/)
    .filter(Boolean)
    .join(' ');
  if (scope) claims.scope = scope;
  if (options.org) claims.org = options.org;
  let token = new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(options.sub)
    .setIssuedAt()
    .setExpirationTime(options.expiresIn);
  if (config.jwtIssuer) token = token.setIssuer(config.jwtIssuer);
  if (config.jwtAudience) token = token.setAudience(config.jwtAudience);
  process.stdout.write(`${await token.sign(new TextEncoder().encode(secret.secret))}\n`);
}

main(process.argv).catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
