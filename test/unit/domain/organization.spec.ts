import { created, memberAdded, organization, SERVICE, user } from './organization-fixtures';

describe('organization: members', () => {
  const create = {
    type: 'CreateOrganization',
    organizationId: 'acme',
    name: 'Acme',
    kind: 'company',
    ownerUserId: 'olga',
  } as const;

  it('is created with its owner as first member', () => {
    organization
      .given([])
      .when(create)
      .then([
        {
          type: 'OrganizationCreated',
          data: { organizationId: 'acme', name: 'Acme', kind: 'company', ownerUserId: 'olga' },
        },
      ]);
    const { state } = organization.given([created()]);
    expect([...state.members]).toEqual([['olga', 'owner']]);
  });

  it('is created once: the same again changes nothing, another owner conflicts', () => {
    organization.given([created()]).when(create).thenNothing();
    organization
      .given([created()])
      .when({ ...create, ownerUserId: 'bob' })
      .thenThrows('CONFLICT');
  });

  it('must exist before anything else happens in it', () => {
    organization
      .given([])
      .when({ type: 'AddMember', userId: 'bob', role: 'member', actor: SERVICE })
      .thenThrows('NOT_FOUND');
  });

  it('adds a member once; the same role again changes nothing; another role conflicts', () => {
    const add = { type: 'AddMember', userId: 'bob', role: 'member', actor: SERVICE } as const;
    organization
      .given([created()])
      .when(add)
      .then([{ type: 'MemberAdded', data: { userId: 'bob', role: 'member' } }]);
    organization
      .given([created(), memberAdded('bob', 'member')])
      .when(add)
      .thenNothing();
    organization
      .given([created(), memberAdded('bob', 'member')])
      .when({ ...add, role: 'admin' })
      .thenThrows('CONFLICT', /already a member/);
  });

  it('keeps a personal organization to its owner alone', () => {
    organization
      .given([created('personal')])
      .when({ type: 'AddMember', userId: 'bob', role: 'member', actor: SERVICE })
      .thenThrows('CONFLICT');
  });

  it('lets owners manage anyone, admins everyone but owners, and nobody else', () => {
    const given = organization.given([
      created(),
      memberAdded('ada', 'admin'),
      memberAdded('bill', 'billing'),
    ]);
    given
      .when({ type: 'AddMember', userId: 'x', role: 'owner', actor: user('olga') })
      .then([{ type: 'MemberAdded', data: { userId: 'x', role: 'owner' } }]);
    given
      .when({ type: 'AddMember', userId: 'x', role: 'admin', actor: user('ada') })
      .then([{ type: 'MemberAdded', data: { userId: 'x', role: 'admin' } }]);
    given
      .when({ type: 'AddMember', userId: 'x', role: 'owner', actor: user('ada') })
      .thenThrows('FORBIDDEN');
    given
      .when({ type: 'RemoveMember', userId: 'olga', actor: user('ada') })
      .thenThrows('FORBIDDEN');
    given
      .when({ type: 'ChangeMemberRole', userId: 'bill', role: 'owner', actor: user('ada') })
      .thenThrows('FORBIDDEN');
    given
      .when({ type: 'AddMember', userId: 'x', role: 'member', actor: user('bill') })
      .thenThrows('FORBIDDEN');
  });

  it('re-roles a member', () => {
    organization
      .given([created(), memberAdded('bob', 'member')])
      .when({ type: 'ChangeMemberRole', userId: 'bob', role: 'billing', actor: SERVICE })
      .then([{ type: 'MemberRoleChanged', data: { userId: 'bob', role: 'billing' } }]);
  });

  it('never demotes or removes the last owner', () => {
    const given = organization.given([created(), memberAdded('bob', 'admin')]);
    given
      .when({ type: 'ChangeMemberRole', userId: 'olga', role: 'admin', actor: SERVICE })
      .thenThrows('CONFLICT', /last owner/);
    given
      .when({ type: 'RemoveMember', userId: 'olga', actor: SERVICE })
      .thenThrows('CONFLICT', /last owner/);
  });

  it('demotes or removes an owner while another owner remains', () => {
    const given = organization.given([created(), memberAdded('otto', 'owner')]);
    given
      .when({ type: 'ChangeMemberRole', userId: 'olga', role: 'member', actor: SERVICE })
      .then([{ type: 'MemberRoleChanged', data: { userId: 'olga', role: 'member' } }]);
    given
      .when({ type: 'RemoveMember', userId: 'olga', actor: user('otto') })
      .then([{ type: 'MemberRemoved', data: { userId: 'olga' } }]);
  });

  it('removes a member, and refuses to remove who is not one', () => {
    const given = organization.given([created(), memberAdded('bob', 'member')]);
    given
      .when({ type: 'RemoveMember', userId: 'bob', actor: SERVICE })
      .then([{ type: 'MemberRemoved', data: { userId: 'bob' } }]);
    given.when({ type: 'RemoveMember', userId: 'nobody', actor: SERVICE }).thenThrows('NOT_FOUND');
    const after = organization.given([
      created(),
      memberAdded('bob', 'member'),
      { type: 'MemberRemoved', data: { userId: 'bob' } },
    ]);
    expect(after.state.members.has('bob')).toBe(false);
  });
});
