import { charge, charged, created, granted, organization } from './organization-fixtures';

describe('low-balance threshold', () => {
  const threshold = (value: number) =>
    ({ type: 'LowBalanceThresholdSet', data: { threshold: value } }) as const;
  const watched = [created(), granted('g', 100), threshold(50)];

  it('is set, and setting the same again changes nothing', () => {
    organization
      .given([created(), granted('g', 100)])
      .when({ type: 'SetLowBalanceThreshold', threshold: 50 })
      .then([threshold(50)]);
    organization
      .given(watched)
      .when({ type: 'SetLowBalanceThreshold', threshold: 50 })
      .thenNothing();
    organization
      .given(watched)
      .when({ type: 'SetLowBalanceThreshold', threshold: -1 })
      .thenThrows('VALIDATION_FAILED');
  });

  it('is reached when a charge first takes the balance below it', () => {
    organization
      .given(watched)
      .when(charge('r1', 50))
      .then([
        {
          type: 'CharmRunCharged',
          data: {
            runId: 'r1',
            charmId: 'summarize',
            userId: 'olga',
            amount: 50,
            allocations: [{ grantId: 'g', amount: 50 }],
          },
        },
      ]);
    organization
      .given(watched)
      .when(charge('r1', 51))
      .then([
        {
          type: 'CharmRunCharged',
          data: {
            runId: 'r1',
            charmId: 'summarize',
            userId: 'olga',
            amount: 51,
            allocations: [{ grantId: 'g', amount: 51 }],
          },
        },
        { type: 'LowBalanceReached', data: { threshold: 50, available: 49 } },
      ]);
  });

  it('is said once per crossing, again only after the balance was back up', () => {
    const below = [
      ...watched,
      charged('r1', [{ grantId: 'g', amount: 60 }]),
      { type: 'LowBalanceReached', data: { threshold: 50, available: 40 } } as const,
    ];
    const [only] = organization.given(below).when(charge('r2', 10)).events();
    expect(organization.given(below).when(charge('r2', 10)).events()).toHaveLength(1);
    expect(only.type).toBe('CharmRunCharged');
    const refilled = [...below, granted('g2', 20)];
    const events = organization.given(refilled).when(charge('r2', 11)).events();
    expect(events.map((event) => event.type)).toEqual(['CharmRunCharged', 'LowBalanceReached']);
  });

  it('is reached at once when set above the current balance; 0 turns it off', () => {
    organization
      .given([created(), granted('g', 10)])
      .when({ type: 'SetLowBalanceThreshold', threshold: 20 })
      .then([threshold(20), { type: 'LowBalanceReached', data: { threshold: 20, available: 10 } }]);
    const off = [created(), granted('g', 100), threshold(50), threshold(0)];
    expect(organization.given(off).when(charge('r1', 99)).events()).toHaveLength(1);
  });
});
