import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
} from '@nestjs/common';
import { CommandBus } from '@nestjs/cqrs';
import { Heap } from 'heap-js';
import {
  EVENT_STORE,
  type EventStore,
  type RecordedEvent,
  type Subscription,
} from '../event-store/event-store';
import { LEDGER_ACTOR } from '../ledger/actor';
import type { OrganizationEvent } from '../ledger/organization/events';
import type { UserEvent } from '../ledger/user/events';
import { toMillis } from '../ledger/time';
import { LEDGER_CALLER } from '../auth/caller';
import { fromRecorded } from './aggregate-writer';
import { Clock } from './clock';
import { ExpireDue, ReceiveTransfer, type RequestContext } from './commands';
import { ensurePersonalOrganization } from './handlers/users.handlers';
import { leaveOrganization } from './handlers/organizations.handlers';
import { OrganizationWriter, UserWriter } from './writers';

/** Work that an event obliges the ledger to do in another stream, or at a later time. */
interface Obligation {
  key: string;
  /** Not before (epoch ms): the request that caused it usually does it at once itself. */
  notBefore: number;
  attempts: number;
  context: RequestContext;
  run: () => Promise<unknown>;
}

/**
 * The events that oblige or release: a few in a ledger's history, which is mostly charges.
 * The store skips the rest without reading them, so the read at boot stays short however
 * long the history grows.
 */
const USER_EVENTS: Record<UserEvent['type'], true> = {
  UserRegistered: true,
  ActiveOrganizationSwitched: true,
};
const OBSERVED: string[] = [
  ...([
    'CreditsTransferredOut',
    'CreditsTransferredIn',
    'OrganizationCreated',
    'MemberRemoved',
    'MemberAdded',
    'CreditsGranted',
    'CreditsReserved',
  ] satisfies OrganizationEvent['type'][]),
  // Every user event: any switch settles a removed member's active organization.
  ...Object.keys(USER_EVENTS),
];

/** How long the request that caused an obligation has to fulfil it before we step in. */
const GRACE_MS = 2_000;
const SWEEP_EVERY_MS = 500;

/**
 * Finishes what a crash may have cut in half, and writes what time decides:
 * - a transfer whose CreditsTransferredIn is missing gets it (idempotent in the recipient);
 * - a registered user whose personal organization is missing gets it;
 * - a removed member whose active organization it was is moved to their personal one;
 * - expired grants and holds get their CreditsExpired / ReservationReleased soon after.
 * It reads the events that matter to it from the start at boot (obligations are fulfilled by
 * later events in the same history), then follows live.
 */
