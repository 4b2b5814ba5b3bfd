import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { pinoHttp } from 'pino-http';
import { requestLogOptions } from '../../../src/logging/logging.module';

/** The request log as the service writes it, captured from pino-http with the ledger's options. */
describe('request log', () => {
  let server: Server;
  let lines: string[];
  let url: string;

  beforeEach(async () => {
    lines = [];
    const stream = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString());
        done();
      },
    });
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
