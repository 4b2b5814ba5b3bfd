import { conflict, forbidden, notFound } from '../errors';
import { toIso } from '../time';
import type { UserCommand } from './commands';
import type { UserEvent } from './events';
import type { UserState } from './state';

/** Decides a user's command at `now`; an empty list is an idempotent repeat. Pure. */
export function decideUser(command: UserCommand, state: UserState, now: number): UserEvent[] {
  const occurredAt = toIso(now);
  if (command.type === 'RegisterUser') {
    if (state.registered) {
      if ((command.name ?? state.name) === state.name) return [];
      throw conflict(`user ${state.userId} is already registered with another name`);
    }
    const { userId, name, personalOrganizationId } = command;
    return [
      {
        type: 'UserRegistered',
        data: { userId, personalOrganizationId, ...(name === undefined ? {} : { name }) },
        occurredAt,
      },
      {
        type: 'ActiveOrganizationSwitched',
        data: { userId, organizationId: personalOrganizationId, previousOrganizationId: null },
        occurredAt,
      },
    ];
  }
  if (!state.registered) throw notFound('user not found');

  switch (command.type) {
    case 'SwitchActiveOrganization': {
      if (!command.isMember) {
        throw forbidden(`user ${state.userId} is not a member of ${command.organizationId}`);
      }
      if (command.organizationId === state.activeOrganizationId) return [];
      return [switched(state, command.organizationId, occurredAt)];
    }
    case 'LeaveOrganization': {
      const wasActive = command.organizationId === state.activeOrganizationId;
      if (!wasActive || command.stillMember) return [];
      return [switched(state, state.personalOrganizationId, occurredAt)];
    }
    default: {
      const unknown: never = command;
      return unknown;
    }
  }
}

const switched = (state: UserState, organizationId: string, occurredAt: string): UserEvent => ({
  type: 'ActiveOrganizationSwitched',
  data: {
    userId: state.userId,
    organizationId,
    previousOrganizationId: state.activeOrganizationId,
  },
  occurredAt,
});
