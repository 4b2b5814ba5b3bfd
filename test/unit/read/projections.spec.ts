import { balanceProjection } from '../../../projections/balance.projection';
import {
  activeOrganizationProjection,
  membershipProjection,
} from '../../../projections/membership.projection';
import { usageProjection } from '../../../projections/usage.projection';
import { projectionSpec } from './projection-spec';

const ORG = 'organization-acme';
const allocation = (grantId: string, amount: number) => ({ grantId, amount });

describe('balance projection', () => {
  const spec = projectionSpec(balanceProjection);
  const grant = (grantId: string, amount: number, expiresAt: string | null = null) =>
    spec.recorded(ORG, 'CreditsGranted', {
      grantId,
      amount,
      source: 'purchase',
      priority: 5,
      expiresAt,
    });
  const row = (grantId: string, remaining: number, held = 0, amount = 100) =>
    expect.objectContaining({
      organization_id: 'acme',
      grant_id: grantId,
      remaining,
      held,
      amount,
    });

  it('adds a grant with all of it remaining', () => {
    spec
      .given([])
      .when(grant('g', 100, '2026-06-01T00:00:00.000Z'))
      .then('balance_grants', [
        expect.objectContaining({
          grant_id: 'g',
          source: 'purchase',
          priority: 5,
          expires_at: '2026-06-01T00:00:00.000Z',
          remaining: 100,
          held: 0,
        }),
      ]);
  });

  it.each([
    [
      'CharmRunCharged',
      { runId: 'r', charmId: 'c', userId: 'u', amount: 30, allocations: [allocation('g', 30)] },
      70,
      0,
    ],
    [
      'CreditsTransferredOut',
      { transferId: 't', toOrganizationId: 'b', amount: 30, allocations: [allocation('g', 30)] },
      70,
      0,
    ],
    ['CreditsExpired', { grantId: 'g', amount: 30 }, 70, 0],
    [
      'CreditsReserved',
      {
        reservationId: 'h',
        charmId: 'c',
        userId: 'u',
        amount: 30,
        expiresAt: 'x',
        allocations: [allocation('g', 30)],
      },
      70,
      30,
    ],
  ])('takes %s from the grants it names', (type, data, remaining, held) => {
    spec
      .given([grant('g', 100)])
      .when(spec.recorded(ORG, type, data))
      .then('balance_grants', [row('g', remaining, held)]);
  });

  it('gives refunds back to the grants they came from', () => {
    spec
      .given([
        grant('g', 100),
        spec.recorded(ORG, 'CharmRunCharged', {
          runId: 'r',
          charmId: 'c',
          userId: 'u',
          amount: 30,
          allocations: [allocation('g', 30)],
        }),
      ])
      .when(
        spec.recorded(ORG, 'CharmRunRefunded', {
          runId: 'r',
          amount: 10,
          allocations: [allocation('g', 10)],
          charmId: 'c',
          userId: 'u',
          chargedAt: 'x',
        }),
      )
      .then('balance_grants', [row('g', 80)]);
  });

  const held = () => [
    grant('g', 100),
    spec.recorded(ORG, 'CreditsReserved', {
      reservationId: 'h',
      charmId: 'c',
      userId: 'u',
      amount: 30,
      expiresAt: 'x',
      allocations: [allocation('g', 30)],
    }),
  ];

  it('spends what a capture took from the hold and gives the rest back', () => {
    spec
      .given(held())
      .when(
        spec.recorded(ORG, 'ReservationCaptured', {
          reservationId: 'h',
          runId: 'r',
          amount: 20,
          released: 10,
          allocations: [allocation('g', 20)],
          releasedAllocations: [allocation('g', 10)],
          charmId: 'c',
          userId: 'u',
        }),
      )
      .then('balance_grants', [row('g', 80, 0)]);
  });

  it('gives a released hold back', () => {
    spec
      .given(held())
      .when(
        spec.recorded(ORG, 'ReservationReleased', {
          reservationId: 'h',
          amount: 30,
          reason: 'expired',
          allocations: [allocation('g', 30)],
        }),
      )
      .then('balance_grants', [row('g', 100, 0)]);
  });

  it('adds a received transfer as a grant of source transfer', () => {
    spec
      .given([])
      .when(
        spec.recorded(ORG, 'CreditsTransferredIn', {
          transferId: 't',
          fromOrganizationId: 'b',
          amount: 25,
          grantId: 'transfer-t',
        }),
      )
      .then('balance_grants', [
        expect.objectContaining({
          grant_id: 'transfer-t',
          source: 'transfer',
          remaining: 25,
          expires_at: null,
        }),
      ]);
  });

  it('ignores other events and other streams', () => {
    expect(
      balanceProjection.handle(spec.recorded(ORG, 'MemberAdded', { userId: 'u', role: 'member' })),
    ).toEqual([]);
    expect(
      balanceProjection.handle(
        spec.recorded('user-u', 'UserRegistered', { userId: 'u', personalOrganizationId: 'p' }),
      ),
    ).toEqual([]);
  });
});

