import { decideUser } from '../../../src/ledger/user/decide';
import { evolveUser } from '../../../src/ledger/user/evolve';
import { personalOrganizationId } from '../../../src/ledger/user/personal-organization';
import { initialUserState } from '../../../src/ledger/user/state';
import { specification } from '../../support/decider';

const user = specification({
  initialState: initialUserState,
  decide: decideUser,
  evolve: evolveUser,
});

describe('users', () => {
  const registered = {
    type: 'UserRegistered',
    data: { userId: 'ann', personalOrganizationId: 'personal-ann', name: 'Ann' },
  } as const;
  const active = (organizationId: string, previousOrganizationId: string | null) =>
    ({
      type: 'ActiveOrganizationSwitched',
      data: { userId: 'ann', organizationId, previousOrganizationId },
    }) as const;
  const signedUp = [registered, active('personal-ann', null)];
  const register = {
    type: 'RegisterUser',
    userId: 'ann',
    name: 'Ann',
    personalOrganizationId: 'personal-ann',
  } as const;

  it('registers with the personal organization, made active', () => {
    user
      .given([])
      .when(register)
      .then([registered, active('personal-ann', null)]);
  });

  it('registers once: the same again changes nothing, another name conflicts', () => {
    user.given(signedUp).when(register).thenNothing();
    user
      .given(signedUp)
      .when({ ...register, name: undefined })
      .thenNothing();
    user
      .given(signedUp)
      .when({ ...register, name: 'Anne' })
      .thenThrows('CONFLICT');
  });

  it('switches the active organization only to one the user is a member of', () => {
    user
      .given(signedUp)
      .when({ type: 'SwitchActiveOrganization', organizationId: 'acme', isMember: true })
      .then([active('acme', 'personal-ann')]);
    user
      .given(signedUp)
      .when({ type: 'SwitchActiveOrganization', organizationId: 'acme', isMember: false })
      .thenThrows('FORBIDDEN');
    user
      .given(signedUp)
      .when({ type: 'SwitchActiveOrganization', organizationId: 'personal-ann', isMember: true })
      .thenNothing();
    user
      .given([])
      .when({ type: 'SwitchActiveOrganization', organizationId: 'acme', isMember: true })
      .thenThrows('NOT_FOUND');
  });

  it('goes back to the personal organization when removed from the active one', () => {
    const inAcme = [...signedUp, active('acme', 'personal-ann')];
    user
      .given(inAcme)
      .when({ type: 'LeaveOrganization', organizationId: 'acme', stillMember: false })
      .then([active('personal-ann', 'acme')]);
    user
      .given(inAcme)
      .when({ type: 'LeaveOrganization', organizationId: 'other', stillMember: false })
      .thenNothing();
    user
      .given(inAcme)
      .when({ type: 'LeaveOrganization', organizationId: 'acme', stillMember: true })
      .thenNothing();
  });

  it('names personal organizations after the user, within the identifier limit', () => {
    expect(personalOrganizationId('ann')).toBe('personal-ann');
    const long = personalOrganizationId('u'.repeat(64));
    expect(long).toMatch(/^personal-[0-9a-f]{40}$/);
    expect(personalOrganizationId('u'.repeat(64))).toBe(long);
    expect(personalOrganizationId('v'.repeat(64))).not.toBe(long);
  });
});
