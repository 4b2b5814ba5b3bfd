import { readFileSync } from 'node:fs';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { LRUCache } from 'lru-cache';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  errors,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose';
import { LEDGER_CONFIG, type LedgerConfig } from '../config/config';
import { LedgerError, unavailable } from '../ledger/errors';
import { isIdentifier } from '../ledger/identifiers';
import { AUDIT_SCOPE, REPORTS_SCOPE, SERVICE_SCOPE, type Caller } from './caller';
import { signingSecret } from './signing-secret';

/** Clocks of issuers and the ledger may differ by this much. */
const CLOCK_TOLERANCE_SECONDS = 30;
/** What a JWKS may sign with; never `none`, never an HMAC (a public key is not a secret). */
const JWKS_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'EdDSA',
];
const SERVICE_SCOPES = new Set([SERVICE_SCOPE, REPORTS_SCOPE, AUDIT_SCOPE]);

const unauthenticated = (message: string) => new LedgerError('UNAUTHENTICATED', message);

/**
 * Checks bearer tokens: HS256 with a shared secret (dev, tests), or a JWKS with a pinned
 * issuer and audience (production). `exp` and `nbf` are enforced, `alg: none` and any
 * algorithm not expected are refused. The same verifier serves HTTP and gRPC.
 */
@Injectable()
export class TokenVerifier {
  private readonly logger = new Logger(TokenVerifier.name);
  private readonly key: Uint8Array | JWTVerifyGetKey;
  private readonly algorithms: string[];
  /**
   * Tokens already verified, for a minute at most: a service sends the same token with every
   * request, and checking a signature costs more than the rest of a charge. The time claims
   * are still checked on every use.
   */
  private readonly verified = new LRUCache<string, { caller: Caller; exp?: number; nbf?: number }>({
    max: 10_000,
    ttl: 60_000,
  });

  constructor(@Inject(LEDGER_CONFIG) private readonly config: LedgerConfig) {
    const secret = signingSecret(config);
    if (secret) {
      this.key = new TextEncoder().encode(secret.secret);
      this.algorithms = ['HS256'];
      if (secret.source === 'dev-file') {
        this.logger.warn(
          `No LEDGER_JWT_SECRET: using the dev secret in ${secret.file}. ` +
            'Mint a token with: npm run token -- --sub ops --scope ledger:service',
        );
      }
    } else {
      this.key = jwksFrom(config.jwksUrl!);
      this.algorithms = JWKS_ALGORITHMS;
    }
  }

  /** The caller a bearer token speaks for; UNAUTHENTICATED when there is none or it fails. */
  async verifyAuthorization(header: string | undefined): Promise<Caller> {
    if (!header) throw unauthenticated('a bearer token is required');
    const match = /^Bearer +([A-Za-z0-9_.~+/-]+=*)$/i.exec(header.trim());
    if (!match) throw unauthenticated('the authorization header must be "Bearer <token>"');
    return this.verify(match[1]);
  }

  async verify(token: string): Promise<Caller> {
    const cached = this.verified.get(token);
    if (cached !== undefined) {
      const now = Date.now() / 1000;
      const expired = cached.exp !== undefined && now > cached.exp + CLOCK_TOLERANCE_SECONDS;
      const early = cached.nbf !== undefined && now < cached.nbf - CLOCK_TOLERANCE_SECONDS;
      if (!expired && !early) return cached.caller;
      this.verified.delete(token);
    }
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.key as Uint8Array, {
        algorithms: this.algorithms,
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        issuer: this.config.jwtIssuer,
        audience: this.config.jwtAudience,
        requiredClaims: ['sub'],
      }));
    } catch (error) {
      // Keys that cannot be fetched say nothing about the token: try again later.
      if (error instanceof errors.JWKSTimeout || !(error instanceof errors.JOSEError)) {
        throw unavailable("the issuer's keys could not be fetched");
      }
      throw unauthenticated(reasonOf(error));
    }
    const caller = callerOf(payload);
    this.verified.set(token, { caller, exp: payload.exp, nbf: payload.nbf });
    return caller;
  }
}

function jwksFrom(location: string): JWTVerifyGetKey {
  if (/^https?:\/\//.test(location)) return createRemoteJWKSet(new URL(location));
  const path = location.startsWith('file://') ? new URL(location).pathname : location;
  return createLocalJWKSet(JSON.parse(readFileSync(path, 'utf8')));
}

/** Claims to caller: `org` makes an integration; a service scope a service; else a user. */
export function callerOf(payload: JWTPayload): Caller {
  const sub = payload.sub;
  if (typeof sub !== 'string' || sub.length === 0 || sub.length > 256) {
    throw unauthenticated('the token has no valid sub');
  }
  const scopes = new Set(
    typeof payload.scope === 'string' ? payload.scope.split(' ').filter(Boolean) : [],
  );
  const org = payload.org;
  if (org !== undefined) {
    if (!isIdentifier(org) || !isIdentifier(sub)) {
      throw unauthenticated('an integration token needs identifier sub and org claims');
    }
    return { kind: 'integration', userId: sub, organizationId: org };
  }
  const serviceScopes = [...scopes].filter((scope) => SERVICE_SCOPES.has(scope));
  if (serviceScopes.length > 0) return { kind: 'service', id: sub, scopes: new Set(serviceScopes) };
  if (!isIdentifier(sub)) throw unauthenticated('a user token needs an identifier sub');
  return { kind: 'user', userId: sub };
}

function reasonOf(error: unknown): string {
  if (error instanceof errors.JWTExpired) return 'the token has expired';
  if (error instanceof errors.JWTClaimValidationFailed) {
    return error.claim === 'nbf'
      ? 'the token is not valid yet'
      : `the token's ${error.claim} is not accepted`;
  }
  if (error instanceof errors.JOSEAlgNotAllowed) return "the token's algorithm is not accepted";
  if (error instanceof errors.JWSSignatureVerificationFailed)
    return "the token's signature is not valid";
  if (error instanceof errors.JWKSNoMatchingKey) return 'no key of the issuer matches the token';
  if (error instanceof errors.JWSInvalid || error instanceof errors.JWTInvalid) {
    return 'the token is malformed';
  }
  return 'the token could not be verified';
}
