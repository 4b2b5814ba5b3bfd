/** API.md: every identifier matches this, so it can never smuggle into a stream name or subject. */
export const IDENTIFIER_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

export const isIdentifier = (value: unknown): value is string =>
  typeof value === 'string' && IDENTIFIER_PATTERN.test(value);

/** Amounts are whole credits, 1 to 10^12 per operation. */
export const MAX_AMOUNT = 1_000_000_000_000;

export const isAmount = (value: unknown): value is number =>
  typeof value === 'number' && Number.isSafeInteger(value) && value >= 1 && value <= MAX_AMOUNT;

export const organizationStreamId = (organizationId: string) => `organization-${organizationId}`;
export const userStreamId = (userId: string) => `user-${userId}`;
