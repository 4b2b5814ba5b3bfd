import { SignJWT } from 'jose';

/** The HS256 secret every test service runs with. */
export const TEST_SECRET = 'test-secret-for-the-credit-ledger-0123456789';

export interface TokenClaims {
  sub: string;
  scope?: string;
  org?: string;
}

/** A token as the dev setup signs it; `expiresIn`/`notBefore` move it in time. */
export async function tokenFor(
  claims: TokenClaims,
  options: { secret?: string; expiresIn?: string | number; notBefore?: string | number } = {},
): Promise<string> {
  const { sub, ...rest } = claims;
  let jwt = new SignJWT(rest).setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setIssuedAt();
  jwt = jwt.setExpirationTime(options.expiresIn ?? '1h');
  if (options.notBefore !== undefined) jwt = jwt.setNotBefore(options.notBefore);
  return jwt.sign(new TextEncoder().encode(options.secret ?? TEST_SECRET));
}

export const serviceToken = () => tokenFor({ sub: 'test-suite', scope: 'ledger:service' });
