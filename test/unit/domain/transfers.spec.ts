import { availableCredits } from '../../../src/ledger/organization/burn-down';
import { T0 } from '../../support/decider';
import {
  created,
  granted,
  memberAdded,
  organization,
  SERVICE,
  user,
  type Event,
} from './organization-fixtures';

describe('transfers', () => {
  const funded = [
    created(),
    granted('g', 100),
    memberAdded('ada', 'admin'),
    memberAdded('bill', 'billing'),
  ];
  const transfer = (actor = SERVICE, actorRoleInRecipient: 'member' | null = null) =>
    ({
      type: 'TransferCredits',
      transferId: 't1',
      toOrganizationId: 'beta',
      amount: 30,
      actor,
      actorRoleInRecipient,
    }) as const;
  const sent: Event = {
    type: 'CreditsTransferredOut',
    data: {
      transferId: 't1',
      toOrganizationId: 'beta',
      amount: 30,
      allocations: [{ grantId: 'g', amount: 30 }],
    },
  };

  it('sends credits out of the organization, once', () => {
    organization.given(funded).when(transfer()).then([sent]);
    const after = organization.given([...funded, sent]);
    expect(availableCredits(after.state, T0)).toBe(70);
    after.when(transfer()).thenNothing();
    after.when({ ...transfer(), amount: 31 }).thenThrows('CONFLICT');
  });

  it('refuses a transfer to itself or beyond the balance', () => {
    organization
      .given(funded)
      .when({ ...transfer(), toOrganizationId: 'acme' })
      .thenThrows('VALIDATION_FAILED');
    organization
      .given(funded)
      .when({ ...transfer(), amount: 101 })
      .thenThrows('INSUFFICIENT_CREDITS');
  });

  it('lets owners and admins who are members of the recipient transfer, nobody else', () => {
    organization
      .given(funded)
      .when(transfer(user('ada'), 'member'))
      .then([sent]);
    organization
      .given(funded)
      .when(transfer(user('olga'), 'member'))
      .then([sent]);
    organization
      .given(funded)
      .when(transfer(user('ada'), null))
      .thenThrows('FORBIDDEN', /member/);
    organization
      .given(funded)
      .when(transfer(user('bill'), 'member'))
      .thenThrows('FORBIDDEN');
  });

  it('receives a transfer as a new grant of source transfer, once per sender and id', () => {
    const receive = {
      type: 'ReceiveTransfer',
      transferId: 't1',
      fromOrganizationId: 'alpha',
      amount: 30,
    } as const;
    organization
      .given([created()])
      .when(receive)
      .then([
        {
          type: 'CreditsTransferredIn',
          data: {
            transferId: 't1',
            fromOrganizationId: 'alpha',
            amount: 30,
            grantId: 'transfer-t1',
          },
        },
      ]);
    const received = organization.given([
      created(),
      {
        type: 'CreditsTransferredIn',
        data: { transferId: 't1', fromOrganizationId: 'alpha', amount: 30, grantId: 'transfer-t1' },
      },
    ]);
    received.when(receive).thenNothing();
    expect(received.state.grants.get('transfer-t1')).toMatchObject({
      source: 'transfer',
      remaining: 30,
      expiresAt: null,
    });
    expect(availableCredits(received.state, T0)).toBe(30);
    // The same transfer id from another sender is another transfer, with a grant id of its own.
    const [other] = received.when({ ...receive, fromOrganizationId: 'gamma' }).events();
    expect(other).toMatchObject({
      type: 'CreditsTransferredIn',
      data: { fromOrganizationId: 'gamma' },
    });
    expect((other.data as { grantId: string }).grantId).toMatch(/^transfer-[0-9a-f]{40}$/);
  });
});
