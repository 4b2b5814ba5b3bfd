import { CommandHandler, type ICommandHandler } from '@nestjs/cqrs';
import { LedgerError, ValidationFailed } from '../../ledger/errors';
import { PERSONAL_PREFIX } from '../../ledger/user/personal-organization';
import { Access } from '../../auth/access';
import { AddMember, ChangeMemberRole, CreateOrganization, RemoveMember } from '../commands';
import type { CommandContext } from '../aggregate-writer';
import { OrganizationWriter, UserWriter } from '../writers';

@CommandHandler(CreateOrganization)
export class CreateOrganizationHandler implements ICommandHandler<CreateOrganization> {
  constructor(
    private readonly organizations: OrganizationWriter,
    private readonly access: Access,
  ) {}

  async execute({ input, context }: CreateOrganization) {
    const { organizationId, name, ownerUserId } = input;
    this.access.requireUserOrService(context.caller, ownerUserId, 'create organizations');
    if (organizationId.startsWith(PERSONAL_PREFIX)) {
      throw new ValidationFailed([
        { field: 'organizationId', message: `the prefix ${PERSONAL_PREFIX} is reserved` },
      ]);
    }
    return this.organizations.reply(
      organizationId,
      { type: 'CreateOrganization', organizationId, name, kind: 'company', ownerUserId },
      context,
      ({ state, replayed }) => ({
        organizationId,
        name: state.name,
        kind: state.kind,
        ownerUserId: state.ownerUserId,
        replayed,
      }),
    );
  }
}

@CommandHandler(AddMember)
export class AddMemberHandler implements ICommandHandler<AddMember> {
  constructor(
    private readonly organizations: OrganizationWriter,
    private readonly access: Access,
  ) {}

  async execute({ input, context }: AddMember) {
    const { organizationId, userId, role } = input;
    await this.access.require(context.caller, 'manageMembers', organizationId);
    return this.organizations.reply(
      organizationId,
      { type: 'AddMember', userId, role, actor: context.actor },
      context,
      ({ replayed }) => ({ organizationId, userId, role, replayed }),
    );
  }
}

@CommandHandler(ChangeMemberRole)
export class ChangeMemberRoleHandler implements ICommandHandler<ChangeMemberRole> {
  constructor(
    private readonly organizations: OrganizationWriter,
    private readonly access: Access,
  ) {}

  async execute({ input, context }: ChangeMemberRole) {
    const { organizationId, userId, role } = input;
    await this.access.require(context.caller, 'manageMembers', organizationId);
    return this.organizations.reply(
      organizationId,
      { type: 'ChangeMemberRole', userId, role, actor: context.actor },
      context,
      ({ replayed }) => ({ organizationId, userId, role, replayed }),
    );
  }
}

/** Removes a member; if it was their active organization, they are moved back home. */
@CommandHandler(RemoveMember)
export class RemoveMemberHandler implements ICommandHandler<RemoveMember> {
  constructor(
    private readonly organizations: OrganizationWriter,
    private readonly users: UserWriter,
    private readonly access: Access,
  ) {}

  async execute({ input, context }: RemoveMember) {
    const { organizationId, userId } = input;
    await this.access.require(context.caller, 'manageMembers', organizationId);
    const reply = await this.organizations.reply(
      organizationId,
      { type: 'RemoveMember', userId, actor: context.actor },
      context,
      ({ replayed }) => ({ organizationId, userId, replayed }),
    );
    await leaveOrganization(this.users, this.organizations, organizationId, userId, context);
    return reply;
  }
}

/** Idempotent: also run by the recovery for removals whose follow-up a crash cut off. */
export async function leaveOrganization(
  users: UserWriter,
  organizations: OrganizationWriter,
  organizationId: string,
  userId: string,
  context: CommandContext,
): Promise<void> {
  const organization = await organizations.read(organizationId);
  try {
    await users.execute(
      userId,
      {
        type: 'LeaveOrganization',
        organizationId,
        stillMember: organization.state.members.has(userId),
      },
      context,
      () => undefined,
    );
  } catch (error) {
    // Members may be added before they sign up: such a user has no active organization.
    if (!(error instanceof LedgerError && error.code === 'NOT_FOUND')) throw error;
  }
}
