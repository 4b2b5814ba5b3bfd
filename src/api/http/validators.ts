import { applyDecorators } from '@nestjs/common';
import { ApiProperty } from '@nestjs/swagger';
import { IsOptional, ValidateBy, isISO8601 } from 'class-validator';
import { IDENTIFIER_PATTERN, MAX_AMOUNT, isAmount, isIdentifier } from '../../ledger/identifiers';

/**
 * Property decorators for the API's own rules (API.md), so every DTO states them the same way
 * and the OpenAPI document shows them. Messages leave the property name out: the problem
 * details name the field separately.
 */
export interface LedgerPropertyOptions {
  /** The field may be left out (adds @IsOptional and marks it optional in the docs). */
  optional?: boolean;
  description?: string;
  example?: unknown;
}

/** The part of the OpenAPI schema each rule states. */
interface RuleSchema {
  type: StringConstructor | 'integer';
  format?: string;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
}

function ledgerProperty(
  rule: PropertyDecorator,
  schema: RuleSchema,
  options: LedgerPropertyOptions,
): PropertyDecorator {
  const { optional = false, description, example } = options;
  return applyDecorators(
    ...(optional ? [IsOptional()] : []),
    rule,
    ApiProperty({
      ...schema,
      required: !optional,
      ...(description === undefined ? {} : { description }),
      ...(example === undefined ? {} : { example }),
    }),
  );
}

export const LEDGER_ID_MESSAGE = `must match ${IDENTIFIER_PATTERN.source}`;

/** An identifier (organizationId, userId, runId...): IDENTIFIER_PATTERN, nothing else. */
export function IsLedgerId(options: LedgerPropertyOptions = {}): PropertyDecorator {
  return ledgerProperty(
    ValidateBy({
      name: 'isLedgerId',
      validator: { validate: isIdentifier, defaultMessage: () => LEDGER_ID_MESSAGE },
    }),
    { type: String, pattern: IDENTIFIER_PATTERN.source, minLength: 1, maxLength: 64 },
    { example: 'acme', ...options },
  );
}

export const CREDIT_AMOUNT_MESSAGE = `must be an integer from 1 to ${MAX_AMOUNT}`;

/**
 * Whole credits: a JSON integer from 1 to MAX_AMOUNT. A numeric string ("10") is refused; the
 * validation pipe converts nothing implicitly.
 */
export function IsCreditAmount(options: LedgerPropertyOptions = {}): PropertyDecorator {
  return ledgerProperty(
    ValidateBy({
      name: 'isCreditAmount',
      validator: { validate: isAmount, defaultMessage: () => CREDIT_AMOUNT_MESSAGE },
    }),
    { type: 'integer', format: 'int64', minimum: 1, maximum: MAX_AMOUNT },
    { example: 100, ...options },
  );
}

/**
 * RFC 3339 (the ISO-8601 profile OpenAPI calls date-time): a full date and time with a zone,
 * so that no instant depends on the server's local time zone.
 */
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/;

export const isIsoDateTime = (value: unknown): value is string =>
  typeof value === 'string' &&
  DATE_TIME.test(value) &&
  isISO8601(value, { strict: true }) &&
  !Number.isNaN(Date.parse(value));

export const ISO_DATE_TIME_MESSAGE =
  'must be an ISO-8601 date-time with a time zone, e.g. 2025-01-31T12:00:00Z';

/** An instant as an ISO-8601 date-time string with a zone (Z or ±hh:mm). */
export function IsIsoDateTime(options: LedgerPropertyOptions = {}): PropertyDecorator {
  return ledgerProperty(
    ValidateBy({
      name: 'isIsoDateTime',
      validator: { validate: isIsoDateTime, defaultMessage: () => ISO_DATE_TIME_MESSAGE },
    }),
    { type: String, format: 'date-time' },
    { example: '2025-01-31T12:00:00Z', ...options },
  );
}
