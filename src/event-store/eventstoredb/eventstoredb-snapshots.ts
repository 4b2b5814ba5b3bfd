import {
  BACKWARDS,
  END,
  type EventStoreDBClient,
  FORWARDS,
  jsonEvent,
  NO_STREAM,
  StreamNotFoundError,
  WrongExpectedVersionError,
} from '@eventstore/db-client';
import { type Snapshot, type SnapshotPart, SnapshotPartsMissingError } from '../event-store';

/** Every stream under this prefix is the store's own and hidden from readers. */
export const SNAPSHOT_PREFIX = 'ledger-snapshot-';
const SNAPSHOT_TYPE = 'LedgerSnapshot';
/** No ledger stream id starts with `parts/`, so no head stream is ever named like a parts stream. */
const PARTS_PREFIX = `${SNAPSHOT_PREFIX}parts/`;
const CHUNK_TYPE = 'LedgerSnapshotChunk';

/**
 * Characters of a part's text per chunk event. JSON escaping makes at most 6 bytes of one
 * character, so a chunk stays under the server's 1 MiB append limit whatever the text.
 */
const CHUNK_CHARACTERS = 128 * 1024;
/** What one append of chunks may carry, with room for the event envelopes under 1 MiB. */
const APPEND_BYTES = 900 * 1024;
/** Unnamed chunks, per named chunk, past which a save writes its kept parts again. */
const COMPACT_WHEN_UNNAMED = 3;
/** Below this many unnamed chunks a parts stream is left as it is, however small its parts. */
const COMPACT_AT_LEAST = 64;
/** Saves that lost the race for the head to another process's save before giving up. */
const SAVE_ATTEMPTS = 5;
/** Loads that found a part trimmed away by a newer save before reading without it. */
const LOAD_ATTEMPTS = 5;

/** A snapshot head's data: the state, and where each of its parts is. */
interface SavedHead {
  revision: string;
  position: string;
  schemaVersion: number;
  state: string;
  /** Where each part's chunks are in the parts stream. */
  partRefs?: PartRef[];
  /** Heads saved before parts had a stream of their own carry them inline. */
  parts?: { key: string; text: string }[];
}

interface PartRef {
  key: string;
  /** The revision of its first chunk in the parts stream, as a decimal string. */
  from: string;
  chunks: number;
}

interface Chunk {
  key: string;
  text: string;
}

/**
 * Snapshots on EventStoreDB. The head (state and the list of parts) is one event in
 * `ledger-snapshot-<stream>`, kept to its newest event. The parts are chunk events in
 * `ledger-snapshot-parts/<stream>`, written once each: no event has to hold the whole snapshot,
 * whose parts outgrow the server's 1 MiB append limit on a large organization.
 *
 * A save writes its new parts, then appends the head expecting the revision it read, so two
 * processes saving at once cannot leave a head that names another save's parts. After the
 * head, the parts stream is trimmed (`$tb`) to the oldest chunk the head names: any later
 * head names only chunks that one keeps, or chunks written after it was read.
 */
export class EventStoreDbSnapshots {
  constructor(private readonly client: EventStoreDBClient) {}

  async load(streamId: string): Promise<Snapshot | undefined> {
    for (let attempt = 1; ; attempt += 1) {
      const head = await this.readHead(streamId);
      if (head === undefined) return undefined;
      const { saved } = head;
      const parts: SnapshotPart[] = (saved.parts ?? []).map(({ key, text }) => ({ key, text }));
      let trimmed = false;
      for (const ref of saved.partRefs ?? []) {
        const text = await this.readPart(streamId, ref);
        trimmed ||= text === undefined;
        parts.push(text === undefined ? { key: ref.key } : { key: ref.key, text });
      }
      // A newer save trimmed a part away after this head was read: its own head is there now.
      // Past the attempts, a part left without text makes the writer load from the events.
      if (trimmed && attempt < LOAD_ATTEMPTS) continue;
      return {
        streamId,
        revision: BigInt(saved.revision),
        position: BigInt(saved.position),
        schemaVersion: saved.schemaVersion,
        state: saved.state,
        parts,
      };
    }
  }

  async save(snapshot: Snapshot): Promise<void> {
    for (let attempt = 1; ; attempt += 1) {
      const head = await this.readHead(snapshot.streamId);
      let refs: PartRef[];
      try {
        refs = await this.writeParts(snapshot, head?.saved);
        await this.appendHead(snapshot, refs, head?.revision);
      } catch (error) {
        // Another process saved meanwhile: start again from its head, which may have dropped
        // a part this one keeps (then the next attempt refuses it as missing).
        if (error instanceof WrongExpectedVersionError && attempt < SAVE_ATTEMPTS) continue;
        throw error;
      }
      await this.trimParts(snapshot.streamId, refs, head?.saved.partRefs);
      return;
    }
  }

