/** What the console reads of a pasted token. The ledger verifies it; the page never trusts it. */
export type TokenKind = 'user' | 'integration' | 'service';

export interface TokenInfo {
  kind: TokenKind;
  subject: string;
  /** An integration token's one organization. */
  organizationId?: string;
}

/** Scopes that make a service token, as src/auth/token-verifier.ts reads them. */
const SERVICE_SCOPES = ['ledger:service', 'ledger:reports', 'ledger:audit'];

export class UnreadableToken extends Error {}

/**
 * Decodes (never verifies) a JWT's claims the way the ledger classifies callers: `org` makes
 * an integration, a ledger service scope a service, anything else a user acting as `sub`.
 */
export function readToken(token: string): TokenInfo {
  const parts = token.split('.');
  if (parts.length !== 3) {
    throw new UnreadableToken('a token has three parts separated by dots');
  }
  let claims: Record<string, unknown>;
  try {
    const json = atob(parts[1].replace(/-/g, '+').replace(/_/g, '/'));
    const bytes = Uint8Array.from(json, (char) => char.charCodeAt(0));
    claims = JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
  } catch {
    throw new UnreadableToken('its claims could not be read');
  }
  const subject = claims.sub;
  if (typeof subject !== 'string' || subject.length === 0) {
    throw new UnreadableToken('it names no subject (sub)');
  }
  if (typeof claims.org === 'string') {
    return { kind: 'integration', subject, organizationId: claims.org };
  }
  const scopes = typeof claims.scope === 'string' ? claims.scope.split(' ') : [];
  if (scopes.some((scope) => SERVICE_SCOPES.includes(scope))) {
    return { kind: 'service', subject };
  }
  return { kind: 'user', subject };
}