describe('usage projection', () => {
  const spec = projectionSpec(usageProjection);
  const charge = (runId: string, charmId: string, userId: string, amount: number, at: string) =>
    spec.recorded(
      ORG,
      'CharmRunCharged',
      { runId, charmId, userId, amount, allocations: [allocation('g', amount)] },
      at,
    );

  it('adds a run line and counts it in its day × charm × user', () => {
    const when = spec
      .given([charge('r1', 'sum', 'ann', 5, '2026-05-01T23:59:59.000Z')])
      .when(charge('r2', 'sum', 'ann', 7, '2026-05-01T08:00:00.000Z'));
    when.then('usage_daily', [
      {
        organization_id: 'acme',
        day: '2026-05-01',
        charm_id: 'sum',
        user_id: 'ann',
        runs: 2,
        credits: 12,
        refunded: 0,
      },
    ]);
    when.then('usage_runs', [
      expect.objectContaining({ run_id: 'r1', credits: 5, refunded: 0, day: '2026-05-01' }),
      expect.objectContaining({ run_id: 'r2', credits: 7, refunded: 0, day: '2026-05-01' }),
    ]);
  });

  it('counts a captured hold as a run of the captured amount', () => {
    spec
      .given([])
      .when(
        spec.recorded(
          ORG,
          'ReservationCaptured',
          {
            reservationId: 'h',
            runId: 'r',
            amount: 20,
            released: 10,
            allocations: [],
            releasedAllocations: [],
            charmId: 'long',
            userId: 'ben',
          },
          '2026-05-02T00:00:00.000Z',
        ),
      )
      .then('usage_daily', [
        {
          organization_id: 'acme',
          day: '2026-05-02',
          charm_id: 'long',
          user_id: 'ben',
          runs: 1,
          credits: 20,
          refunded: 0,
        },
      ]);
  });

  it("counts a refund on the run's own day, not the refund's", () => {
    const when = spec.given([charge('r1', 'sum', 'ann', 9, '2026-05-01T10:00:00.000Z')]).when(
      spec.recorded(
        ORG,
        'CharmRunRefunded',
        {
          runId: 'r1',
          amount: 4,
          allocations: [],
          charmId: 'sum',
          userId: 'ann',
          chargedAt: '2026-05-01T10:00:00.000Z',
        },
        '2026-05-09T10:00:00.000Z',
      ),
    );
    when.then('usage_daily', [
      {
        organization_id: 'acme',
        day: '2026-05-01',
        charm_id: 'sum',
        user_id: 'ann',
        runs: 1,
        credits: 9,
        refunded: 4,
      },
    ]);
    when.then('usage_runs', [expect.objectContaining({ run_id: 'r1', credits: 9, refunded: 4 })]);
  });

  it('ignores what is not a charge or refund', () => {
    expect(
      usageProjection.handle(
        spec.recorded(ORG, 'CreditsGranted', {
          grantId: 'g',
          amount: 1,
          source: 'plan',
          priority: 1,
          expiresAt: null,
        }),
      ),
    ).toEqual([]);
  });
});

