import { availableCredits, reservedCredits } from '../../../src/ledger/organization/burn-down';
import { at, HOUR, T0 } from '../../support/decider';
import { charge, created, granted, organization, reserved } from './organization-fixtures';

describe('reservations', () => {
  const hold = (amount: number, ttlSeconds = 900) =>
    ({
      type: 'ReserveCredits',
      reservationId: 'h1',
      charmId: 'long-charm',
      userId: 'olga',
      amount,
      ttlSeconds,
    }) as const;
  const capture = (amount: number, runId?: string) =>
    ({ type: 'CaptureReservation', reservationId: 'h1', amount, runId }) as const;
  const funded = [created(), granted('g', 100)];
  const holding = [...funded, reserved('h1', [{ grantId: 'g', amount: 40 }], at(T0 + 900_000))];

  it('holds credits from the grants, counted in reserved and not in available', () => {
    organization
      .given(funded)
      .when(hold(40))
      .then([
        {
          type: 'CreditsReserved',
          data: {
            reservationId: 'h1',
            charmId: 'long-charm',
            userId: 'olga',
            amount: 40,
            expiresAt: at(T0 + 900_000),
            allocations: [{ grantId: 'g', amount: 40 }],
          },
        },
      ]);
    const { state } = organization.given(holding);
    expect(availableCredits(state, T0)).toBe(60);
    expect(reservedCredits(state)).toBe(40);
    organization.given(holding).when(charge('r', 61)).thenThrows('INSUFFICIENT_CREDITS');
  });

  it('holds once per reservationId, and never more than is available', () => {
    organization.given(holding).when(hold(40)).thenNothing();
    organization.given(holding).when(hold(41)).thenThrows('CONFLICT');
    organization.given(funded).when(hold(101)).thenThrows('INSUFFICIENT_CREDITS');
    organization.given(funded).when(hold(10, 0)).thenThrows('VALIDATION_FAILED');
  });

  it('captures up to the held amount and gives the rest back', () => {
    organization
      .given(holding)
      .when(capture(25, 'run-9'))
      .then([
        {
          type: 'ReservationCaptured',
          data: {
            reservationId: 'h1',
            runId: 'run-9',
            amount: 25,
            released: 15,
            allocations: [{ grantId: 'g', amount: 25 }],
            releasedAllocations: [{ grantId: 'g', amount: 15 }],
            charmId: 'long-charm',
            userId: 'olga',
          },
        },
      ]);
    const after = organization.given([
      ...holding,
      {
        type: 'ReservationCaptured',
        data: {
          reservationId: 'h1',
          runId: 'run-9',
          amount: 25,
          released: 15,
          allocations: [{ grantId: 'g', amount: 25 }],
          releasedAllocations: [{ grantId: 'g', amount: 15 }],
          charmId: 'long-charm',
          userId: 'olga',
        },
      },
    ]);
    expect(availableCredits(after.state, T0)).toBe(75);
    expect(reservedCredits(after.state)).toBe(0);
    // The capture is a charm run: it can be refunded like one.
    after.when({ type: 'RefundCharmRun', runId: 'run-9', amount: 5 }).then([
      {
        type: 'CharmRunRefunded',
        data: {
          charmId: 'long-charm',
          userId: 'olga',
          chargedAt: at(T0),
          runId: 'run-9',
          amount: 5,
          allocations: [{ grantId: 'g', amount: 5 }],
        },
      },
    ]);
    after.when(capture(25, 'run-9')).thenNothing();
    after.when(capture(20, 'run-9')).thenThrows('CONFLICT');
    after.when({ type: 'ReleaseReservation', reservationId: 'h1' }).thenThrows('CONFLICT');
  });

  it('refuses to capture more than is held, after expiry, or under a runId already charged', () => {
    organization
      .given(holding)
      .when(capture(41))
      .thenThrows('CONFLICT', /at most/);
    organization
      .given(holding)
      .when(capture(10), T0 + 900_000)
      .thenThrows('CONFLICT', /released/);
    organization
      .given([
        ...holding,
        {
          type: 'CharmRunCharged',
          data: {
            runId: 'taken',
            charmId: 'c',
            userId: 'olga',
            amount: 1,
            allocations: [{ grantId: 'g', amount: 1 }],
          },
        },
      ])
      .when(capture(10, 'taken'))
      .thenThrows('CONFLICT');
    organization.given(funded).when(capture(10)).thenThrows('NOT_FOUND');
  });

  it('releases a hold once', () => {
    organization
      .given(holding)
      .when({ type: 'ReleaseReservation', reservationId: 'h1' })
      .then([
        {
          type: 'ReservationReleased',
          data: {
            reservationId: 'h1',
            amount: 40,
            reason: 'released',
            allocations: [{ grantId: 'g', amount: 40 }],
          },
        },
      ]);
    organization
      .given([
        ...holding,
        {
          type: 'ReservationReleased',
          data: {
            reservationId: 'h1',
            amount: 40,
            reason: 'released',
            allocations: [{ grantId: 'g', amount: 40 }],
          },
        },
      ])
      .when({ type: 'ReleaseReservation', reservationId: 'h1' })
      .thenNothing();
  });

  it('releases an unused hold by itself once it expires', () => {
    organization
      .given(holding)
      .when({ type: 'ExpireDue' }, T0 + 900_000 - 1)
      .thenNothing();
    organization
      .given(holding)
      .when({ type: 'ExpireDue' }, T0 + 900_000)
      .then([
        {
          type: 'ReservationReleased',
          data: {
            reservationId: 'h1',
            amount: 40,
            reason: 'expired',
            allocations: [{ grantId: 'g', amount: 40 }],
          },
        },
      ]);
  });

  it('keeps held credits safe from their grant expiring, and expires them when they come back', () => {
    const given = organization.given([
      created(),
      granted('short', 50, { expiresAt: at(T0 + HOUR) }),
      reserved('h1', [{ grantId: 'short', amount: 30 }], at(T0 + 2 * HOUR)),
    ]);
    given
      .when({ type: 'ExpireDue' }, T0 + HOUR)
      .then([{ type: 'CreditsExpired', data: { grantId: 'short', amount: 20 } }]);
    given.when(capture(10), T0 + HOUR).then([
      {
        type: 'ReservationCaptured',
        data: {
          reservationId: 'h1',
          runId: 'h1',
          amount: 10,
          released: 20,
          allocations: [{ grantId: 'short', amount: 10 }],
          releasedAllocations: [{ grantId: 'short', amount: 20 }],
          charmId: 'long-charm',
          userId: 'olga',
        },
      },
      { type: 'CreditsExpired', data: { grantId: 'short', amount: 20 } },
    ]);
    given.when({ type: 'ReleaseReservation', reservationId: 'h1' }, T0 + HOUR).then([
      {
        type: 'ReservationReleased',
        data: {
          reservationId: 'h1',
          amount: 30,
          reason: 'released',
          allocations: [{ grantId: 'short', amount: 30 }],
        },
      },
      { type: 'CreditsExpired', data: { grantId: 'short', amount: 30 } },
    ]);
  });
});