  /**
   * Writes the parts given with their text (and a kept part of a head saved inline), and
   * says where every part listed is. Nothing is written when a part is missing.
   */
  private async writeParts(snapshot: Snapshot, saved: SavedHead | undefined): Promise<PartRef[]> {
    const stored = new Map((saved?.partRefs ?? []).map((ref) => [ref.key, ref]));
    const inline = new Map((saved?.parts ?? []).map((part) => [part.key, part.text]));
    const toWrite: Chunk[][] = [];
    const missing: string[] = [];
    for (const { key, text } of snapshot.parts) {
      const given = text ?? (stored.has(key) ? undefined : inline.get(key));
      if (given !== undefined) toWrite.push(chunksOf(key, given));
      else if (!stored.has(key)) missing.push(key);
    }
    if (missing.length > 0) throw new SnapshotPartsMissingError(snapshot.streamId, missing);
    toWrite.push(...(await this.keptToWriteAgain(snapshot, stored, toWrite)));

    const written = new Map<string, PartRef>();
    let next = await this.appendChunks(snapshot.streamId, toWrite.flat());
    // Chunks go out in order, so each part's chunks have consecutive revisions.
    for (const chunks of toWrite.reverse()) {
      next -= BigInt(chunks.length);
      written.set(chunks[0].key, {
        key: chunks[0].key,
        from: next.toString(),
        chunks: chunks.length,
      });
    }
    return snapshot.parts.map(({ key }) => written.get(key) ?? stored.get(key)!);
  }

  /**
   * The kept parts, as chunks to write again, when the parts stream from the oldest of them
   * on is mostly chunks no head names (parts replaced or dropped since): `$tb` can only cut
   * below the oldest named chunk, so an old part kept for ever would keep all of that. Written
   * again, they move the cut up to this save's chunks; this costs a read of the kept parts
   * once the unnamed chunks are `COMPACT_WHEN_UNNAMED` times the named ones.
   */
  private async keptToWriteAgain(
    snapshot: Snapshot,
    stored: Map<string, PartRef>,
    toWrite: Chunk[][],
  ): Promise<Chunk[][]> {
    const written = new Set(toWrite.map((chunks) => chunks[0].key));
    const kept = snapshot.parts
      .map(({ key }) => stored.get(key))
      .filter((ref): ref is PartRef => ref !== undefined && !written.has(ref.key));
    const oldest = oldestChunkOf(kept);
    if (oldest === undefined) return [];
    const named = [...kept, ...toWrite.map((chunks) => ({ chunks: chunks.length }))].reduce(
      (sum, ref) => sum + ref.chunks,
      0,
    );
    const span = Number((await this.nextRevisionOf(PARTS_PREFIX + snapshot.streamId)) - oldest);
    if (span - named <= COMPACT_WHEN_UNNAMED * named + COMPACT_AT_LEAST) return [];
    const again: Chunk[][] = [];
    for (const ref of kept) {
      const text = await this.readPart(snapshot.streamId, ref);
      // Trimmed by another process's save: that save's head is newer, and it drops this part.
      if (text === undefined) throw new SnapshotPartsMissingError(snapshot.streamId, [ref.key]);
      again.push(chunksOf(ref.key, text));
    }
    return again;
  }

  /**
   * Appends the chunks in as few appends as fit, each expecting the revision the one before
   * left, so that the chunks of one save are consecutive (another save's chunks in between
   * fail it, and the save starts again). Returns the revision after the last chunk.
   */
  private async appendChunks(streamId: string, chunks: Chunk[]): Promise<bigint> {
    let after: bigint | undefined;
    let batch: ReturnType<typeof jsonEvent>[] = [];
    let bytes = 0;
    const flush = async () => {
      if (batch.length === 0) return;
      const result = await this.client.appendToStream(
        PARTS_PREFIX + streamId,
        batch,
        after === undefined ? {} : { expectedRevision: after },
      );
      after = result.nextExpectedRevision;
      batch = [];
      bytes = 0;
    };
    for (const chunk of chunks) {
      const size = Buffer.byteLength(JSON.stringify(chunk));
      if (bytes + size > APPEND_BYTES) await flush();
      batch.push(jsonEvent({ type: CHUNK_TYPE, data: { ...chunk } }));
      bytes += size;
    }
    await flush();
    return after === undefined ? 0n : after + 1n;
  }

