import { writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { exportJWK, generateKeyPair, SignJWT, UnsecuredJWT } from 'jose';
import request from 'supertest';
import { newDataDir, removeDataDir, startLedger, type RunningLedger } from '../support/ledger-app';
import { TEST_SECRET, tokenFor } from '../support/tokens';

const ISSUER = 'https://id.charmiq.test/';
const AUDIENCE = 'credit-ledger';

/** Tokens that must not get in, and the access rules that do not fit the role table. */
describe('tokens and callers', () => {
  let dataDir: string;
  let ledger: RunningLedger;
  const as = (token: string) =>
    request.agent(ledger.app.getHttpServer()).set('authorization', `Bearer ${token}`);

  beforeAll(async () => {
    dataDir = newDataDir();
    ledger = await startLedger(dataDir, {
      env: { LEDGER_JWT_ISSUER: ISSUER, LEDGER_JWT_AUDIENCE: AUDIENCE },
    });
  });
  afterAll(async () => {
    await ledger.close();
    removeDataDir(dataDir);
  });

  const signed = (claims: Record<string, unknown>) =>
    new SignJWT(claims)
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject('ops')
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setIssuedAt();

  const good = () => signed({ scope: 'ledger:service' }).setExpirationTime('5m');
  const key = (secret = TEST_SECRET) => new TextEncoder().encode(secret);

  it('lets a valid service token in', async () => {
    const token = await good().sign(key());
    await as(token).post('/v1/users').send({ userId: 'u-1' }).expect(201);
  });

  it.each([
    ['missing', async () => undefined],
    [
      'expired',
      async () =>
        signed({ scope: 'ledger:service' })
          .setExpirationTime(Math.floor(Date.now() / 1000) - 120)
          .sign(key()),
    ],
    ['not yet valid', async () => good().setNotBefore('10m').sign(key())],
    [
      'signed with another secret',
      async () => good().sign(key('another-secret-another-secret-another-secret')),
    ],
    ['from another issuer', async () => good().setIssuer('https://evil.test/').sign(key())],
    ['for another audience', async () => good().setAudience('billing').sign(key())],
    [
      'alg none',
      async () =>
        new UnsecuredJWT({ scope: 'ledger:service' })
          .setSubject('ops')
          .setIssuer(ISSUER)
          .setAudience(AUDIENCE)
          .setExpirationTime('5m')
          .encode(),
    ],
    ['malformed', async () => 'not.a.token'],
    [
      'without sub',
      async () =>
        new SignJWT({ scope: 'ledger:service' })
          .setProtectedHeader({ alg: 'HS256' })
          .setIssuer(ISSUER)
          .setAudience(AUDIENCE)
          .setExpirationTime('5m')
          .sign(key()),
    ],
  ])('refuses a token that is %s with 401 problem+json', async (_, make) => {
    const token = await make();
    const call = request(ledger.app.getHttpServer()).post('/v1/users').send({ userId: 'intruder' });
    const response = await (token === undefined
      ? call
      : call.set('authorization', `Bearer ${token}`));
    expect(response.status).toBe(401);
    expect(response.body.code).toBe('UNAUTHENTICATED');
    expect(response.headers['content-type']).toContain('application/problem+json');
    expect(response.headers['www-authenticate']).toBe('Bearer');
    const check = await as(await good().sign(key())).get('/v1/organizations/personal-intruder');
    expect(check.status).toBe(404);
  });

  it('refuses an authorization header that is not a bearer token', async () => {
    const response = await request(ledger.app.getHttpServer())
      .get('/v1/organizations/acme/balance')
      .set('authorization', `Basic ${Buffer.from('a:b').toString('base64')}`);
    expect(response.status).toBe(401);
  });

  it('leaves /health and /metrics open', async () => {
    await request(ledger.app.getHttpServer()).get('/health').expect(200);
    await request(ledger.app.getHttpServer()).get('/metrics').expect(200);
  });

  describe('users', () => {
    const user = (sub: string, extra: Record<string, unknown> = {}) =>
      signed(extra).setSubject(sub).setExpirationTime('5m').sign(key());
    let service: request.Agent;

    beforeAll(async () => {
      service = as(await good().sign(key()));
    });

    it('sign up only themselves, never through an integration', async () => {
      await as(await user('carol'))
        .post('/v1/users')
        .send({ userId: 'dave' })
        .expect(403);
      await as(await user('carol', { org: 'personal-carol' }))
        .post('/v1/users')
        .send({ userId: 'carol' })
        .expect(403);
      await as(await user('carol'))
        .post('/v1/users')
        .send({ userId: 'carol' })
        .expect(201);
    });

    it('create organizations they own, not for others', async () => {
      const carol = as(await user('carol'));
      await carol
        .post('/v1/organizations')
        .send({ organizationId: 'carols', name: 'C', ownerUserId: 'dave' })
        .expect(403);
      await carol
        .post('/v1/organizations')
        .send({ organizationId: 'carols', name: 'C', ownerUserId: 'carol' })
        .expect(201);
    });

    it('switch only their own active organization', async () => {
      await service.post('/v1/users').send({ userId: 'erin' }).expect(201);
      await service
        .post('/v1/organizations/carols/members')
        .send({ userId: 'erin', role: 'member' })
        .expect(201);
      await as(await user('carol'))
        .put('/v1/users/erin/active-organization')
        .send({ organizationId: 'carols' })
        .expect(403);
      await as(await user('erin', { org: 'carols' }))
        .put('/v1/users/erin/active-organization')
        .send({ organizationId: 'carols' })
        .expect(403);
      const switched = await as(await user('erin'))
        .put('/v1/users/erin/active-organization')
        .send({ organizationId: 'carols' })
        .expect(200);
      expect(switched.body.activeOrganizationId).toBe('carols');
    });

    it('charge only their own runs, and the event records who did it', async () => {
      await service
        .post('/v1/organizations/carols/grants')
        .send({ grantId: 'g', amount: 10, source: 'plan' })
        .expect(201);
      const erin = as(await user('erin'));
      await erin
        .post('/v1/charm-runs')
        .send({ runId: 'r0', charmId: 'c', userId: 'carol', amount: 1, organizationId: 'carols' })
        .expect(403);
      // No organization named: erin's active one (carols) pays.
      const charged = await erin
        .post('/v1/charm-runs')
        .send({ runId: 'r1', charmId: 'c', userId: 'erin', amount: 1 })
        .expect(201);
      expect(charged.body.organizationId).toBe('carols');
      const viaIntegration = as(await user('erin', { org: 'carols' }));
      await viaIntegration
        .post('/v1/charm-runs')
        .send({ runId: 'r2', charmId: 'c', userId: 'erin', amount: 1 })
        .expect(201);
      const history = await service.get('/v1/organizations/carols/history?limit=100').expect(200);
      const actors = history.body.events
        .filter((event: { type: string }) => event.type === 'CharmRunCharged')
        .map((event: { data: { runId: string }; metadata: { actor: unknown } }) => [
          event.data.runId,
          event.metadata.actor,
        ]);
      expect(actors).toEqual([
        ['r1', { kind: 'user', id: 'erin' }],
        ['r2', { kind: 'integration', id: 'erin' }],
      ]);
    });

    it('an integration never charges another organization, even the active one', async () => {
      await service
        .put('/v1/users/erin/active-organization')
        .send({ organizationId: 'personal-erin' })
        .expect(200);
      const integration = as(await user('erin', { org: 'carols' }));
      await integration
        .post('/v1/charm-runs')
        .send({ runId: 'r3', charmId: 'c', userId: 'erin', amount: 1 })
        .expect(403);
    });

    it('admins may not make or touch owners', async () => {
      await service
        .post('/v1/organizations/carols/members')
        .send({ userId: 'frank', role: 'admin' })
        .expect(201);
      const frank = as(await user('frank'));
      await frank
        .post('/v1/organizations/carols/members')
        .send({ userId: 'gina', role: 'owner' })
        .expect(403);
      await frank
        .patch('/v1/organizations/carols/members/carol')
        .send({ role: 'member' })
        .expect(403);
      await frank.delete('/v1/organizations/carols/members/carol').expect(403);
      await frank
        .post('/v1/organizations/carols/members')
        .send({ userId: 'gina', role: 'billing' })
        .expect(201);
    });

    it('a removed member loses access at once', async () => {
      const erin = as(await user('erin'));
      await erin.get('/v1/organizations/carols/balance').expect(200);
      await service.delete('/v1/organizations/carols/members/erin').expect(204);
      const response = await erin.get('/v1/organizations/carols/balance').expect(403);
      expect(response.body.code).toBe('FORBIDDEN');
    });
  });
});

describe('tokens from a JWKS', () => {
  let dataDir: string;
  let ledger: RunningLedger;

  it('accepts RS256 tokens of the key set and refuses HS256 ones', async () => {
    dataDir = newDataDir();
    const { publicKey, privateKey } = await generateKeyPair('RS256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
    const jwksFile = join(dataDir, 'jwks.json');
    writeFileSync(jwksFile, JSON.stringify({ keys: [jwk] }));
    ledger = await startLedger(dataDir, {
      env: {
        LEDGER_JWT_SECRET: '',
        LEDGER_JWKS_URL: jwksFile,
        LEDGER_JWT_ISSUER: ISSUER,
        LEDGER_JWT_AUDIENCE: AUDIENCE,
      },
    });
    try {
      const rs256 = await new SignJWT({ scope: 'ledger:service' })
        .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
        .setSubject('ops')
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setExpirationTime('5m')
        .sign(privateKey);
      await request(ledger.app.getHttpServer())
        .post('/v1/users')
        .set('authorization', `Bearer ${rs256}`)
        .send({ userId: 'jw' })
        .expect(201);
      const hs256 = await tokenFor({ sub: 'ops', scope: 'ledger:service' });
      const refused = await request(ledger.app.getHttpServer())
        .post('/v1/users')
        .set('authorization', `Bearer ${hs256}`)
        .send({ userId: 'jx' });
      expect(refused.status).toBe(401);
    } finally {
      await ledger.close();
      removeDataDir(dataDir);
    }
  });

  it('fetches the key set from an https/http URL', async () => {
    dataDir = newDataDir();
    const { publicKey, privateKey } = await generateKeyPair('ES256');
    const jwks = {
      keys: [{ ...(await exportJWK(publicKey)), kid: 'e1', alg: 'ES256', use: 'sig' }],
    };
    const server = createServer((_, response) => {
      response.setHeader('content-type', 'application/json');
      response.end(JSON.stringify(jwks));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    ledger = await startLedger(dataDir, {
      env: {
        LEDGER_JWT_SECRET: '',
        LEDGER_JWKS_URL: `http://127.0.0.1:${port}/.well-known/jwks.json`,
        LEDGER_JWT_ISSUER: ISSUER,
        LEDGER_JWT_AUDIENCE: AUDIENCE,
      },
    });
    try {
      const es256 = await new SignJWT({ scope: 'ledger:service' })
        .setProtectedHeader({ alg: 'ES256', kid: 'e1' })
        .setSubject('ops')
        .setIssuer(ISSUER)
        .setAudience(AUDIENCE)
        .setExpirationTime('5m')
        .sign(privateKey);
      await request(ledger.app.getHttpServer())
        .post('/v1/users')
        .set('authorization', `Bearer ${es256}`)
        .send({ userId: 'remote' })
        .expect(201);
    } finally {
      await ledger.close();
      server.close();
      removeDataDir(dataDir);
    }
  });
});
