import { LoggerService } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { configureHttp, ledgerHttpAdapter, startHttp } from '../../../src/api/http/http-setup';

/** Collects what the application logs, so tests can read it and the output stays quiet. */
export class CollectingLogger implements LoggerService {
  readonly lines: { level: string; message: unknown; params: unknown[] }[] = [];
  log(message: unknown, ...params: unknown[]) {
    this.lines.push({ level: 'log', message, params });
  }
  error(message: unknown, ...params: unknown[]) {
    this.lines.push({ level: 'error', message, params });
  }
  warn(message: unknown, ...params: unknown[]) {
    this.lines.push({ level: 'warn', message, params });
  }
  debug(message: unknown, ...params: unknown[]) {
    this.lines.push({ level: 'debug', message, params });
  }
  verbose(message: unknown, ...params: unknown[]) {
    this.lines.push({ level: 'verbose', message, params });
  }
  errors(): string[] {
    return this.lines
      .filter((line) => line.level === 'error')
      .map((line) => [line.message, ...line.params].map(asText).join(' '));
  }
}

/** A logged value as text; an object's errors keep their stack (JSON would drop it). */
function asText(value: unknown): string {
  if (typeof value !== 'object' || value === null) return String(value);
  return JSON.stringify(value, (_key, field: unknown) =>
    field instanceof Error ? { message: field.message, stack: field.stack } : field,
  );
}

/** An application as main.ts builds it (configureHttp), around the given module metadata. */
export async function createHttpTestApp(metadata: {
  imports?: Parameters<typeof Test.createTestingModule>[0]['imports'];
  controllers?: (new (...args: never[]) => unknown)[];
  providers?: Parameters<typeof Test.createTestingModule>[0]['providers'];
}): Promise<{ app: NestFastifyApplication; logger: CollectingLogger }> {
  const moduleRef = await Test.createTestingModule(metadata).compile();
  const logger = new CollectingLogger();
  const app = moduleRef.createNestApplication<NestFastifyApplication>(ledgerHttpAdapter(), {
    logger,
  });
  configureHttp(app);
  await startHttp(app);
  return { app, logger };
}
