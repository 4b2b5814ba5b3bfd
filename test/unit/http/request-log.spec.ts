import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { Controller, Post } from '@nestjs/common';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { pinoHttp } from 'pino-http';
import request from 'supertest';
import { loggerModule, requestLogOptions } from '../../../src/logging/logging.module';
import { createHttpTestApp } from './test-app';

/** A stream that keeps what is written to it, a line per write. */
function collectLines(): { lines: string[]; stream: Writable } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  return { lines, stream };
}

/** The request log as the service writes it, captured from pino-http with the ledger's options. */
describe('request log', () => {
  let server: Server;
  let lines: string[];
  let url: string;

  beforeEach(async () => {
    let stream: Writable;
    ({ lines, stream } = collectLines());
    const log = pinoHttp(requestLogOptions({ logLevel: 'info' }), stream);
    server = createServer((request, response) => {
      log(request, response);
      response.statusCode = request.method === 'POST' ? 201 : 404;
      response.end('{}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterEach(() => new Promise((resolve) => server.close(resolve)));

  it('names each request by id, method, URL and status, and writes no header, so no credential', async () => {
    const response = await fetch(`${url}/v1/charm-runs?dryRun=1`, {
      method: 'POST',
      headers: {
        authorization: 'Bearer a-token-that-must-stay-secret',
        cookie: 'session=also-secret',
        'x-request-id': 'req-42',
      },
    });
    expect(response.headers.get('x-request-id')).toBe('req-42');
    await waitForLines(1);

    const line = JSON.parse(lines[0]) as Record<string, unknown>;
    expect(line).toMatchObject({
      level: 30,
      req: { id: 'req-42', method: 'POST', url: '/v1/charm-runs?dryRun=1' },
      res: { statusCode: 201 },
    });
    expect(Object.keys(line.req as object).sort()).toEqual(['id', 'method', 'url']);
    expect(lines.join('')).not.toMatch(/secret|authorization|cookie/i);
  });

  it("logs the caller's mistakes as warnings, with an id of its own when none fits", async () => {
    await fetch(`${url}/missing`, { headers: { 'x-request-id': 'not a safe id; DROP' } });
    await waitForLines(1);

    const line = JSON.parse(lines[0]) as { level: number; req: { id: string } };
    expect(line.level).toBe(40);
    expect(line.req.id).toMatch(/^[0-9a-f-]{36}$/);
  });

  async function waitForLines(count: number) {
    for (let i = 0; i < 100 && lines.length < count; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(lines.length).toBeGreaterThanOrEqual(count);
  }
});

/** The same log as the service wires it: nestjs-pino's middleware under the Fastify adapter. */
describe('request log in the service', () => {
  @Controller('v1/probe')
  class ProbeController {
    @Post()
    probe() {
      return { ok: true };
    }

    @Post('bug')
    bug(): never {
      throw new Error('a bug of ours');
    }
  }

  let app: NestFastifyApplication;
  let lines: string[];
  const http = () => request(app.getHttpServer());

  beforeAll(async () => {
    let stream: Writable;
    ({ lines, stream } = collectLines());
    ({ app } = await createHttpTestApp({
      imports: [loggerModule({ logLevel: 'info' }, stream)],
      controllers: [ProbeController],
    }));
  });
  afterAll(() => app.close());

  const lineOf = (id: string) =>
    lines
      .map((text) => JSON.parse(text) as { req?: { id?: string; url?: string }; res?: object })
      .find((line) => line.req?.id === id && line.res);

  it('logs every request once, under the id it echoes in x-request-id', async () => {
    const answered = await http().post('/v1/probe').set('x-request-id', 'probe-7').send({});
    expect(answered.status).toBe(201);
    expect(answered.headers['x-request-id']).toBe('probe-7');

    const missing = await http().get('/v1/nothing-here');
    expect(missing.status).toBe(404);
    const generated = missing.headers['x-request-id'] as string;
    expect(generated).toMatch(/^[0-9a-f-]{36}$/);

    expect(lineOf('probe-7')).toMatchObject({
      req: { url: '/v1/probe' },
      res: { statusCode: 201 },
    });
    expect(lineOf(generated)).toMatchObject({ res: { statusCode: 404 } });
  });

  it('gives an INTERNAL problem the id of its request, to find it in the log', async () => {
    const failed = await http().post('/v1/probe/bug').set('x-request-id', 'bug-3').send({});
    expect(failed.status).toBe(500);
    expect(failed.body).toMatchObject({ code: 'INTERNAL', requestId: 'bug-3' });
    expect(lineOf('bug-3')).toMatchObject({ res: { statusCode: 500 } });
  });

  it('names a request the router refuses, though no route runs for it', async () => {
    const refused = await http().get('/v1/probe/%E0%A4%A').set('x-request-id', 'bad-url-1');
    expect(refused.status).toBe(400);
    expect(refused.body.code).toBe('VALIDATION_FAILED');
    expect(refused.headers['x-request-id']).toBe('bad-url-1');
  });
});
