import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { threadProfiles } from '../../../bench/support/profile';

const SERVICE = 'file:///srv/ledger/dist/src';

/** A frame of a `.cpuprofile`, as `node --cpu-prof` writes them. */
function frame(id: number, functionName: string, url: string, children: number[] = []) {
  return { id, callFrame: { functionName, url, lineNumber: 0, columnNumber: 0 }, children };
}

describe("the bench's reading of a CPU profile (--profile)", () => {
  const dir = mkdtempSync(join(tmpdir(), 'ledger-profile-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  // The request thread: a reply that takes a snapshot, whose JSON is native code; a walk
  // that calls itself; idle time in between.
  const nodes = [
    frame(1, '(root)', '', [2, 3, 6, 8]),
    frame(2, '(idle)', ''),
    frame(3, 'answer', `${SERVICE}/api/nats/ledger-nats.service.js`, [4]),
    frame(4, 'snapshot', `${SERVICE}/ledger/organization/snapshot.js`, [5]),
    frame(5, 'stringify', ''),
    frame(6, 'walk', `${SERVICE}/read/sql-changes.js`, [7]),
    frame(7, 'walk', `${SERVICE}/read/sql-changes.js`),
    frame(8, 'bootstrap', `${SERVICE}/main.js`, [9]),
    frame(9, 'parse', 'file:///srv/ledger/node_modules/@nats-io/nats-core/lib/parser.js'),
  ];
  // Ten samples of 1 ms: stringify 4, snapshot 1, walk (in itself) 1, parse 2, idle 2.
  const samples = [5, 5, 5, 5, 4, 7, 9, 9, 2, 2];
  writeFileSync(
    join(dir, 'CPU.main.cpuprofile'),
    JSON.stringify({
      nodes,
      samples,
      timeDeltas: samples.map(() => 1000),
      startTime: 0,
      endTime: 10_000,
    }),
  );
  const [profile] = threadProfiles(dir);
  const share = (entries: { name: string; share: number }[], name: string) =>
    entries.find((entry) => entry.name.startsWith(`${name} `) || entry.name === name)?.share;

  it('tells the thread by its code and how busy it was', () => {
    expect(profile.thread).toBe('main');
    expect(profile.busy).toBeCloseTo(0.8);
  });

  it('gives self time where the samples landed, native code included', () => {
    expect(share(profile.top, 'stringify')).toBeCloseTo(0.5);
    expect(share(profile.top, 'parse')).toBeCloseTo(0.25);
    expect(share(profile.top, 'answer')).toBeUndefined();
  });

  it("gives the service's own functions their total time, with what they called", () => {
    expect(share(profile.ownTotal, 'answer')).toBeCloseTo(5 / 8);
    expect(share(profile.ownTotal, 'snapshot')).toBeCloseTo(5 / 8);
    // A function on the stack twice counts once.
    expect(share(profile.ownTotal, 'walk')).toBeCloseTo(1 / 8);
    expect(share(profile.ownTotal, 'bootstrap')).toBeCloseTo(2 / 8);
    // Neither native code nor a package's.
    expect(share(profile.ownTotal, 'stringify')).toBeUndefined();
    expect(share(profile.ownTotal, 'parse')).toBeUndefined();
  });
});
