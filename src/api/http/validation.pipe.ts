import { ArgumentMetadata, Injectable, ValidationPipe } from '@nestjs/common';
import { plainToInstance, type ClassConstructor } from 'class-transformer';
import { getMetadataStorage, validateSync, type ValidationError } from 'class-validator';
import { FieldError, ValidationFailed } from '../../ledger/errors';
import { acceptedAsIs } from '../compiled-check';

/**
 * The one validation of every DTO at the HTTP edge (bodies, queries, path parameters):
 * unknown fields are refused, nothing is converted implicitly (the string "10" is not an
 * amount), and a failure is the domain's ValidationFailed with one error per field, which
 * the problem-details filter turns into a 400.
 *
 * Query and path values arrive as strings: their DTOs convert explicitly (@Transform, @Type)
 * or validate strings; `transform` is on, so those conversions apply and the handler gets
 * an instance of the DTO.
 */
@Injectable()
export class LedgerValidationPipe extends ValidationPipe {
  constructor() {
    super({
      whitelist: true,
      forbidNonWhitelisted: true,
      transform: true,
      transformOptions: { enableImplicitConversion: false },
      validationError: { target: false, value: false },
      exceptionFactory: (errors: ValidationError[]) => validationFailedFrom(errors),
    });
  }

  override async transform(value: unknown, metadata: ArgumentMetadata): Promise<unknown> {
    // A whole body bound to a DTO must be a JSON object. A missing body (undefined) is left
    // to the DTO: its required fields are reported one by one, and a DTO without any may
    // be sent without a body.
    const isWholeBody = metadata.type === 'body' && !metadata.data && this.toValidate(metadata);
    const accepted = isWholeBody && metadata.metatype && acceptedAsIs(metadata.metatype, value);
    if (accepted) return accepted;
    if (isWholeBody && value !== undefined && !isJsonObject(value)) {
      throw new ValidationFailed([{ field: 'body', message: 'must be a JSON object' }]);
    }
    if (metadata.type === 'body') assertSafeJson(value);
    // Taken before Nest's pipe silently deletes `constructor` and `__proto__` from the body.
    const fields = isJsonObject(value) ? Object.keys(value) : [];
    const transformed: unknown = await super.transform(value, metadata);
    if (isWholeBody && metadata.metatype) assertKnownFields(fields, metadata.metatype);
    return transformed;
  }
}

/** Far deeper than any request of the API; shallow enough for class-transformer's recursion. */
export const MAX_JSON_DEPTH = 32;

/**
 * What class-transformer and class-validator do not catch in a JSON body, found by the fault
 * suite, refused as VALIDATION_FAILED before any DTO is built: nesting a few thousand levels
 * deep overflowed class-transformer's recursion (a 500). Walked without recursion of its own.
 */
export function assertSafeJson(value: unknown, field = 'body'): void {
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [current, depth] = stack.pop()!;
    if (typeof current !== 'object' || current === null) continue;
    if (depth > MAX_JSON_DEPTH) {
      throw new ValidationFailed([
        { field, message: `is nested deeper than ${MAX_JSON_DEPTH} levels` },
      ]);
    }
    for (const child of Object.values(current)) stack.push([child, depth + 1]);
  }
}

/**
 * Refuses fields the DTO does not declare, by the DTO's own list of properties; run after
 * class-validator, which reports every other bad field. forbidNonWhitelisted looks names up
 * in a plain object, so a field named after an inherited member (`constructor`...) slipped
 * through and the request went on as if it were not there (found by the fault suite).
 */
export function assertKnownFields(
  fields: string[],
  dto: abstract new (...args: never[]) => unknown,
): void {
  const known = new Set(
    getMetadataStorage()
      .getTargetValidationMetadatas(dto, '', false, false)
      .map((metadata) => metadata.propertyName),
  );
  const unknown = fields.filter((key) => !known.has(key));
  if (unknown.length > 0) {
    throw new ValidationFailed(unknown.map((field) => ({ field, message: 'is not allowed' })));
  }
}

/**
 * A plain JSON object checked as the pipe checks a body, in this turn (no DTO has an async
 * rule): for the edges without Nest's pipe (NATS), and the reference the compiled check is
 * held to.
 */
export function validatedByClassValidator<T extends object>(
  dto: ClassConstructor<T>,
  body: object,
): T {
  assertSafeJson(body);
  const instance = plainToInstance(dto, body, { enableImplicitConversion: false });
  const errors = validateSync(instance, { whitelist: true, forbidNonWhitelisted: true });
  if (errors.length > 0) throw validationFailedFrom(errors);
  assertKnownFields(Object.keys(body), dto);
  return instance;
}

export const createValidationPipe = (): LedgerValidationPipe => new LedgerValidationPipe();

const isJsonObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' &&
  value !== null &&
  !Array.isArray(value) &&
  !ArrayBuffer.isView(value) &&
  !(value instanceof ArrayBuffer);

/**
 * class-validator's errors as the domain's ValidationFailed. Exported so that other edges
 * (NATS) that validate the same DTOs report them the same way.
 */
export function validationFailedFrom(errors: ValidationError[]): ValidationFailed {
  const fieldErrors = toFieldErrors(errors);
  return new ValidationFailed(
    fieldErrors.length > 0 ? fieldErrors : [{ field: 'body', message: 'is not valid' }],
  );
}

/** One error per field; nested fields as `parent.child`, array items as `items.0.amount`. */
export function toFieldErrors(errors: ValidationError[], parentPath = ''): FieldError[] {
  const result: FieldError[] = [];
  for (const error of errors) {
    const field = parentPath ? `${parentPath}.${error.property}` : error.property;
    const constraints = Object.entries(error.constraints ?? {});
    if (constraints.length > 0) {
      const messages = constraints.map(([name, message]) =>
        name === 'whitelistValidation'
          ? 'is not allowed'
          : withoutProperty(message, error.property),
      );
      result.push({ field, message: [...new Set(messages)].join('; ') });
    }
    if (error.children && error.children.length > 0) {
      result.push(...toFieldErrors(error.children, field));
    }
  }
  return result;
}

/** class-validator's default messages start with the property name ("amount must be..."). */
function withoutProperty(message: string, property: string): string {
  return message.startsWith(`${property} `) ? message.slice(property.length + 1) : message;
}
