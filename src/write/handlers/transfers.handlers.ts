import { CommandHandler, type ICommandHandler } from '@nestjs/cqrs';
import { notFound } from '../../ledger/errors';
import { availableCredits } from '../../ledger/organization/burn-down';
import { Access } from '../../auth/access';
import { Clock } from '../clock';
import { ReceiveTransfer, TransferCredits } from '../commands';
import { CrashPoints } from '../crash-points';
import { OrganizationWriter } from '../writers';

/**
 * A transfer is two writes to two streams with no distributed transaction: the sender's
 * CreditsTransferredOut, then the recipient's CreditsTransferredIn. The second is idempotent
 * and is redone by the recovery (FollowUps) if the process dies in between.
 */
@CommandHandler(TransferCredits)
export class TransferCreditsHandler implements ICommandHandler<TransferCredits> {
  constructor(
    private readonly organizations: OrganizationWriter,
    private readonly clock: Clock,
    private readonly crashPoints: CrashPoints,
    private readonly access: Access,
  ) {}

  async execute({ input, context }: TransferCredits) {
    const { organizationId, transferId, toOrganizationId, amount } = input;
    await this.access.require(context.caller, 'transferOut', organizationId);
    const recipient = await this.organizations.read(toOrganizationId);
    if (!recipient.state.exists) {
      throw notFound(`organization ${toOrganizationId} not found`, { field: 'toOrganizationId' });
    }
    const actorRoleInRecipient =
      context.actor.kind === 'service'
        ? null
        : (recipient.state.members.get(context.actor.id) ?? null);
    const sent = await this.organizations.execute(
      organizationId,
      {
        type: 'TransferCredits',
        transferId,
        toOrganizationId,
        amount,
        actor: context.actor,
        actorRoleInRecipient,
      },
      context,
      ({ state, replayed }) => ({
        transferId,
        fromOrganizationId: organizationId,
        toOrganizationId,
        amount,
        balance: { available: availableCredits(state, this.clock.now()) },
        replayed,
      }),
    );
    this.crashPoints.reach('transfer:after-out');
    // Also on a repeat: the first attempt may have died before this write.
    const { position: received } = await receiveTransfer(
      this.organizations,
      { toOrganizationId, fromOrganizationId: organizationId, transferId, amount },
      context,
    );
    const position = received > sent.position ? received : sent.position;
    return { ...sent.answer, position };
  }
}

@CommandHandler(ReceiveTransfer)
export class ReceiveTransferHandler implements ICommandHandler<ReceiveTransfer> {
  constructor(private readonly organizations: OrganizationWriter) {}

  async execute({ input, context }: ReceiveTransfer) {
    return receiveTransfer(this.organizations, input, context);
  }
}

async function receiveTransfer(
  organizations: OrganizationWriter,
  input: ReceiveTransfer['input'],
  context: ReceiveTransfer['context'],
): Promise<{ position: bigint; replayed: boolean }> {
  const { toOrganizationId, fromOrganizationId, transferId, amount } = input;
  const written = await organizations.execute(
    toOrganizationId,
    { type: 'ReceiveTransfer', transferId, fromOrganizationId, amount },
    context,
    ({ replayed }) => replayed,
  );
  return { position: written.position, replayed: written.answer };
}
