import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { INestApplication } from '@nestjs/common';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import type TestAgent from 'supertest/lib/agent';
import { grpcOptions } from '../../src/api/grpc/grpc-options';
import { configureHttp, ledgerHttpAdapter, startHttp } from '../../src/api/http/http-setup';
import { AppModule } from '../../src/app.module';
import { loadConfig } from '../../src/config/config';
import { Clock } from '../../src/write/clock';
import { eventStoreEnvFor } from './postgres';
import { serviceToken, TEST_SECRET } from './tokens';

/** A clock the test moves by hand. */
export class TestClock extends Clock {
  constructor(public current = Date.parse('2026-01-01T00:00:00Z')) {
    super();
  }
  now(): number {
    return this.current;
  }
  advance(ms: number) {
    this.current += ms;
  }
}

export interface RunningLedger {
  app: INestApplication;
  /** Requests with a service token (scope ledger:service). */
  http: TestAgent;
  /** Requests with no token, to set one's own. */
  anonymous: TestAgent;
  dataDir: string;
  close(): Promise<void>;
}

export const newDataDir = () => mkdtempSync(join(tmpdir(), 'ledger-e2e-'));
export const removeDataDir = (dir: string) => rmSync(dir, { recursive: true, force: true });

/** The whole service in this process, on the embedded store in `dataDir`. */
export async function startLedger(
  dataDir: string,
  options: { clock?: Clock; env?: Record<string, string>; grpcPort?: number } = {},
): Promise<RunningLedger> {
  const config = loadConfig({
    LEDGER_DATA_DIR: dataDir,
    LOG_LEVEL: 'silent',
    LEDGER_JWT_SECRET: TEST_SECRET,
    // Suites run side by side on one NATS server: only the NATS suites answer its subjects.
    LEDGER_NATS_REQUESTS: 'off',
    ...(await eventStoreEnvFor(dataDir)),
    ...options.env,
  });
  let builder = Test.createTestingModule({ imports: [AppModule.forRoot(config)] });
  if (options.clock) builder = builder.overrideProvider(Clock).useValue(options.clock);
  const moduleRef = await builder.compile();
  const app = moduleRef.createNestApplication<NestFastifyApplication>(ledgerHttpAdapter(), {
    logger: false,
  });
  configureHttp(app);
  if (options.grpcPort !== undefined) {
    app.connectMicroservice(grpcOptions({ grpcPort: options.grpcPort }, '127.0.0.1'));
    await app.startAllMicroservices();
  }
  await startHttp(app);
  return {
    app,
    http: request.agent(app.getHttpServer()).set('authorization', `Bearer ${await serviceToken()}`),
    anonymous: request(app.getHttpServer()),
    dataDir,
    close: () => app.close(),
  };
}
