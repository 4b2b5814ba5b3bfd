import fc from 'fast-check';
import type { SchemaObject } from 'ajv';
import { IsEmail, IsInt, Min } from 'class-validator';
import { Type } from 'class-transformer';
import { acceptedAsIs, compiledCheckOf, schemaOf } from '../../../src/api/compiled-check';
import * as credits from '../../../src/api/http/dto/credits.dto';
import * as organizations from '../../../src/api/http/dto/organizations.dto';
import * as queries from '../../../src/api/http/dto/queries.dto';
import * as users from '../../../src/api/http/dto/users.dto';
import { validatedByClassValidator } from '../../../src/api/http/validation.pipe';
import * as nats from '../../../src/api/nats/nats.dto';
import { LedgerError } from '../../../src/ledger/errors';
import { MAX_AMOUNT } from '../../../src/ledger/identifiers';

/**
 * The compiled check lets a body skip class-validator, so it must never accept one that
 * class-validator refuses, and what it hands on must be what class-validator would have.
 * Bodies are built from each DTO's own schema (so a rule stated too loosely there is
 * exercised at its edges) and from a pool of values that are wrong for some rule.
 */
type Dto = new () => object;

const DTOS: [string, Dto][] = Object.entries({
  ...credits,
  ...organizations,
  ...users,
  ...queries,
  ...nats,
}).filter((entry): entry is [string, Dto] => typeof entry[1] === 'function');

/** The requests every Charm run and grant goes through must keep the fast path. */
const MUST_BE_COMPILED = [
  'ChargeCharmRunDto',
  'GrantCreditsDto',
  'RefundRequest',
  'ReserveRequest',
  'CaptureRequest',
  'ReleaseRequest',
  'GrantRequest',
  'BalanceRequest',
  'AddMemberDto',
  'LowBalanceThresholdDto',
];

const EDGE_VALUES = fc.constantFrom<unknown>(
  null,
  true,
  false,
  0,
  -1,
  0.5,
  1.5,
  MAX_AMOUNT,
  MAX_AMOUNT + 1,
  2 ** 53,
  1e21,
  '',
  '10',
  '-a',
  '_a',
  'a'.repeat(64),
  'a'.repeat(65),
  'a\n',
  'é',
  '2025-01-31T12:00:00',
  '2025-02-30T12:00:00Z',
  '2025-01-31',
  [],
  {},
  ['a'],
  { amount: 1 },
);

const anyJsonValue: fc.Arbitrary<unknown> = fc.oneof(
  EDGE_VALUES,
  fc.string(),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.date({ noInvalidDate: true }).map((date) => date.toISOString()),
);

/** A value the property's own schema says is valid: the compiled check must be right here. */
function validFor(schema: SchemaObject): fc.Arbitrary<unknown> {
  const rules: SchemaObject[] = schema.allOf ?? [];
  const pattern = rules.find((rule) => rule.pattern)?.pattern as string | undefined;
  if (pattern) return fc.stringMatching(new RegExp(pattern));
  const allowed = rules.find((rule) => rule.enum)?.enum as unknown[] | undefined;
  if (allowed) return fc.constantFrom(...allowed);
  if (rules.some((rule) => rule.format)) {
    return fc
      .tuple(
        fc.date({ noInvalidDate: true, min: new Date(0), max: new Date('9999-12-31') }),
        fc.constantFrom('Z', '+02:00', '-11:30'),
      )
      .map(([date, zone]) => date.toISOString().replace('Z', zone));
  }
  const minimum = Math.max(...rules.map((rule) => rule.minimum ?? -(2 ** 53)));
  const maximum = Math.min(...rules.map((rule) => rule.maximum ?? 2 ** 53));
  return fc.oneof(
    fc.constantFrom(minimum, maximum),
    fc.integer({ min: Math.max(minimum, -(2 ** 31)), max: Math.min(maximum, 2 ** 31) }),
  );
}

const EXTRA_KEYS = ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'extra'];

