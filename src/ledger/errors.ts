/**
 * Typed domain errors. Each edge (HTTP, NATS, gRPC) maps `code` to its own error shape;
 * the domain never knows about status codes.
 */
export type LedgerErrorCode =
  | 'VALIDATION_FAILED'
  | 'UNAUTHENTICATED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'CONFLICT'
  | 'INSUFFICIENT_CREDITS'
  | 'UNAVAILABLE';

export interface FieldError {
  field: string;
  message: string;
}

export class LedgerError extends Error {
  constructor(
    readonly code: LedgerErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'LedgerError';
  }
}

export class ValidationFailed extends LedgerError {
  constructor(readonly errors: FieldError[]) {
    super('VALIDATION_FAILED', errors.map((e) => `${e.field}: ${e.message}`).join('; '), {
      errors,
    });
  }
}

export const notFound = (message: string, details?: Record<string, unknown>) =>
  new LedgerError('NOT_FOUND', message, details);
export const conflict = (message: string, details?: Record<string, unknown>) =>
  new LedgerError('CONFLICT', message, details);
export const forbidden = (message: string, details?: Record<string, unknown>) =>
  new LedgerError('FORBIDDEN', message, details);
export const insufficientCredits = (available: number, requested: number) =>
  new LedgerError(
    'INSUFFICIENT_CREDITS',
    `${requested} credits requested, ${available} available`,
    { available, requested },
  );
export const unavailable = (message: string, details?: Record<string, unknown>) =>
  new LedgerError('UNAVAILABLE', message, details);
