const credits = new Intl.NumberFormat('en-US');

export const formatCredits = (value: number) => credits.format(value);

/** Times in UTC, as the ledger records them: audits compare them with logs. */
export const formatTime = (value: string | number) =>
  new Date(value).toISOString().replace('T', ' ').slice(0, 19);

export const formatDay = (value: number) => new Date(value).toISOString().slice(0, 10);

export const formatExpiry = (value: string | null) => (value ? formatTime(value) : 'never');

/** Today and the first of this month, UTC, as the usage report's defaults. */
export function thisMonth(now = new Date()): { from: string; to: string } {
  const to = now.toISOString().slice(0, 10);
  return { from: `${to.slice(0, 8)}01`, to };
}
