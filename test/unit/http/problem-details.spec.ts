import { Body, Controller, Get, Param, Post, Query } from '@nestjs/common';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { Transform, Type } from 'class-transformer';
import { IsInt, IsOptional, IsString, MaxLength, Min, ValidateNested } from 'class-validator';
import request from 'supertest';
import { IsCreditAmount, IsIsoDateTime, IsLedgerId } from '../../../src/api/http/validators';
import {
  LedgerError,
  LedgerErrorCode,
  conflict,
  forbidden,
  insufficientCredits,
  notFound,
  unavailable,
} from '../../../src/ledger/errors';
import { CollectingLogger, createHttpTestApp } from './test-app';

class AllocationDto {
  @IsLedgerId()
  grantId!: string;

  @IsCreditAmount()
  amount!: number;
}

class ChargeDto {
  @IsLedgerId()
  runId!: string;

  @IsLedgerId({ optional: true })
  organizationId?: string;

  @IsCreditAmount()
  amount!: number;

  @IsOptional()
  @IsString()
  @MaxLength(200)
  note?: string;

  @IsOptional()
  @ValidateNested()
  @Type(() => AllocationDto)
  allocation?: AllocationDto;
}

class RefundDto {
  @IsCreditAmount({ optional: true })
  amount?: number;
}

class OrganizationParams {
  @IsLedgerId()
  organizationId!: string;
}

class HistoryQuery {
  @IsIsoDateTime({ optional: true })
  at?: string;

  @IsOptional()
  @Transform(({ value }) =>
    typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value,
  )
  @IsInt()
  @Min(1)
  limit?: number;
}

const ledgerErrors: Record<Exclude<LedgerErrorCode, 'VALIDATION_FAILED'>, LedgerError> = {
  UNAUTHENTICATED: new LedgerError('UNAUTHENTICATED', 'No bearer token'),
  FORBIDDEN: forbidden('Not a member of acme'),
  NOT_FOUND: notFound('No organization acme', { organizationId: 'acme' }),
  CONFLICT: conflict('runId r1 was used with another body', { runId: 'r1' }),
  INSUFFICIENT_CREDITS: insufficientCredits(5, 10),
  UNAVAILABLE: unavailable('Event store down', { position: 12n }),
};

@Controller('v1/test')
class TestController {
  @Post('charges')
  charge(@Body() charge: ChargeDto) {
    return { isDto: charge instanceof ChargeDto, charge };
  }

  @Post('refunds')
  refund(@Body() refund: RefundDto) {
    return { amount: refund.amount ?? null };
  }

  @Get('organizations/:organizationId')
  organization(@Param() params: OrganizationParams) {
    return params;
  }

  @Get('history')
  history(@Query() query: HistoryQuery) {
    return {
      at: query.at ?? null,
      limit: query.limit ?? null,
      isDto: query instanceof HistoryQuery,
    };
  }

  @Get('errors/:code')
  fail(@Param('code') code: keyof typeof ledgerErrors) {
    throw ledgerErrors[code];
  }

  @Get('bug')
  bug() {
    throw new Error('database password is hunter2');
  }

  @Get('bug-non-error')
  bugNonError() {
    throw 'a string, thrown';
  }

  @Get('database-gone')
  databaseGone() {
    // As TypeORM throws it when PostgreSQL drops the connection mid-query.
    const error = new Error('Query failed');
    Object.assign(error, { driverError: new Error('Connection terminated unexpectedly') });
    throw error;
  }

  @Get('database-refuses')
  databaseRefuses() {
    throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), {
      code: 'ECONNREFUSED',
    });
  }
}

const PROBLEM = /^application\/problem\+json/;

