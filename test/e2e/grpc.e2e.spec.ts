import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { HEALTH_PROTO, LEDGER_PROTO } from '../../src/api/grpc/grpc-options';
import { newDataDir, removeDataDir, startLedger, type RunningLedger } from '../support/ledger-app';
import { freePort } from '../support/service-process';
import { serviceToken, tokenFor } from '../support/tokens';

type Unary = (
  request: object,
  metadata: grpc.Metadata,
  callback: (error: grpc.ServiceError | null, response: Record<string, unknown>) => void,
) => void;

/** A real @grpc/grpc-js client on the same .proto files the service serves. */
describe('gRPC', () => {
  let dataDir: string;
  let ledger: RunningLedger;
  let ledgerClient: grpc.Client & Record<string, Unary>;
  let healthClient: grpc.Client & Record<string, Unary>;

  beforeAll(async () => {
    dataDir = newDataDir();
    const port = await freePort();
    ledger = await startLedger(dataDir, { grpcPort: port });
    const definition = protoLoader.loadSync([LEDGER_PROTO, HEALTH_PROTO], {
      keepCase: true,
      longs: Number,
      enums: String,
      defaults: true,
    });
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const loaded = grpc.loadPackageDefinition(definition) as any;
    const address = `127.0.0.1:${port}`;
    ledgerClient = new loaded.charmiq.ledger.v1.LedgerService(
      address,
      grpc.credentials.createInsecure(),
    );
    healthClient = new loaded.grpc.health.v1.Health(address, grpc.credentials.createInsecure());

    await ledger.http
      .post('/v1/organizations')
      .send({ organizationId: 'acme', name: 'Acme', ownerUserId: 'owner' })
      .expect(201);
    await ledger.http
      .post('/v1/organizations/acme/members')
      .send({ userId: 'member', role: 'member' })
      .expect(201);
    await ledger.http
      .post('/v1/organizations/acme/grants')
      .send({ grantId: 'g', amount: 500, source: 'purchase' })
      .expect(201);
    await ledger.http
      .post('/v1/organizations/acme/reservations')
      .send({ reservationId: 'h', charmId: 'c', userId: 'member', amount: 120 })
      .expect(201);
  });
  afterAll(async () => {
    ledgerClient.close();
    healthClient.close();
    await ledger.close();
    removeDataDir(dataDir);
  });

  const call = (client: Record<string, Unary>, method: string, request: object, token?: string) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const metadata = new grpc.Metadata();
      if (token) metadata.set('authorization', `Bearer ${token}`);
      client[method](request, metadata, (error, response) =>
        error ? reject(error) : resolve(response),
      );
    });

  it('answers GetBalance as HTTP does', async () => {
    const http = (await ledger.http.get('/v1/organizations/acme/balance').expect(200)).body;
    const balance = await call(
      ledgerClient,
      'GetBalance',
      { organization_id: 'acme' },
      await serviceToken(),
    );
    expect(balance).toEqual({
      organization_id: 'acme',
      available: http.available,
      reserved: http.reserved,
      position: http.position,
    });
    expect(balance).toMatchObject({ available: 380, reserved: 120 });
  });

  it('checks whether credits suffice', async () => {
    const token = await tokenFor({ sub: 'member' });
    expect(
      await call(ledgerClient, 'CheckCredits', { organization_id: 'acme', amount: 380 }, token),
    ).toEqual({
      sufficient: true,
      available: 380,
    });
    expect(
      await call(ledgerClient, 'CheckCredits', { organization_id: 'acme', amount: 381 }, token),
    ).toEqual({
      sufficient: false,
      available: 380,
    });
  });

  it.each([
    ['no token', { organization_id: 'acme' }, undefined, grpc.status.UNAUTHENTICATED],
    ['a bad token', { organization_id: 'acme' }, 'garbage', grpc.status.UNAUTHENTICATED],
    [
      'an outsider',
      { organization_id: 'acme' },
      { sub: 'stranger' },
      grpc.status.PERMISSION_DENIED,
    ],
    [
      'an integration of another organization',
      { organization_id: 'acme' },
      { sub: 'member', org: 'other' },
      grpc.status.PERMISSION_DENIED,
    ],
    [
      'an unknown organization',
      { organization_id: 'nowhere' },
      { sub: 'ops', scope: 'ledger:service' },
      grpc.status.NOT_FOUND,
    ],
    [
      'a bad organization id',
      { organization_id: 'a.b' },
      { sub: 'ops', scope: 'ledger:service' },
      grpc.status.INVALID_ARGUMENT,
    ],
  ])('GetBalance with %s fails with the right status', async (_, request, claims, code) => {
    const token =
      claims === undefined
        ? undefined
        : typeof claims === 'string'
          ? claims
          : await tokenFor(claims);
    await expect(call(ledgerClient, 'GetBalance', request, token)).rejects.toMatchObject({ code });
  });

  it.each([0, -5, 1e13])(
    'CheckCredits refuses the amount %p as INVALID_ARGUMENT',
    async (amount) => {
      await expect(
        call(
          ledgerClient,
          'CheckCredits',
          { organization_id: 'acme', amount },
          await serviceToken(),
        ),
      ).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    },
  );

  it('answers the standard health check with SERVING', async () => {
    expect(await call(healthClient, 'Check', { service: '' })).toEqual({ status: 'SERVING' });
    expect(
      await call(healthClient, 'Check', { service: 'charmiq.ledger.v1.LedgerService' }),
    ).toEqual({
      status: 'SERVING',
    });
    await expect(call(healthClient, 'Check', { service: 'nope' })).rejects.toMatchObject({
      code: grpc.status.NOT_FOUND,
    });
  });

  it('streams the status on Watch', async () => {
    const first = await new Promise((resolve, reject) => {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      const stream = (healthClient as any).Watch({
        service: '',
      }) as grpc.ClientReadableStream<unknown>;
      stream.on('data', (message) => {
        resolve(message);
        stream.cancel();
      });
      stream.on('error', (error: grpc.ServiceError) => {
        if (error.code !== grpc.status.CANCELLED) reject(error);
      });
    });
    expect(first).toEqual({ status: 'SERVING' });
  });
});
