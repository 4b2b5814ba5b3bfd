import Ajv, { type SchemaObject, type ValidateFunction } from 'ajv';
import { getMetadataStorage } from 'class-validator';
import type { ValidationMetadata } from 'class-validator/types/metadata/ValidationMetadata';
import { TransformationType } from 'class-transformer';
// class-transformer keeps its decorators' metadata here and exports it nowhere else.
import { defaultMetadataStorage } from 'class-transformer/cjs/storage';
import { IDENTIFIER_PATTERN, MAX_AMOUNT } from '../ledger/identifiers';
import { isIsoDateTime } from './http/validators';

/**
 * A DTO's class-validator rules as one JSON Schema, compiled once by ajv: the edges run it
 * first, and only a body it refuses goes through class-transformer and class-validator, which
 * stay the one source of the rules and of every error message. Validating the usual, valid
 * request that way made 40% of the request thread's garbage (`npm run bench -- --allocations`).
 *
 * So it must never accept what class-validator refuses; refusing more only costs the slow
 * path. Each rule below maps to a schema at least as strict as the rule, a property's rules
 * are combined with allOf (never merged), and a DTO with any rule, option or class-transformer
 * decorator not listed here gets no compiled check at all. test/unit/http/compiled-check
 * holds both paths to that on every DTO the edges validate.
 */
const RULES: Record<string, (constraints: unknown[]) => SchemaObject> = {
  isLedgerId: () => ({ type: 'string', pattern: IDENTIFIER_PATTERN.source }),
  isCreditAmount: () => ({ type: 'integer', minimum: 1, maximum: MAX_AMOUNT }),
  isIsoDateTime: () => ({ type: 'string', format: 'ledger-date-time' }),
  isInt: () => ({ type: 'integer' }),
  // class-validator compares with ===; every list here is of strings or numbers.
  isIn: ([allowed]) => ({ enum: allowed as unknown[] }),
  min: ([minimum]) => ({ type: 'number', minimum: minimum as number }),
  max: ([maximum]) => ({ type: 'number', maximum: maximum as number }),
};

/** @IsOptional: class-validator skips the property's rules when it is null or undefined. */
const IS_OPTIONAL = 'isOptional';

const ajv = new Ajv({
  allErrors: false,
  coerceTypes: false,
  useDefaults: false,
  removeAdditional: false,
  strict: true,
}).addFormat('ledger-date-time', { type: 'string', validate: isIsoDateTime });

type Dto = abstract new (...args: never[]) => unknown;

const compiled = new Map<Dto, ValidateFunction | undefined>();

/**
 * The compiled check of a DTO: true means class-validator (whitelist, forbidNonWhitelisted)
 * would accept the plain body as it is; false means nothing, ask class-validator. Undefined
 * when the DTO has a rule this file does not state.
 */
export function compiledCheckOf(dto: Dto): ValidateFunction | undefined {
  if (!compiled.has(dto)) {
    const schema = schemaOf(dto);
    compiled.set(dto, schema && ajv.compile(schema));
  }
  return compiled.get(dto);
}

/**
 * The body as the DTO's instance, built as class-transformer builds it, if the compiled check
 * accepts it; undefined means ask class-validator.
 */
export function acceptedAsIs<T extends object>(dto: new () => T, body: unknown): T | undefined {
  return compiledCheckOf(dto)?.(body) ? Object.assign(new dto(), body) : undefined;
}

/** The DTO's JSON Schema, or undefined if any of its rules is not one of RULES. */
export function schemaOf(dto: Dto): SchemaObject | undefined {
  const storage = getMetadataStorage();
  const metadatas = storage.getTargetValidationMetadatas(dto, '', true, false);
  const byProperty = new Map<string, ValidationMetadata[]>();
  for (const metadata of metadatas) {
    byProperty.set(metadata.propertyName, [
      ...(byProperty.get(metadata.propertyName) ?? []),
      metadata,
    ]);
  }
  if (byProperty.size === 0 || hasTransforms(dto, [...byProperty.keys()])) return undefined;
  const properties: Record<string, SchemaObject> = {};
  const required: string[] = [];
  for (const [property, rules] of byProperty) {
    const schemas: SchemaObject[] = [];
    let optional = false;
    for (const rule of rules) {
      if (rule.each || rule.always || (rule.groups?.length ?? 0) > 0) return undefined;
      if (rule.type === 'conditionalValidation') {
        // @IsOptional lets an absent property through; any other condition (@ValidateIf)
        // only ever lets more through, so leaving it out keeps the schema the stricter.
        if (rule.name === IS_OPTIONAL) optional = true;
        continue;
      }
      if (rule.type !== 'customValidation' || !rule.constraintCls) return undefined;
      const name = storage.getTargetValidatorConstraints(rule.constraintCls)[0]?.name;
      const schema = name === undefined ? undefined : RULES[name]?.(rule.constraints ?? []);
      if (!schema) return undefined;
      schemas.push(schema);
    }
    properties[property] = schemas.length > 0 ? { allOf: schemas } : {};
    if (!optional) required.push(property);
  }
  return { type: 'object', properties, required, additionalProperties: false };
}

/** @Transform, @Type, @Expose or @Exclude: the instance would differ from the plain body. */
function hasTransforms(dto: Dto, properties: string[]): boolean {
  return (
    defaultMetadataStorage.getStrategy(dto) !== 'none' ||
    defaultMetadataStorage.getExposedMetadatas(dto).length > 0 ||
    defaultMetadataStorage.getExcludedMetadatas(dto).length > 0 ||
    properties.some(
      (property) =>
        defaultMetadataStorage.findTypeMetadata(dto, property) !== undefined ||
        defaultMetadataStorage.findTransformMetadatas(
          dto,
          property,
          TransformationType.PLAIN_TO_CLASS,
        ).length > 0,
    )
  );
}
