/** Events of a user's stream (`user-{userId}`). */
type Event<Type extends string, Data> = { type: Type; data: Data; occurredAt: string };

export type UserRegistered = Event<
  'UserRegistered',
  { userId: string; personalOrganizationId: string; name?: string }
>;
export type ActiveOrganizationSwitched = Event<
  'ActiveOrganizationSwitched',
  { userId: string; organizationId: string; previousOrganizationId: string | null }
>;

export type UserEvent = UserRegistered | ActiveOrganizationSwitched;
