/** Who did it: recorded in every event's metadata. */
export type ActorKind = 'user' | 'integration' | 'service';

export interface Actor {
  kind: ActorKind;
  id: string;
}

/** The ledger itself, for follow-up work (expiry, finishing transfers, sign-up). */
export const LEDGER_ACTOR: Actor = { kind: 'service', id: 'ledger' };
