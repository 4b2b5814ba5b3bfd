import { Writable } from 'node:stream';
import { Controller, Get, Post } from '@nestjs/common';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { Logger } from 'nestjs-pino';
import request from 'supertest';
import { loggerModule } from '../../../src/logging/logging.module';
import { createHttpTestApp } from './test-app';

interface LogLine {
  level: number;
  msg: string;
  req?: Record<string, unknown>;
  res?: { statusCode: number };
  err?: { message: string; stack: string };
}

/**
 * The request log as the service wires it: nestjs-pino's logger, written to by a Fastify hook
 * once each answer is sent (one app per file: nestjs-pino keeps one root logger per process).
 */
describe('request log', () => {
  @Controller('v1/probe')
  class ProbeController {
    @Post()
    probe() {
      return { ok: true };
    }

    @Get('bug')
    bug(): never {
      throw new Error('a bug of ours');
    }
  }

  let app: NestFastifyApplication;
  const lines: string[] = [];
  const http = () => request(app.getHttpServer());

  beforeAll(async () => {
    const stream = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    ({ app } = await createHttpTestApp({
      imports: [loggerModule({ logLevel: 'info' }, stream)],
      controllers: [ProbeController],
    }));
    // As main.ts does: Nest's log lines (the problem filter's) go to pino too.
    app.useLogger(app.get(Logger));
  });
  afterAll(() => app.close());

  const parsed = () => lines.map((text) => JSON.parse(text) as LogLine);
  /** The line that closes the request with this id (the hook runs just after the answer). */
  async function requestLineOf(id: string): Promise<LogLine> {
    for (let i = 0; i < 100; i++) {
      const line = parsed().find((candidate) => candidate.req?.id === id && candidate.res);
      if (line) return line;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    throw new Error(`no request line for ${id} in:\n${lines.join('')}`);
  }

  it('logs every request once, by id, method, URL and status, and writes no header, so no credential', async () => {
    const answered = await http()
      .post('/v1/probe?dryRun=1')
      .set('x-request-id', 'probe-7')
      .set('authorization', 'Bearer a-token-that-must-stay-secret')
      .set('cookie', 'session=also-secret')
      .send({});
    expect(answered.status).toBe(201);
    expect(answered.headers['x-request-id']).toBe('probe-7');

    const line = await requestLineOf('probe-7');
    expect(line).toMatchObject({
      level: 30,
      req: { id: 'probe-7', method: 'POST', url: '/v1/probe?dryRun=1' },
      res: { statusCode: 201 },
    });
    expect(Object.keys(line.req!).sort()).toEqual(['id', 'method', 'url']);
    expect(parsed().filter((candidate) => candidate.req?.id === 'probe-7')).toHaveLength(1);
    expect(lines.join('')).not.toMatch(/secret|authorization|cookie/i);
  });

  it("logs the caller's mistakes as warnings, with an id of its own when none fits", async () => {
    const missing = await http().get('/v1/nothing-here').set('x-request-id', 'not safe; DROP');
    expect(missing.status).toBe(404);
    const generated = missing.headers['x-request-id'] as string;
    expect(generated).toMatch(/^[0-9a-f-]{36}$/);

    expect(await requestLineOf(generated)).toMatchObject({
      level: 40,
      req: { method: 'GET', url: '/v1/nothing-here' },
      res: { statusCode: 404 },
    });
    expect(lines.join('')).not.toContain('DROP');
  });

  it('gives an INTERNAL problem the id of its request, which the error and the request lines carry', async () => {
    const failed = await http().get('/v1/probe/bug').set('x-request-id', 'bug-3');
    expect(failed.status).toBe(500);
    expect(failed.body).toMatchObject({ code: 'INTERNAL', requestId: 'bug-3' });

    expect(await requestLineOf('bug-3')).toMatchObject({ level: 50, res: { statusCode: 500 } });
    const error = parsed().find((line) => line.req?.id === 'bug-3' && line.err);
    expect(error).toMatchObject({
      level: 50,
      req: { method: 'GET', url: '/v1/probe/bug' },
      err: { message: 'a bug of ours' },
    });
    expect(error!.err!.stack).toContain('request-log.spec.ts');
  });

  it('names and logs a request the router refuses, though no route runs for it', async () => {
    const refused = await http().get('/v1/probe/%E0%A4%A').set('x-request-id', 'bad-url-1');
    expect(refused.status).toBe(400);
    expect(refused.body.code).toBe('VALIDATION_FAILED');
    expect(refused.headers['x-request-id']).toBe('bad-url-1');
    expect(await requestLineOf('bad-url-1')).toMatchObject({ level: 40, res: { statusCode: 400 } });
    expect(parsed().filter((line) => line.req?.id === 'bad-url-1')).toHaveLength(1);
  });
});
