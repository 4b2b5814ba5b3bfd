import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { HealthChecks, HealthController } from '../../../src/api/http/health.controller';
import { EVENT_STORE } from '../../../src/event-store/event-store';
import { createHttpTestApp } from './test-app';

describe('GET /health', () => {
  let app: NestFastifyApplication;
  let pingFails: boolean;
  const eventStore = {
    ping: jest.fn(async () => {
      if (pingFails) throw new Error('SQLITE_CANTOPEN: /var/secret/path');
    }),
  };

  beforeAll(async () => {
    ({ app } = await createHttpTestApp({
      controllers: [HealthController],
      providers: [HealthChecks, { provide: EVENT_STORE, useValue: eventStore }],
    }));
  });
  afterAll(async () => {
    await app.close();
  });
  beforeEach(() => {
    pingFails = false;
  });

  it('is 200 with each check up when the event store answers (no /v1 prefix)', async () => {
    const res = await request(app.getHttpServer()).get('/health');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ok', checks: { eventStore: { status: 'up' } } });
    expect(eventStore.ping).toHaveBeenCalled();
  });

  it('is a 503 UNAVAILABLE problem with the check states when the event store fails', async () => {
    pingFails = true;
    const res = await request(app.getHttpServer()).get('/health');
    expect(res.status).toBe(503);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.headers['retry-after']).toBe('1');
    expect(res.body).toMatchObject({
      code: 'UNAVAILABLE',
      status: 503,
      checks: { eventStore: { status: 'down' } },
    });
    expect(JSON.stringify(res.body)).not.toContain('/var/secret/path');
  });

  it('reports the checks registered later by other modules', async () => {
    const checks = app.get(HealthChecks);
    let natsUp = true;
    checks.register('nats', async () => {
      if (!natsUp) throw new Error('disconnected');
    });
    let res = await request(app.getHttpServer()).get('/health');
    expect(res.status).toBe(200);
    expect(res.body.checks).toEqual({ eventStore: { status: 'up' }, nats: { status: 'up' } });

    natsUp = false;
    res = await request(app.getHttpServer()).get('/health');
    expect(res.status).toBe(503);
    expect(res.body.checks).toEqual({ eventStore: { status: 'up' }, nats: { status: 'down' } });
    expect(() => checks.register('nats', async () => undefined)).toThrow(/already/);
  });

  it('counts a check that never answers as down instead of hanging', async () => {
    const checks = app.get(HealthChecks);
    checks.register('hanging', () => new Promise<void>(() => undefined));
    const result = await checks.run(50);
    expect(result.healthy).toBe(false);
    expect(result.checks.hanging).toEqual({ status: 'down' });
  });
});
