import { availableCredits } from '../../../src/ledger/organization/burn-down';
import { at, DAY, HOUR, T0 } from '../../support/decider';
import {
  charge,
  charged,
  created,
  granted,
  memberAdded,
  organization,
} from './organization-fixtures';

describe('credits: grants and burn-down', () => {
  const grant = {
    type: 'GrantCredits',
    grantId: 'g1',
    amount: 100,
    source: 'purchase',
    priority: 100,
    expiresAt: null,
  } as const;

  it('grants credits with source, priority and expiry', () => {
    organization
      .given([created()])
      .when({ ...grant, priority: 5, expiresAt: at(T0 + DAY) })
      .then([
        {
          type: 'CreditsGranted',
          data: {
            grantId: 'g1',
            amount: 100,
            source: 'purchase',
            priority: 5,
            expiresAt: at(T0 + DAY),
          },
        },
      ]);
  });

  it('grants once per grantId: the same again changes nothing, other values conflict', () => {
    const given = organization.given([created(), granted('g1', 100)]);
    given.when(grant).thenNothing();
    given.when({ ...grant, amount: 99 }).thenThrows('CONFLICT');
  });

  it.each([
    ['an amount of 0', { amount: 0 }, 'amount'],
    ['a fractional amount', { amount: 1.5 }, 'amount'],
    ['a past expiry', { expiresAt: at(T0 - 1) }, 'expiresAt'],
    ['the source transfer', { source: 'transfer' as const }, 'source'],
    ['a negative priority', { priority: -1 }, 'priority'],
  ])('refuses a grant with %s', (_, change, field) => {
    const events = () =>
      organization
        .given([created()])
        .when({ ...grant, ...change })
        .events();
    expect(events).toThrow(
      expect.objectContaining({
        code: 'VALIDATION_FAILED',
        errors: [expect.objectContaining({ field })],
      }),
    );
  });

  it('burns by priority, then earliest expiry (none last), then oldest grant', () => {
    organization
      .given([
        created(),
        granted('plain-old', 10),
        granted('late', 10, { expiresAt: at(T0 + 2 * DAY) }),
        granted('plain-new', 10),
        granted('soon', 10, { expiresAt: at(T0 + DAY) }),
        granted('promo', 5, { priority: 1, expiresAt: at(T0 + 3 * DAY) }),
      ])
      .when(charge('r1', 44))
      .then([
        {
          type: 'CharmRunCharged',
          data: {
            runId: 'r1',
            charmId: 'summarize',
            userId: 'olga',
            amount: 44,
            allocations: [
              { grantId: 'promo', amount: 5 },
              { grantId: 'soon', amount: 10 },
              { grantId: 'late', amount: 10 },
              { grantId: 'plain-old', amount: 10 },
              { grantId: 'plain-new', amount: 9 },
            ],
          },
        },
      ]);
  });

  it('skips spent grants and records what each charge took', () => {
    const { state } = organization.given([
      created(),
      granted('a', 10),
      granted('b', 10),
      charged('r1', [{ grantId: 'a', amount: 10 }]),
    ]);
    expect(availableCredits(state, T0)).toBe(10);
    organization
      .given([
        created(),
        granted('a', 10),
        granted('b', 10),
        charged('r1', [{ grantId: 'a', amount: 10 }]),
      ])
      .when(charge('r2', 3))
      .then([
        {
          type: 'CharmRunCharged',
          data: {
            runId: 'r2',
            charmId: 'summarize',
            userId: 'olga',
            amount: 3,
            allocations: [{ grantId: 'b', amount: 3 }],
          },
        },
      ]);
  });
});

describe('credits: charm runs', () => {
  const funded = [created(), memberAdded('bob', 'member'), granted('g', 50)];

  it('charges a run once; the same again changes nothing; other values conflict', () => {
    const given = organization.given([
      ...funded,
      charged('r1', [{ grantId: 'g', amount: 20 }], { userId: 'bob' }),
    ]);
    given.when(charge('r1', 20, 'bob')).thenNothing();
    given.when(charge('r1', 21, 'bob')).thenThrows('CONFLICT');
    given.when({ ...charge('r1', 20, 'bob'), charmId: 'other' }).thenThrows('CONFLICT');
  });

  it('refuses a charge beyond the available credits, saying how many there are', () => {
    const events = () => organization.given(funded).when(charge('r1', 51)).events();
    expect(events).toThrow(
      expect.objectContaining({
        code: 'INSUFFICIENT_CREDITS',
        details: { available: 50, requested: 51 },
      }),
    );
  });

  it('charges only members of the organization', () => {
    organization
      .given(funded)
      .when(charge('r1', 1, 'stranger'))
      .thenThrows('FORBIDDEN');
  });

  it('never counts an expired grant, even before CreditsExpired is written', () => {
    const given = organization.given([
      created(),
      granted('short', 30, { expiresAt: at(T0 + HOUR) }),
      granted('long', 5),
    ]);
    expect(availableCredits(given.state, T0 + HOUR - 1)).toBe(35);
    expect(availableCredits(given.state, T0 + HOUR)).toBe(5);
    given.when(charge('r1', 6), T0 + HOUR).thenThrows('INSUFFICIENT_CREDITS');
    given.when(charge('r1', 5), T0 + HOUR).then([
      {
        type: 'CharmRunCharged',
        data: {
          runId: 'r1',
          charmId: 'summarize',
          userId: 'olga',
          amount: 5,
          allocations: [{ grantId: 'long', amount: 5 }],
        },
      },
    ]);
  });

  it('writes CreditsExpired for what is left of grants whose time is up', () => {
    const given = organization.given([
      created(),
      granted('short', 30, { expiresAt: at(T0 + HOUR) }),
      charged('r1', [{ grantId: 'short', amount: 10 }]),
      granted('long', 5),
    ]);
    given.when({ type: 'ExpireDue' }, T0 + HOUR - 1).thenNothing();
    given
      .when({ type: 'ExpireDue' }, T0 + HOUR)
      .then([{ type: 'CreditsExpired', data: { grantId: 'short', amount: 20 } }]);
  });
});

