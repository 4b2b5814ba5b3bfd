export type UserCommand =
  | { type: 'RegisterUser'; userId: string; name?: string; personalOrganizationId: string }
  | {
      type: 'SwitchActiveOrganization';
      organizationId: string;
      /** Whether the user is a member there, looked up by the handler from that organization. */
      isMember: boolean;
    }
  /** The user left (or was removed from) this organization: if it was active, go home. */
  | { type: 'LeaveOrganization'; organizationId: string; stillMember: boolean };
