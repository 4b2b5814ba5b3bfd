import type { FastifyReply } from 'fastify';

/** Positions are bigint: they leave as decimal strings, so none is ever rounded. */
export const positionText = (position: bigint) => position.toString();

/** 201 for a first write, 200 with `replayed: true` for an idempotent repeat (API.md). */
export function written<T extends { replayed: boolean; position: bigint }>(
  response: FastifyReply,
  reply: T,
): Omit<T, 'position'> & { position: string } {
  response.status(reply.replayed ? 200 : 201);
  return { ...reply, position: positionText(reply.position) };
}
