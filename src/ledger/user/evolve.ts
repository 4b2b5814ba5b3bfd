import type { UserEvent } from './events';
import type { UserState } from './state';

export function evolveUser(state: UserState, event: UserEvent): UserState {
  switch (event.type) {
    case 'UserRegistered':
      return {
        ...state,
        registered: true,
        userId: event.data.userId,
        name: event.data.name,
        personalOrganizationId: event.data.personalOrganizationId,
      };
    case 'ActiveOrganizationSwitched':
      return { ...state, activeOrganizationId: event.data.organizationId };
    default: {
      const unknown: never = event;
      return unknown;
    }
  }
}
