import { CommandHandler, type ICommandHandler } from '@nestjs/cqrs';
import { notFound } from '../../ledger/errors';
import {
  personalOrganizationId,
  personalOrganizationName,
} from '../../ledger/user/personal-organization';
import { RegisterUser, SwitchActiveOrganization } from '../commands';
import { Access } from '../../auth/access';
import { CrashPoints } from '../crash-points';
import { OrganizationWriter, UserWriter } from '../writers';
import type { CommandContext } from '../aggregate-writer';

/** Sign-up: the user's stream first, then their personal organization. */
@CommandHandler(RegisterUser)
export class RegisterUserHandler implements ICommandHandler<RegisterUser> {
  constructor(
    private readonly users: UserWriter,
    private readonly organizations: OrganizationWriter,
    private readonly crashPoints: CrashPoints,
    private readonly access: Access,
  ) {}

  async execute({ input, context }: RegisterUser) {
    const { userId, name } = input;
    this.access.requireUserOrService(context.caller, userId, 'sign up');
    const written = await this.users.execute(
      userId,
      {
        type: 'RegisterUser',
        userId,
        name,
        personalOrganizationId: personalOrganizationId(userId),
      },
      context,
      ({ state, replayed }) => ({
        userId,
        personalOrganizationId: state.personalOrganizationId,
        activeOrganizationId: state.activeOrganizationId,
        replayed,
        name: state.name,
      }),
    );
    this.crashPoints.reach('sign-up:after-user');
    // Also on a repeat: a crash may have come between the two writes the first time.
    const { name: registeredName, ...answer } = written.answer;
    const organization = await ensurePersonalOrganization(
      this.organizations,
      userId,
      answer.personalOrganizationId,
      registeredName,
      context,
    );
    const position = organization > written.position ? organization : written.position;
    return { ...answer, position };
  }
}

export async function ensurePersonalOrganization(
  organizations: OrganizationWriter,
  userId: string,
  organizationId: string,
  name: string | undefined,
  context: CommandContext,
): Promise<bigint> {
  const written = await organizations.execute(
    organizationId,
    {
      type: 'CreateOrganization',
      organizationId,
      name: personalOrganizationName(name),
      kind: 'personal',
      ownerUserId: userId,
    },
    context,
    () => undefined,
  );
  return written.position;
}

@CommandHandler(SwitchActiveOrganization)
export class SwitchActiveOrganizationHandler implements ICommandHandler<SwitchActiveOrganization> {
  constructor(
    private readonly users: UserWriter,
    private readonly organizations: OrganizationWriter,
    private readonly access: Access,
  ) {}

  async execute({ input, context }: SwitchActiveOrganization) {
    const { userId, organizationId } = input;
    this.access.requireUserOrService(context.caller, userId, 'switch the active organization');
    const organization = await this.organizations.read(organizationId);
    if (!organization.state.exists) throw notFound(`organization ${organizationId} not found`);
    return this.users.reply(
      userId,
      {
        type: 'SwitchActiveOrganization',
        organizationId,
        isMember: organization.state.members.has(userId),
      },
      context,
      ({ state, replayed }) => ({ activeOrganizationId: state.activeOrganizationId, replayed }),
    );
  }
}
