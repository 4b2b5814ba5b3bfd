import { Body, Controller, Post } from '@nestjs/common';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import request from 'supertest';
import { IsCreditAmount, IsIsoDateTime, IsLedgerId } from '../../../src/api/http/validators';
import { createHttpTestApp } from './test-app';

class GrantDto {
  @IsLedgerId({ description: 'idempotency key' })
  grantId!: string;

  @IsCreditAmount()
  amount!: number;

  @IsIsoDateTime({ optional: true })
  expiresAt?: string;
}

@Controller('v1/grants')
class GrantController {
  @Post()
  grant(@Body() grant: GrantDto) {
    return grant;
  }
}

describe('configureHttp', () => {
  let app: NestFastifyApplication;
  const http = () => request(app.getHttpServer());

  beforeAll(async () => {
    ({ app } = await createHttpTestApp({ controllers: [GrantController] }));
  });
  afterAll(async () => {
    await app.close();
  });

  it('serves the OpenAPI UI at /docs and the document at /docs-json', async () => {
    const ui = await http().get('/docs');
    expect(ui.status).toBe(200);
    expect(ui.headers['content-type']).toMatch(/text\/html/);

    const doc = await http().get('/docs-json');
    expect(doc.status).toBe(200);
    expect(doc.body.paths).toHaveProperty(['/v1/grants']);
  });

  it('documents the rules of the ledger decorators', async () => {
    const doc = await http().get('/docs-json');
    const schema = doc.body.components.schemas.GrantDto;
    expect(schema.required.sort()).toEqual(['amount', 'grantId']);
    expect(schema.properties.grantId).toMatchObject({
      type: 'string',
      pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$',
      maxLength: 64,
      description: 'idempotency key',
    });
    expect(schema.properties.amount).toMatchObject({
      type: 'integer',
      minimum: 1,
      maximum: 1_000_000_000_000,
    });
    expect(schema.properties.expiresAt).toMatchObject({ type: 'string', format: 'date-time' });
  });

  it('does not say what it runs on', async () => {
    const res = await http().get('/docs-json');
    expect(res.headers['x-powered-by']).toBeUndefined();
  });

  it('accepts an application/*+json body and a date-time with an offset', async () => {
    const res = await http()
      .post('/v1/grants')
      .set('Content-Type', 'application/merge-patch+json')
      .send(JSON.stringify({ grantId: 'g1', amount: 5, expiresAt: '2030-01-01T00:00:00+02:00' }));
    expect(res.status).toBe(201);
  });

  it.each([
    ['a JSON string', '"grant me"'],
    ['a __proto__ key', '{"grantId":"g2","amount":5,"__proto__":{"admin":true}}'],
    ['nothing', ''],
  ])('refuses %s as the body, naming the body', async (_what, body) => {
    const res = await http().post('/v1/grants').set('Content-Type', 'application/json').send(body);
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.body.errors).toEqual([{ field: 'body', message: 'must be valid JSON (an object)' }]);
  });

  it('answers a body too large to take over a real connection, every time, and keeps it', async () => {
    // Fastify closed the connection after refusing it in its parser, and a client still
    // sending the body often got EPIPE instead of the answer.
    const server = app.getHttpServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as { port: number };
    const body = JSON.stringify({ grantId: 'x'.repeat(2_400_000), amount: 5 });
    try {
      for (const contentType of ['application/json', 'application/problem+json']) {
        for (let i = 0; i < 10; i++) {
          const res = await fetch(`http://127.0.0.1:${port}/v1/grants`, {
            method: 'POST',
            headers: { 'content-type': contentType },
            body,
          });
          expect(res.status).toBe(400);
          expect(res.headers.get('connection')).toBe('keep-alive');
          expect(((await res.json()) as { errors: unknown }).errors).toEqual([
            { field: 'body', message: 'is too large' },
          ]);
        }
      }
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
