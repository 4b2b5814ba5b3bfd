/** The ledger's HTTP API as the console uses it: same origin, the pasted bearer token. */

export interface Allocation {
  grantId: string;
  amount: number;
}

export interface GrantBalance {
  grantId: string;
  source: string;
  remaining: number;
  held: number;
  priority: number;
  expiresAt: string | null;
}

export interface Balance {
  organizationId: string;
  available: number;
  reserved: number;
  grants: GrantBalance[];
  position: string;
}

export interface UserOrganizations {
  userId: string;
  activeOrganizationId: string | null;
  organizations: {
    organizationId: string;
    name: string;
    kind: string;
    role: string;
    active: boolean;
  }[];
}

export interface Organization {
  organizationId: string;
  name: string;
  kind: string;
}

export type GroupBy = 'day' | 'charm' | 'user';

export interface UsageRow {
  key: string;
  runs: number;
  credits: number;
  refunded: number;
}

export interface UsageReport {
  groupBy: GroupBy;
  from: string;
  to: string;
  rows: UsageRow[];
  totals: { runs: number; credits: number; refunded: number };
}

export interface LedgerEvent {
  revision: number;
  position: string;
  type: string;
  data: Record<string, unknown>;
  metadata: { eventId: string; occurredAt: string; actor?: { kind: string; id: string } };
}

export interface StateAt {
  at: string;
  revision: number | null;
  name: string;
  members: { userId: string; role: string }[];
  lowBalanceThreshold: number;
  available: number;
  reserved: number;
  grants: GrantBalance[];
}

export interface History {
  events: LedgerEvent[];
  nextRevision: number | null;
  stateAt?: StateAt;
}

export interface Verification {
  consistent: boolean;
  eventsReplayed: number;
  differences: Record<string, unknown>[];
}

/** A refusal of the ledger (problem+json), or no answer at all (status 0). */
export class LedgerProblem extends Error {
  constructor(
    readonly status: number,
    readonly code: string | undefined,
    readonly detail: string,
  ) {
    super(detail);
  }
}

export class LedgerApi {
  constructor(private readonly token: string) {}

  private async request(
    method: 'GET' | 'POST',
    path: string,
    accept = 'application/json',
  ): Promise<Response> {
    let response: Response;
    try {
      response = await fetch(path, {
        method,
        headers: { authorization: `Bearer ${this.token}`, accept },
        cache: 'no-store',
      });
    } catch {
      throw new LedgerProblem(0, undefined, 'the ledger could not be reached');
    }
    if (response.ok) return response;
    let code: string | undefined;
    let detail = response.statusText || `HTTP ${response.status}`;
    try {
      const problem = (await response.json()) as { code?: string; detail?: string };
      code = problem.code;
      if (problem.detail) detail = problem.detail;
    } catch {
      // Not problem+json (a proxy's page, say): the status says enough.
    }
    throw new LedgerProblem(response.status, code, detail);
  }

  private async json<T>(method: 'GET' | 'POST', path: string): Promise<T> {
    return (await (await this.request(method, path)).json()) as T;
  }

  userOrganizations(userId: string) {
    return this.json<UserOrganizations>('GET', `/v1/users/${enc(userId)}/organizations`);
  }

  organization(organizationId: string) {
    return this.json<Organization>('GET', `/v1/organizations/${enc(organizationId)}`);
  }

  balance(organizationId: string) {
    return this.json<Balance>('GET', `/v1/organizations/${enc(organizationId)}/balance`);
  }

  usage(organizationId: string, query: { from: string; to: string; groupBy: GroupBy }) {
    return this.json<UsageReport>('GET', usagePath(organizationId, query));
  }

  /** The API's own CSV, bytes untouched, and the file name it suggests. */
  async usageCsv(organizationId: string, query: { from: string; to: string; groupBy: GroupBy }) {
    const response = await this.request('GET', usagePath(organizationId, query), 'text/csv');
    const disposition = response.headers.get('content-disposition') ?? '';
    const fileName = /filename="([^"]+)"/.exec(disposition)?.[1] ?? 'usage.csv';
    return { blob: await response.blob(), fileName };
  }

  /** Every event of the organization, page by page, up to `max`. */
  async history(organizationId: string, max = 10_000): Promise<LedgerEvent[]> {
    const events: LedgerEvent[] = [];
    let from: number | null = 0;
    while (from !== null && events.length < max) {
      const page: History = await this.json<History>(
        'GET',
        `/v1/organizations/${enc(organizationId)}/history?fromRevision=${from}&limit=1000`,
      );
      events.push(...page.events);
      from = page.nextRevision;
    }
    return events;
  }

  /** The state as of `at`: `limit=1` because only the state is wanted, not the events. */
  async stateAt(organizationId: string, at: string): Promise<StateAt> {
    const history = await this.json<History>(
      'GET',
      `/v1/organizations/${enc(organizationId)}/history?limit=1&at=${enc(at)}`,
    );
    if (!history.stateAt) throw new LedgerProblem(500, undefined, 'the ledger sent no state');
    return history.stateAt;
  }

  verify(organizationId: string) {
    return this.json<Verification>('POST', `/v1/organizations/${enc(organizationId)}/audit/verify`);
  }
}

const enc = encodeURIComponent;

function usagePath(organizationId: string, query: { from: string; to: string; groupBy: GroupBy }) {
  const params = new URLSearchParams({ from: query.from, to: query.to, groupBy: query.groupBy });
  return `/v1/organizations/${enc(organizationId)}/usage?${params.toString()}`;
}

/** A sentence a person can act on, for any failure of a call. */
export function explain(error: unknown, organizationId?: string): string {
  if (!(error instanceof LedgerProblem)) {
    return `Something went wrong in the console: ${error instanceof Error ? error.message : String(error)}.`;
  }
  const where = organizationId ? ` in organization ${organizationId}` : '';
  const detail = sentence(error.detail);
  switch (error.status) {
    case 0:
      return 'The ledger could not be reached. Check your connection and try again.';
    case 401:
      return `Your token was not accepted: ${detail}. Sign in again with a valid token.`;
    case 403:
      return `You are not allowed to do this${where}: ${detail}. Ask an owner or admin for access, or use a token with the right scope.`;
    case 404:
      return `Not found: ${detail}.`;
    case 503:
      return `The ledger is unavailable right now: ${detail}. Try again in a moment.`;
    default:
      return `The ledger refused the request (${error.status}${error.code ? ` ${error.code}` : ''}): ${detail}.`;
  }
}

const sentence = (text: string) => text.replace(/[.\s]+$/, '');