describe('credits: refunds', () => {
  const run = [
    created(),
    granted('a', 10, { priority: 1 }),
    granted('b', 10),
    charged('r1', [
      { grantId: 'a', amount: 10 },
      { grantId: 'b', amount: 5 },
    ]),
  ];
  const refund = (amount?: number, refundId?: string) =>
    ({ type: 'RefundCharmRun', runId: 'r1', amount, refundId }) as const;

  it('refunds the whole run by default, into the grants it came from', () => {
    organization
      .given(run)
      .when(refund())
      .then([
        {
          type: 'CharmRunRefunded',
          data: {
            charmId: 'summarize',
            userId: 'olga',
            chargedAt: at(T0),
            runId: 'r1',
            amount: 15,
            allocations: [
              { grantId: 'b', amount: 5 },
              { grantId: 'a', amount: 10 },
            ],
          },
        },
      ]);
  });

  it('refunds in part, last taken first back', () => {
    organization
      .given(run)
      .when(refund(7))
      .then([
        {
          type: 'CharmRunRefunded',
          data: {
            charmId: 'summarize',
            userId: 'olga',
            chargedAt: at(T0),
            runId: 'r1',
            amount: 7,
            allocations: [
              { grantId: 'b', amount: 5 },
              { grantId: 'a', amount: 2 },
            ],
          },
        },
      ]);
  });

  it('never refunds more than was charged', () => {
    const partly = organization.given([
      ...run,
      {
        type: 'CharmRunRefunded',
        data: {
          charmId: 'summarize',
          userId: 'olga',
          chargedAt: at(T0),
          runId: 'r1',
          amount: 10,
          allocations: [
            { grantId: 'b', amount: 5 },
            { grantId: 'a', amount: 5 },
          ],
        },
      },
    ]);
    partly.when(refund(6)).thenThrows('CONFLICT', /at most 5/);
    partly.when(refund(5)).then([
      {
        type: 'CharmRunRefunded',
        data: {
          charmId: 'summarize',
          userId: 'olga',
          chargedAt: at(T0),
          runId: 'r1',
          amount: 5,
          allocations: [{ grantId: 'a', amount: 5 }],
        },
      },
    ]);
    const all = organization.given([
      ...run,
      {
        type: 'CharmRunRefunded',
        data: {
          charmId: 'summarize',
          userId: 'olga',
          chargedAt: at(T0),
          runId: 'r1',
          amount: 15,
          allocations: [
            { grantId: 'b', amount: 5 },
            { grantId: 'a', amount: 10 },
          ],
        },
      },
    ]);
    all.when(refund()).thenThrows('CONFLICT', /fully refunded/);
  });

  it('refuses to refund a run it does not know', () => {
    organization.given(run).when({ type: 'RefundCharmRun', runId: 'nope' }).thenThrows('NOT_FOUND');
  });

  it('expires credits again at once when they go back into an expired grant, and says so', () => {
    organization
      .given([
        created(),
        granted('short', 10, { expiresAt: at(T0 + HOUR) }),
        granted('long', 10),
        charged('r1', [{ grantId: 'short', amount: 4 }]),
      ])
      .when({ type: 'RefundCharmRun', runId: 'r1' }, T0 + 2 * HOUR)
      .then([
        {
          type: 'CharmRunRefunded',
          data: {
            charmId: 'summarize',
            userId: 'olga',
            chargedAt: at(T0),
            runId: 'r1',
            amount: 4,
            allocations: [{ grantId: 'short', amount: 4 }],
          },
        },
        { type: 'CreditsExpired', data: { grantId: 'short', amount: 4 } },
      ]);
  });

  it('makes a refund with a refundId happen once', () => {
    const given = organization.given([
      ...run,
      {
        type: 'CharmRunRefunded',
        data: {
          charmId: 'summarize',
          userId: 'olga',
          chargedAt: at(T0),
          runId: 'r1',
          amount: 3,
          allocations: [{ grantId: 'b', amount: 3 }],
          refundId: 'rf1',
        },
      },
    ]);
    given.when(refund(3, 'rf1')).thenNothing();
    given.when(refund(4, 'rf1')).thenThrows('CONFLICT');
    expect(given.state.runs.get('r1')?.refunded).toBe(3);
  });
});