  private async appendHead(snapshot: Snapshot, refs: PartRef[], expected: bigint | undefined) {
    const stream = SNAPSHOT_PREFIX + snapshot.streamId;
    const result = await this.client.appendToStream(
      stream,
      jsonEvent({
        type: SNAPSHOT_TYPE,
        data: {
          revision: snapshot.revision.toString(),
          position: snapshot.position.toString(),
          schemaVersion: snapshot.schemaVersion,
          state: snapshot.state,
          partRefs: refs,
        } satisfies SavedHead,
      }),
      { expectedRevision: expected ?? NO_STREAM },
    );
    // The server scavenges all but the newest head.
    if (result.nextExpectedRevision === 0n)
      await this.client.setStreamMetadata(stream, { maxCount: 1 });
  }

  /**
   * Lets the server scavenge the chunks of parts no head names any more. Most saves keep the
   * oldest part of the save before, whose trim then already stands: no write. (A save cut
   * off between its head and its trim leaves the trim behind until the oldest part changes;
   * that only keeps more chunks for a while.)
   */
  private async trimParts(streamId: string, refs: PartRef[], before: PartRef[] | undefined) {
    const stream = PARTS_PREFIX + streamId;
    const named = oldestChunkOf(refs);
    if (named !== undefined && named === oldestChunkOf(before ?? [])) return;
    // No part named: everything written so far can go.
    const oldest = named ?? (await this.nextRevisionOf(stream));
    if (oldest > 0n)
      await this.client.setStreamMetadata(stream, { truncateBefore: Number(oldest) });
  }

  private async nextRevisionOf(stream: string): Promise<bigint> {
    const last = await this.lastEventOf(stream);
    return last === undefined ? 0n : last.revision + 1n;
  }

  /** A part's text, or undefined when its chunks are no longer all there. */
  private async readPart(streamId: string, ref: PartRef): Promise<string | undefined> {
    const pieces: string[] = [];
    let whole = true;
    try {
      // Read to the end of the page: leaving the loop early leaves the read open.
      for await (const resolved of this.client.readStream(PARTS_PREFIX + streamId, {
        direction: FORWARDS,
        fromRevision: BigInt(ref.from),
        maxCount: ref.chunks,
      })) {
        // A trimmed stream reads from its first kept event on: only this part's own revisions count.
        const at = BigInt(ref.from) + BigInt(pieces.length);
        const chunk = resolved.event?.data as Chunk | undefined;
        if (resolved.event?.revision === at && chunk?.key === ref.key) pieces.push(chunk.text);
        else whole = false;
      }
    } catch (error) {
      if (error instanceof StreamNotFoundError) return undefined;
      throw error;
    }
    return whole && pieces.length === ref.chunks ? pieces.join('') : undefined;
  }

  /** The newest head of the stream's snapshots, and its revision. */
  private async readHead(
    streamId: string,
  ): Promise<{ saved: SavedHead; revision: bigint } | undefined> {
    const last = await this.lastEventOf(SNAPSHOT_PREFIX + streamId);
    return last && { saved: last.data as unknown as SavedHead, revision: last.revision };
  }

  private async lastEventOf(stream: string) {
    let last: { data: unknown; revision: bigint } | undefined;
    try {
      for await (const resolved of this.client.readStream(stream, {
        direction: BACKWARDS,
        fromRevision: END,
        maxCount: 1,
      })) {
        if (resolved.event)
          last ??= { data: resolved.event.data, revision: resolved.event.revision };
      }
    } catch (error) {
      if (error instanceof StreamNotFoundError) return undefined;
      throw error;
    }
    return last;
  }
}

/** The revision of the first chunk of the oldest part, or undefined for no part. */
function oldestChunkOf(refs: PartRef[]): bigint | undefined {
  let oldest: bigint | undefined;
  for (const ref of refs)
    if (oldest === undefined || BigInt(ref.from) < oldest) oldest = BigInt(ref.from);
  return oldest;
}

/** A part's text in chunks small enough for any one of them to be appended. */
function chunksOf(key: string, text: string): Chunk[] {
  const chunks: Chunk[] = [];
  for (let at = 0; at < text.length || chunks.length === 0; at += CHUNK_CHARACTERS) {
    chunks.push({ key, text: text.slice(at, at + CHUNK_CHARACTERS) });
  }
  return chunks;
}
