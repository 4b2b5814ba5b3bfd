import { randomBytes } from 'node:crypto';
import {
  closeSync,
  copyFileSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  truncateSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { recordFigures } from './support/figures';
import {
  chargesIn,
  Http,
  launchLedger,
  problemDefect,
  readStore,
  spawnLedger,
  within,
  type LedgerProcess,
} from './support/ledger';
import { TestNatsServer } from './support/nats-server';

/** 1 MiB per file (512-byte blocks): room to start, not for long under charges. */
const FILE_SIZE_LIMIT_BLOCKS = 2048;

describe('disk full and damaged files (embedded store)', () => {
  let nats: TestNatsServer;
  const dirs: string[] = [];
  const ledgers: LedgerProcess[] = [];

  beforeAll(async () => {
    nats = await TestNatsServer.start();
  });

  afterAll(async () => {
    for (const ledger of ledgers) await ledger.kill();
    await nats?.dispose();
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  });

  const newDir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'ledger-faults-disk-'));
    dirs.push(dir);
    return dir;
  };

  it('refuses, never acknowledges, a write that cannot be made durable; all acknowledged ones are there once space is back', async () => {
    const dataDir = newDir();
    const ledger = await launchLedger({
      dataDir,
      natsUrl: nats.url,
      fileSizeLimitBlocks: FILE_SIZE_LIMIT_BLOCKS,
    });
    ledgers.push(ledger);
    const http = new Http(ledger.url);
    expect(
      (
        await http.post('/v1/organizations', {
          organizationId: 'full',
          name: 'F',
          ownerUserId: 'u',
        })
      ).status,
    ).toBe(201);
    expect(
      (
        await http.post('/v1/organizations/full/grants', {
          grantId: 'g',
          amount: 100_000_000,
          source: 'plan',
        })
      ).status,
    ).toBe(201);

    const acknowledged = new Set<string>();
    const refused = new Set<string>();
    const defects: string[] = [];
    let sent = 0;
    let refusedInARow = 0;
    const deadline = Date.now() + 60_000;
    const worker = async () => {
      // Until the files are full and writes have been refused for a while.
      while (refusedInARow < 100 && Date.now() < deadline && ledger.running) {
        const runId = `r-${sent++}`;
        // A long charm id fills the files sooner.
        const reply = await http
          .post('/v1/charm-runs', {
            runId,
            charmId: `c${'x'.repeat(60)}`,
            userId: 'u',
            amount: 1,
            organizationId: 'full',
          })
          .catch((error: unknown) => String(error));
        if (typeof reply === 'string') {
          defects.push(`${runId}: no answer (${reply})`);
          return;
        }
        if (reply.status === 201) {
          acknowledged.add(runId);
          refusedInARow = 0;
        } else {
          refused.add(runId);
          refusedInARow++;
          const defect = problemDefect(reply);
          if (reply.status !== 503 || defect)
            defects.push(`${runId}: ${reply.status} ${defect ?? ''} ${reply.text.slice(0, 200)}`);
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    const aliveWhenFull = ledger.running;
    await ledger.kill();

    // Space again: the same files, no limit.
    const restarted = Date.now();
    const again = await launchLedger({ dataDir, natsUrl: nats.url });
    ledgers.push(again);
    const after = await new Http(again.url).post('/v1/charm-runs', {
      runId: 'after',
      charmId: 'c',
      userId: 'u',
      amount: 1,
      organizationId: 'full',
    });
    const recoveryMs = Date.now() - restarted;
    // Clients retry what was refused: each is charged once now.
    const retried = await Promise.all(
      [...refused].slice(0, 50).map((runId) =>
        new Http(again.url).post('/v1/charm-runs', {
          runId,
          charmId: `c${'x'.repeat(60)}`,
          userId: 'u',
          amount: 1,
          organizationId: 'full',
        }),
      ),
    );
    const events = readStore(dataDir);
    const charged = chargesIn(events);
    await again.stop();

    const count = (runId: string) => charged.get(`full/${runId}`)?.count ?? 0;
    const lost = [...acknowledged].filter((runId) => count(runId) === 0).length;
    const doubled = [...charged.values()].filter((c) => c.count > 1).length;
    const retriedIds = new Set([...refused].slice(0, 50));
    const refusedButWritten = [...refused].filter(
      (runId) => !retriedIds.has(runId) && count(runId) > 0,
    );
    recordFigures({
      scenario: 'disk full (ulimit -f 1 MiB)',
      sent,
      acknowledged: acknowledged.size,
      rejected: refused.size,
      lost,
      doubled,
      recoveryMs,
      recovery: 'restart with space to the first charge',
    });

    expect(defects.slice(0, 5)).toEqual([]);
    expect(aliveWhenFull).toBe(true);
    expect(acknowledged.size).toBeGreaterThan(0);
    expect(refused.size).toBeGreaterThanOrEqual(100);
    expect(lost).toBe(0);
    expect(doubled).toBe(0);
    expect(refusedButWritten).toEqual([]);
    expect(after.status).toBe(201);
    expect(retried.map((r) => r.status)).toEqual(retried.map(() => 201));
  }, 180_000);

  it('says why and starts nothing when its event store file is damaged', async () => {
    // A store with some history, shut down cleanly.
    const pristineDir = newDir();
    const ledger = await launchLedger({ dataDir: pristineDir, natsUrl: nats.url });
    const http = new Http(ledger.url);
    await http.post('/v1/organizations', { organizationId: 'o', name: 'O', ownerUserId: 'u' });
    await http.post('/v1/organizations/o/grants', { grantId: 'g', amount: 10_000, source: 'plan' });
    await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        http.post('/v1/charm-runs', {
          runId: `r-${i}`,
          charmId: 'c',
          userId: 'u',
          amount: 1,
          organizationId: 'o',
        }),
      ),
    );
    await ledger.stop();
    const pristine = join(pristineDir, 'events.sqlite');
    const pages = Math.floor(statSync(pristine).size / 4096);
    expect(pages).toBeGreaterThan(20);

    const damages: Record<string, (file: string) => void> = {
      'a page of garbage in the middle': (file) => {
        const descriptor = openSync(file, 'r+');
        writeSync(descriptor, randomBytes(4096), 0, 4096, Math.floor(pages / 2) * 4096);
        closeSync(descriptor);
      },
      'cut to half its length': (file) => truncateSync(file, Math.floor(pages / 2) * 4096),
      'a broken header': (file) => {
        const descriptor = openSync(file, 'r+');
        writeSync(descriptor, Buffer.from('not a database!!'), 0, 16, 0);
        closeSync(descriptor);
      },
    };
    const outcomes: Record<string, unknown> = {};
    for (const [name, damage] of Object.entries(damages)) {
      const dataDir = newDir();
      const file = join(dataDir, 'events.sqlite');
      copyFileSync(pristine, file);
      damage(file);
      const damaged = readFileSync(file);
      const before = readdirSync(dataDir).sort();
      const service = await spawnLedger({ dataDir, natsUrl: nats.url });
      ledgers.push(service);
      const code = await within(service.exited, 20_000, 'still running');
      const listening = await fetch(`${service.url}/health`)
        .then(() => true)
        .catch(() => false);
      await service.kill();
      const lines = service.output().trim().split('\n');
      outcomes[name] = {
        code,
        lines: lines.length,
        namesTheFile: lines[0]?.includes(file) && /damaged/.test(lines[0] ?? ''),
        listening,
        filesAfter: readdirSync(dataDir).sort(),
        untouched: readFileSync(file).equals(damaged),
      };
      expect({ name, ...(outcomes[name] as object) }).toEqual({
        name,
        code: 1,
        lines: 1,
        namesTheFile: true,
        listening: false,
        filesAfter: before,
        untouched: true,
      });
    }
    process.stdout.write(`damaged stores: ${JSON.stringify(outcomes)}\n`);
    recordFigures({
      scenario: 'damaged event store (3 kinds)',
      sent: Object.keys(damages).length,
      acknowledged: 0,
      rejected: Object.keys(damages).length,
      lost: 0,
      doubled: 0,
      recoveryMs: null,
      recovery: 'refused to start, one line naming the file',
    });
  }, 120_000);
});