/** A body as it comes off the wire: built as JSON text, so `__proto__` is a plain key. */
function bodiesFor(schema: SchemaObject): fc.Arbitrary<unknown> {
  const fields = Object.entries(schema.properties as Record<string, SchemaObject>).map(
    ([name, property]) =>
      fc
        .option(
          fc.oneof(
            { arbitrary: validFor(property), weight: 6 },
            { arbitrary: anyJsonValue, weight: 1 },
          ),
          { freq: 8, nil: undefined },
        )
        .map((value) => [name, value] as const),
  );
  const extras = fc.array(fc.tuple(fc.constantFrom(...EXTRA_KEYS), anyJsonValue), {
    maxLength: 1,
  });
  return fc
    .tuple(fc.tuple(...fields), fc.option(extras, { freq: 6, nil: [] }))
    .map(([own, extra]) => {
      const entries = [...own.filter(([, value]) => value !== undefined), ...extra];
      return JSON.parse(
        `{${entries.map(([key, value]) => `${JSON.stringify(key)}:${JSON.stringify(value)}`).join(',')}}`,
      ) as unknown;
    });
}

function byClassValidator(dto: Dto, body: unknown): object | LedgerError {
  try {
    return validatedByClassValidator(dto, body as object);
  } catch (error) {
    if (error instanceof LedgerError) return error;
    throw error;
  }
}

describe('the compiled check of a DTO', () => {
  it.each(MUST_BE_COMPILED)('is there for %s', (name) => {
    const dto = DTOS.find(([dtoName]) => dtoName === name)?.[1];
    expect(dto).toBeDefined();
    expect(compiledCheckOf(dto!)).toBeDefined();
  });

  it.each(DTOS.filter(([, dto]) => schemaOf(dto)).map(([name, dto]) => ({ name, dto })))(
    'never accepts what class-validator refuses, and hands on the same object: $name',
    ({ dto }) => {
      let accepted = 0;
      const runs = 1500;
      fc.assert(
        fc.property(bodiesFor(schemaOf(dto)!), (body) => {
          const fast = acceptedAsIs(dto, body);
          if (fast === undefined) return;
          accepted += 1;
          const slow = byClassValidator(dto, body);
          expect(slow).not.toBeInstanceOf(LedgerError);
          expect(fast).toStrictEqual(slow);
          expect(Object.getPrototypeOf(fast)).toBe(dto.prototype);
        }),
        { numRuns: runs },
      );
      // Most bodies are valid: a check that accepted next to nothing would prove nothing.
      expect(accepted).toBeGreaterThan(runs / 10);
    },
  );

  it('refuses the bodies class-validator must answer: null for an optional field, a number as a string, an unknown field', () => {
    const charge = { runId: 'r1', charmId: 'c1', userId: 'u1', amount: 10 };
    expect(acceptedAsIs(credits.ChargeCharmRunDto, charge)).toMatchObject(charge);
    for (const body of [
      { ...charge, organizationId: null },
      { ...charge, amount: '10' },
      { ...charge, amount: 10.5 },
      { ...charge, note: 'x' },
      JSON.parse('{"runId":"r1","charmId":"c1","userId":"u1","amount":10,"__proto__":{}}'),
      [charge],
      'r1',
    ]) {
      expect(acceptedAsIs(credits.ChargeCharmRunDto, body)).toBeUndefined();
    }
  });

  it('is left out for a DTO with a rule it does not state or a conversion of class-transformer', () => {
    class WithEmail {
      @IsEmail()
      email!: string;
    }
    class WithConversion {
      @Type(() => Number)
      @IsInt()
      count!: number;
    }
    class WithRulesOnly {
      @Min(1)
      @IsInt()
      count!: number;
    }
    expect(compiledCheckOf(WithEmail)).toBeUndefined();
    expect(compiledCheckOf(WithConversion)).toBeUndefined();
    // @Min before @IsInt: each rule stays its own allOf branch, so 1.5 is still refused.
    expect(acceptedAsIs(WithRulesOnly, { count: 2 })).toStrictEqual(
      Object.assign(new WithRulesOnly(), { count: 2 }),
    );
    expect(acceptedAsIs(WithRulesOnly, { count: 1.5 })).toBeUndefined();
  });
});
