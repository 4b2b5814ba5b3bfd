export interface UserState {
  readonly registered: boolean;
  readonly userId: string;
  readonly name?: string;
  readonly personalOrganizationId: string;
  readonly activeOrganizationId: string;
}

export const initialUserState = (): UserState => ({
  registered: false,
  userId: '',
  personalOrganizationId: '',
  activeOrganizationId: '',
});