describe('HTTP edge: problem details and validation', () => {
  let app: NestFastifyApplication;
  let logger: CollectingLogger;
  const http = () => request(app.getHttpServer());

  beforeAll(async () => {
    ({ app, logger } = await createHttpTestApp({ controllers: [TestController] }));
  });
  afterAll(async () => {
    await app.close();
  });

  const validCharge = { runId: 'run-1', amount: 10 };

  it('passes a valid body through as an instance of the DTO', async () => {
    const res = await http()
      .post('/v1/test/charges')
      .send({ ...validCharge, allocation: { grantId: 'g_1', amount: 3 } });
    expect(res.status).toBe(201);
    expect(res.body).toEqual({
      isDto: true,
      charge: { ...validCharge, allocation: { grantId: 'g_1', amount: 3 } },
    });
  });

  describe('domain errors', () => {
    it.each([
      ['UNAUTHENTICATED', 401, 'unauthenticated'],
      ['FORBIDDEN', 403, 'forbidden'],
      ['NOT_FOUND', 404, 'not-found'],
      ['CONFLICT', 409, 'conflict'],
      ['INSUFFICIENT_CREDITS', 402, 'insufficient-credits'],
      ['UNAVAILABLE', 503, 'unavailable'],
    ] as const)('%s -> %i problem+json', async (code, status, slug) => {
      const res = await http().get(`/v1/test/errors/${code}`);
      expect(res.status).toBe(status);
      expect(res.headers['content-type']).toMatch(PROBLEM);
      expect(res.body).toMatchObject({
        type: `https://charmiq.dev/problems/${slug}`,
        title: expect.any(String),
        status,
        code,
        detail: ledgerErrors[code].message,
      });
      expect(res.body.errors).toBeUndefined();
    });

    it('puts the numbers of an insufficient-credits error in the problem', async () => {
      const res = await http().get('/v1/test/errors/INSUFFICIENT_CREDITS');
      expect(res.body).toMatchObject({ available: 5, requested: 10 });
    });

    it('asks to retry an UNAVAILABLE answer later, bigint details as strings', async () => {
      const res = await http().get('/v1/test/errors/UNAVAILABLE');
      expect(res.headers['retry-after']).toBe('1');
      expect(res.body.position).toBe('12');
    });
  });

  /** Posts a charge and returns the fields the 400 problem names. */
  async function rejectedFields(body: unknown, contentType = 'application/json') {
    const res = await http()
      .post('/v1/test/charges')
      .set('Content-Type', contentType)
      .send(typeof body === 'string' ? body : JSON.stringify(body));
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toMatch(PROBLEM);
    expect(res.body).toMatchObject({
      type: 'https://charmiq.dev/problems/validation-failed',
      status: 400,
      code: 'VALIDATION_FAILED',
    });
    expect(res.body.errors.length).toBeGreaterThan(0);
    for (const error of res.body.errors) {
      expect(error).toEqual({ field: expect.any(String), message: expect.any(String) });
    }
    return (res.body.errors as { field: string; message: string }[]).map((e) => e.field);
  }

  describe('bodies that are not a JSON object', () => {
    it('malformed JSON -> 400 naming body', async () => {
      expect(await rejectedFields('{"runId": "r1", ')).toEqual(['body']);
    });

    it.each([
      ['an array', '[{"runId":"r1","amount":1}]'],
      ['a string', '"hello"'],
      ['null', 'null'],
      ['a number', '42'],
    ])('%s -> 400 naming body', async (_name, raw) => {
      expect(await rejectedFields(raw)).toEqual(['body']);
    });

    it.each([
      ['text/plain', 'runId=r1&amount=1'],
      ['application/x-www-form-urlencoded', 'runId=r1&amount=1'],
    ])('a %s body -> 400 naming body', async (contentType, raw) => {
      expect(await rejectedFields(raw, contentType)).toEqual(['body']);
    });

    it('a DTO without required fields accepts a request without a body', async () => {
      const res = await http().post('/v1/test/refunds');
      expect(res.status).toBe(201);
      expect(res.body).toEqual({ amount: null });
    });

    it('a missing body names each required field', async () => {
      const res = await http().post('/v1/test/charges');
      expect(res.status).toBe(400);
      expect(res.body.errors.map((e: { field: string }) => e.field).sort()).toEqual([
        'amount',
        'runId',
      ]);
    });
  });

  describe('fields', () => {
    it('an unknown field -> 400 "is not allowed"', async () => {
      const res = await http()
        .post('/v1/test/charges')
        .send({ ...validCharge, theName: 'x' });
      expect(res.status).toBe(400);
      expect(res.body.errors).toEqual([{ field: 'theName', message: 'is not allowed' }]);
    });

    it('an unknown nested field is named by its path', async () => {
      const res = await http()
        .post('/v1/test/charges')
        .send({ ...validCharge, allocation: { grantId: 'g1', amount: 1, extra: true } });
      expect(res.status).toBe(400);
      expect(res.body.errors).toEqual([{ field: 'allocation.extra', message: 'is not allowed' }]);
    });

    it('a bad nested field is named by its path', async () => {
      expect(
        await rejectedFields({ ...validCharge, allocation: { grantId: 'g.1', amount: 1 } }),
      ).toEqual(['allocation.grantId']);
    });

    it.each([
      ['the string "10"', '10'],
      ['1.5', 1.5],
      ['0', 0],
      ['-1', -1],
      ['1e16', 1e16],
      ['more than 10^12', 1_000_000_000_001],
      ['null', null],
      ['true', true],
    ])('amount %s -> 400 naming amount', async (_name, amount) => {
      expect(await rejectedFields({ runId: 'r1', amount })).toEqual(['amount']);
    });

    it('says what an amount must be', async () => {
      const res = await http().post('/v1/test/charges').send({ runId: 'r1', amount: '10' });
      expect(res.body.errors).toEqual([
        { field: 'amount', message: 'must be an integer from 1 to 1000000000000' },
      ]);
    });

    it('accepts the largest amount', async () => {
      const res = await http()
        .post('/v1/test/charges')
        .send({ runId: 'r1', amount: 1_000_000_000_000 });
      expect(res.status).toBe(201);
    });

    it.each([
      ['a dot', 'acme.x'],
      ['a star', 'acme*'],
      ['a greater-than', 'acme>'],
      ['a slash', 'acme/x'],
      ['65 characters', 'a'.repeat(65)],
      ['a leading dash', '-acme'],
      ['a space', 'ac me'],
      ['nothing', ''],
      ['a number', 42],
    ])('an id with %s -> 400 naming the field', async (_name, id) => {
      expect(await rejectedFields({ ...validCharge, organizationId: id })).toEqual([
        'organizationId',
      ]);
      expect(await rejectedFields({ ...validCharge, runId: id })).toEqual(['runId']);
    });

    it('says what an id must match', async () => {
      const res = await http().post('/v1/test/charges').send({ runId: 'a.b', amount: 1 });
      expect(res.body.errors).toEqual([
        { field: 'runId', message: 'must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$' },
      ]);
    });

    it('accepts a 64-character id', async () => {
      const res = await http()
        .post('/v1/test/charges')
        .send({ ...validCharge, runId: 'a'.repeat(64) });
      expect(res.status).toBe(201);
    });

    it('reports every bad field once', async () => {
      expect((await rejectedFields({ runId: 'a.b', amount: '1', note: 5, x: 1 })).sort()).toEqual([
        'amount',
        'note',
        'runId',
        'x',
      ]);
    });
  });

  describe('large bodies', () => {
    it('a 1 MB string in a field reaches validation and names the field', async () => {
      const big = 'x'.repeat(1024 * 1024);
      expect(await rejectedFields({ ...validCharge, note: big })).toEqual(['note']);
      const res = await http()
        .post('/v1/test/charges')
        .send({ ...validCharge, runId: big });
      expect(res.status).toBe(400);
      expect(res.body.errors.map((e: { field: string }) => e.field)).toEqual(['runId']);
      // The answer does not echo the value back.
      expect(JSON.stringify(res.body).length).toBeLessThan(1000);
    });

    it('a 3 MB body -> 400 naming body, neither 413 nor 500', async () => {
      const huge = JSON.stringify({ ...validCharge, note: 'x'.repeat(3 * 1024 * 1024) });
      expect(await rejectedFields(huge)).toEqual(['body']);
    });
  });

  describe('path parameters and queries', () => {
    it('validates path parameters with a DTO', async () => {
      expect((await http().get('/v1/test/organizations/acme')).body).toEqual({
        organizationId: 'acme',
      });
      for (const id of ['acme.x', 'acme%2Fx', 'acme*', 'a'.repeat(65)]) {
        const res = await http().get(`/v1/test/organizations/${id}`);
        expect(res.status).toBe(400);
        expect(res.body.errors).toEqual([
          { field: 'organizationId', message: expect.stringContaining('must match') },
        ]);
      }
    });

    it('converts query values only where the DTO says so', async () => {
      const res = await http().get('/v1/test/history?at=2025-01-31T12:00:00Z&limit=5');
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ at: '2025-01-31T12:00:00Z', limit: 5, isDto: true });
    });

    it.each([
      ['at=yesterday', 'at'],
      ['at=2025-02-30T00:00:00Z', 'at'],
      ['at=2025-01-31T12:00:00', 'at'],
      ['limit=0', 'limit'],
      ['limit=ten', 'limit'],
      ['other=1', 'other'],
    ])('?%s -> 400 naming %s', async (query, field) => {
      const res = await http().get(`/v1/test/history?${query}`);
      expect(res.status).toBe(400);
      expect(res.body.errors.map((e: { field: string }) => e.field)).toEqual([field]);
    });
  });

  describe('routes and bugs', () => {
    it('an unknown route -> 404 problem', async () => {
      const res = await http().get('/v1/nothing-here');
      expect(res.status).toBe(404);
      expect(res.headers['content-type']).toMatch(PROBLEM);
      expect(res.body).toMatchObject({
        type: 'https://charmiq.dev/problems/not-found',
        status: 404,
        code: 'NOT_FOUND',
      });
    });

    it('a known path with another method -> 404 problem', async () => {
      const res = await http().delete('/v1/test/charges');
      expect(res.status).toBe(404);
      expect(res.body.code).toBe('NOT_FOUND');
    });

    it('a thrown Error -> 500 INTERNAL, logged with its stack, nothing of it in the body', async () => {
      const res = await http().get('/v1/test/bug');
      expect(res.status).toBe(500);
      expect(res.headers['content-type']).toMatch(PROBLEM);
      expect(res.body).toEqual({
        type: 'https://charmiq.dev/problems/internal',
        title: expect.any(String),
        status: 500,
        code: 'INTERNAL',
        detail: expect.any(String),
        // The request's id, as echoed: the way to the log line.
        requestId: res.headers['x-request-id'],
      });
      expect(JSON.stringify(res.body)).not.toMatch(/hunter2|at |\.ts/);
      const logged = logger.errors().join('\n');
      expect(logged).toContain('database password is hunter2');
      expect(logged).toContain('problem-details.spec.ts');
    });

    it('a thrown non-Error -> 500 INTERNAL', async () => {
      const res = await http().get('/v1/test/bug-non-error');
      expect(res.status).toBe(500);
      expect(res.body.code).toBe('INTERNAL');
      expect(JSON.stringify(res.body)).not.toContain('a string, thrown');
    });

    it.each(['database-gone', 'database-refuses'])(
      'a database that cannot be reached (%s) -> 503 UNAVAILABLE with Retry-After, not 500',
      async (path) => {
        const res = await http().get(`/v1/test/${path}`);
        expect(res.status).toBe(503);
        expect(res.headers['content-type']).toMatch(PROBLEM);
        expect(res.headers['retry-after']).toBe('1');
        expect(res.body).toMatchObject({ status: 503, code: 'UNAVAILABLE' });
        expect(JSON.stringify(res.body)).not.toMatch(/5432|terminated/);
      },
    );

    it('a bad percent-encoding in the path -> 400, not 500', async () => {
      const res = await http().get('/v1/test/organizations/%E0%A4%A');
      expect(res.status).toBe(400);
      expect(res.body.code).toBe('VALIDATION_FAILED');
    });
  });
});
