/**
 * A Bloom filter of a settled tier's run ids: whether a run may be in the tier, without the
 * tier's index. A new charge asks every tier whether its run id is there, and building the
 * index of a restored tier (its ids parsed, then a Map of them) was the largest part of a cold
 * load: over a third of loading the bench's 1M-event organization (19,000 runs kept), about
 * 11 ms a load in a profile of 30 loads.
 */
export class RunIdFilter {
  /** 16 bits and 11 hashes a run: about one false positive in 2,000. */
  static readonly BITS_PER_RUN = 16;
  static readonly HASHES = 11;

  private constructor(
    private readonly words: Uint32Array,
    /** Hashes a run: what a part that holds the filter says beside it. */
    readonly hashes: number,
  ) {}

  /** An empty filter sized for `runs` runs. */
  static sizedFor(runs: number): RunIdFilter {
    let bits = 64;
    while (bits < runs * RunIdFilter.BITS_PER_RUN) bits *= 2;
    return new RunIdFilter(new Uint32Array(bits / 32), RunIdFilter.HASHES);
  }

  /** A filter as `text` wrote it, made with `hashes` hashes a run. */
  static read(text: string, hashes: number): RunIdFilter {
    const bytes = Buffer.from(text, 'base64');
    // A copy: the decoded bytes may not start on a 4-byte boundary of their buffer.
    const words = new Uint32Array(bytes.length / 4);
    new Uint8Array(words.buffer).set(bytes);
    return new RunIdFilter(words, hashes);
  }

  add(runId: string): void {
    const mask = this.words.length * 32 - 1;
    hashesOf(runId);
    for (let i = 0, at = hashedFirst; i < this.hashes; i++, at = (at + hashedStep) >>> 0) {
      const bit = at & mask;
      this.words[bit >>> 5] |= 1 << (bit & 31);
    }
  }

  /** False only when the run is certainly not there. */
  mayHold(runId: string): boolean {
    const mask = this.words.length * 32 - 1;
    hashesOf(runId);
    for (let i = 0, at = hashedFirst; i < this.hashes; i++, at = (at + hashedStep) >>> 0) {
      const bit = at & mask;
      if ((this.words[bit >>> 5] & (1 << (bit & 31))) === 0) return false;
    }
    return true;
  }

  toText(): string {
    return Buffer.from(this.words.buffer, this.words.byteOffset, this.words.byteLength).toString(
      'base64',
    );
  }
}

/** The run id hashed last, and its two hashes (see `hashesOf`). */
let hashedId: string | undefined;
let hashedFirst = 0;
let hashedStep = 1;

/**
 * Two hashes of a run id for double hashing (the i-th bit is first + i * step): FNV-1a, and
 * a mix of it made odd, so that the steps reach every bit of a power-of-two filter. Left in
 * `hashedFirst` and `hashedStep`, and not made again for the same id: a charge asks every
 * settled tier about its run id (and a group asks its tiers after its own filter), and each
 * hashed it anew.
 */
function hashesOf(runId: string): void {
  if (runId === hashedId) return;
  let hash = 0x811c9dc5;
  for (let i = 0; i < runId.length; i++) {
    hash ^= runId.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  let mixed = Math.imul(hash ^ (hash >>> 16), 0x85ebca6b);
  mixed = Math.imul(mixed ^ (mixed >>> 13), 0xc2b2ae35);
  hashedFirst = hash >>> 0;
  hashedStep = ((mixed ^ (mixed >>> 16)) | 1) >>> 0;
  hashedId = runId;
}