describe('membership projection', () => {
  const spec = projectionSpec(membershipProjection);
  const created = () =>
    spec.recorded(ORG, 'OrganizationCreated', {
      organizationId: 'acme',
      name: 'Acme',
      kind: 'company',
      ownerUserId: 'olga',
    });

  it('records the organization and its owner', () => {
    const when = spec.given([]).when(created());
    when.then('organizations', [
      expect.objectContaining({
        organization_id: 'acme',
        name: 'Acme',
        kind: 'company',
        owner_user_id: 'olga',
        low_balance_threshold: 0,
      }),
    ]);
    when.then('memberships', [{ organization_id: 'acme', user_id: 'olga', role: 'owner' }]);
  });

  it('adds, re-roles and removes members', () => {
    spec
      .given([created()])
      .when(spec.recorded(ORG, 'MemberAdded', { userId: 'bob', role: 'member' }))
      .then('memberships', [
        { organization_id: 'acme', user_id: 'olga', role: 'owner' },
        { organization_id: 'acme', user_id: 'bob', role: 'member' },
      ]);
    const added = spec.recorded(ORG, 'MemberAdded', { userId: 'bob', role: 'member' });
    spec
      .given([created(), added])
      .when(spec.recorded(ORG, 'MemberRoleChanged', { userId: 'bob', role: 'admin' }))
      .then('memberships', [
        { organization_id: 'acme', user_id: 'olga', role: 'owner' },
        { organization_id: 'acme', user_id: 'bob', role: 'admin' },
      ]);
    spec
      .given([created(), added])
      .when(spec.recorded(ORG, 'MemberRemoved', { userId: 'bob' }))
      .then('memberships', [{ organization_id: 'acme', user_id: 'olga', role: 'owner' }]);
  });

  it('keeps the low-balance threshold', () => {
    spec
      .given([created()])
      .when(spec.recorded(ORG, 'LowBalanceThresholdSet', { threshold: 40 }))
      .then('organizations', [
        expect.objectContaining({ organization_id: 'acme', low_balance_threshold: 40 }),
      ]);
  });
});

describe('active organization projection', () => {
  const spec = projectionSpec(activeOrganizationProjection);
  const registered = () =>
    spec.recorded('user-ann', 'UserRegistered', {
      userId: 'ann',
      personalOrganizationId: 'personal-ann',
    });

  it('makes the personal organization active at sign-up', () => {
    spec
      .given([])
      .when(registered())
      .then('active_organizations', [
        {
          user_id: 'ann',
          personal_organization_id: 'personal-ann',
          organization_id: 'personal-ann',
        },
      ]);
  });

  it('follows every switch', () => {
    spec
      .given([registered()])
      .when(
        spec.recorded('user-ann', 'ActiveOrganizationSwitched', {
          userId: 'ann',
          organizationId: 'acme',
          previousOrganizationId: 'personal-ann',
        }),
      )
      .then('active_organizations', [
        { user_id: 'ann', personal_organization_id: 'personal-ann', organization_id: 'acme' },
      ]);
  });

  it('ignores organization streams', () => {
    expect(
      activeOrganizationProjection.handle(
        spec.recorded(ORG, 'MemberAdded', { userId: 'u', role: 'member' }),
      ),
    ).toEqual([]);
  });
});

describe('projections are plain data', () => {
  it('their changes survive a JSON round trip unchanged', () => {
    const spec = projectionSpec(usageProjection);
    const event = spec.recorded(ORG, 'CharmRunCharged', {
      runId: 'r',
      charmId: 'c',
      userId: 'u',
      amount: 3,
      allocations: [],
    });
    const changes = usageProjection.handle(event);
    expect(JSON.parse(JSON.stringify(changes))).toEqual(changes);
    expect(usageProjection.handle(event)).toEqual(changes);
  });
});
