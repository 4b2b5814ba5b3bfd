import { createHash } from 'node:crypto';

/**
 * The id of a user's personal organization: `personal-{userId}`, or a digest of the user id
 * when that would be longer than an identifier may be. Company organizations may not use
 * the `personal-` prefix, so this id is never taken.
 */
export function personalOrganizationId(userId: string): string {
  const plain = `${PERSONAL_PREFIX}${userId}`;
  if (plain.length <= 64) return plain;
  return `${PERSONAL_PREFIX}${createHash('sha256').update(userId).digest('hex').slice(0, 40)}`;
}

export const PERSONAL_PREFIX = 'personal-';

export const personalOrganizationName = (userName: string | undefined) =>
  userName === undefined ? 'Personal' : `${userName} (personal)`;