@Injectable()
export class FollowUps implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(FollowUps.name);
  private readonly obligations = new Map<string, Obligation>();
  private readonly deadlines = new Heap<{ at: number; organizationId: string }>(
    (a, b) => a.at - b.at,
  );
  /** Organizations each user was removed from, while their active one may still point there. */
  private readonly leaves = new Map<string, Set<string>>();
  private subscription?: Subscription;
  private timer?: NodeJS.Timeout;
  private caughtUp = false;
  private sweeping = false;

  constructor(
    @Inject(EVENT_STORE) private readonly store: EventStore,
    private readonly commandBus: CommandBus,
    private readonly organizations: OrganizationWriter,
    private readonly users: UserWriter,
    private readonly clock: Clock,
  ) {}

  onApplicationBootstrap() {
    this.subscription = this.store.subscribeToAll((event) => this.observe(event), {
      fromPosition: 0n,
      streamPrefixes: ['organization-', 'user-'],
      eventTypes: OBSERVED,
      onCaughtUp: () => {
        this.caughtUp = true;
        this.logger.log(`caught up; ${this.obligations.size} follow-ups outstanding`);
      },
      onError: (error) => this.logger.error(`follow-ups stopped: ${String(error)}`),
    });
    this.timer = setInterval(() => void this.sweep(), SWEEP_EVERY_MS);
    this.timer.unref();
  }

  async onApplicationShutdown() {
    clearInterval(this.timer);
    await this.subscription?.stop();
  }

  /** Outstanding follow-ups, for tests and /health. */
  get outstanding(): number {
    return this.obligations.size;
  }

  /** Runs what is due now (also called by the timer). */
  async sweep(): Promise<void> {
    if (!this.caughtUp || this.sweeping) return;
    this.sweeping = true;
    try {
      const now = this.clock.now();
      const due = new Set<string>();
      while (this.deadlines.length > 0 && this.deadlines.peek()!.at <= now) {
        due.add(this.deadlines.pop()!.organizationId);
      }
      for (const organizationId of due) {
        await this.attempt(`expire:${organizationId}`, () =>
          this.commandBus.execute(
            new ExpireDue(
              { organizationId },
              { caller: LEDGER_CALLER, actor: LEDGER_ACTOR, correlationId: 'expiry' },
            ),
          ),
        );
      }
      for (const obligation of [...this.obligations.values()]) {
        if (obligation.notBefore > now) continue;
        const done = await this.attempt(obligation.key, obligation.run);
        if (done) this.obligations.delete(obligation.key);
        else obligation.notBefore = now + Math.min(60_000, 1000 * 2 ** obligation.attempts++);
      }
    } finally {
      this.sweeping = false;
    }
  }

  private async attempt(what: string, run: () => Promise<unknown>): Promise<boolean> {
    try {
      await run();
      return true;
    } catch (error) {
      this.logger.warn(`follow-up ${what} failed, will retry: ${String(error)}`);
      return false;
    }
  }

  private observe(recorded: RecordedEvent) {
    const context: RequestContext = {
      caller: LEDGER_CALLER,
      actor: LEDGER_ACTOR,
      correlationId: recorded.metadata.correlationId,
      causationId: recorded.eventId,
    };
    if (recorded.streamId.startsWith('user-')) {
      this.observeUser(fromRecorded<UserEvent>(recorded), context);
      return;
    }
    const organizationId = recorded.streamId.slice('organization-'.length);
    this.observeOrganization(organizationId, fromRecorded<OrganizationEvent>(recorded), context);
  }

  private observeOrganization(
    organizationId: string,
    event: OrganizationEvent,
    context: RequestContext,
  ) {
    switch (event.type) {
      case 'CreditsTransferredOut': {
        const { transferId, toOrganizationId, amount } = event.data;
        this.oblige(`transfer:${organizationId}/${transferId}`, context, () =>
          this.commandBus.execute(
            new ReceiveTransfer(
              { toOrganizationId, fromOrganizationId: organizationId, transferId, amount },
              context,
            ),
          ),
        );
        return;
      }
      case 'CreditsTransferredIn':
        this.obligations.delete(
          `transfer:${event.data.fromOrganizationId}/${event.data.transferId}`,
        );
        return;
      case 'OrganizationCreated':
        this.obligations.delete(`personal:${organizationId}`);
        return;
      case 'MemberRemoved': {
        const { userId } = event.data;
        const left = this.leaves.get(userId) ?? new Set<string>();
        left.add(organizationId);
        this.leaves.set(userId, left);
        this.oblige(`leave:${userId}`, context, async () => {
          for (const from of left) {
            await leaveOrganization(this.users, this.organizations, from, userId, context);
          }
          this.leaves.delete(userId);
        });
        return;
      }
      case 'MemberAdded': {
        const left = this.leaves.get(event.data.userId);
        left?.delete(organizationId);
        if (left?.size === 0) this.forgetLeaves(event.data.userId);
        return;
      }
      case 'CreditsGranted':
        if (event.data.expiresAt !== null) {
          this.deadlines.push({ at: toMillis(event.data.expiresAt), organizationId });
        }
        return;
      case 'CreditsReserved':
        this.deadlines.push({ at: toMillis(event.data.expiresAt), organizationId });
        return;
      default:
        return;
    }
  }

  private observeUser(event: UserEvent, context: RequestContext) {
    const { userId } = event.data;
    if (event.type === 'UserRegistered') {
      const { personalOrganizationId, name } = event.data;
      this.oblige(`personal:${personalOrganizationId}`, context, () =>
        ensurePersonalOrganization(
          this.organizations,
          userId,
          personalOrganizationId,
          name,
          context,
        ),
      );
    } else {
      // Any later switch means the user's active organization was settled again.
      this.forgetLeaves(userId);
    }
  }

  private forgetLeaves(userId: string) {
    this.leaves.delete(userId);
    this.obligations.delete(`leave:${userId}`);
  }

  private oblige(key: string, context: RequestContext, run: () => Promise<unknown>) {
    this.obligations.set(key, {
      key,
      notBefore: this.clock.now() + GRACE_MS,
      attempts: 0,
      context,
      run,
    });
  }
}
