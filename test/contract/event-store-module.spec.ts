import 'reflect-metadata';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type DynamicModule, Module } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { LEDGER_CONFIG, loadConfig } from '../../src/config/config';
import { EVENT_STORE, type EventStore, SNAPSHOT_STORE } from '../../src/event-store/event-store';
import { EventStoreModule } from '../../src/event-store/event-store.module';
import { SqliteEventStore } from '../../src/event-store/sqlite/sqlite-event-store';

/** Stands in for the application's config module: LEDGER_CONFIG, visible everywhere. */
@Module({})
class TestConfigModule {
  static with(env: NodeJS.ProcessEnv): DynamicModule {
    return {
      module: TestConfigModule,
      global: true,
      providers: [
        {
          provide: LEDGER_CONFIG,
          useValue: loadConfig({ LEDGER_JWT_SECRET: 'x'.repeat(32), ...env }),
        },
      ],
      exports: [LEDGER_CONFIG],
    };
  }
}

describe('EventStoreModule', () => {
  let dataDir: string;

  beforeEach(async () => {
    dataDir = join(await mkdtemp(join(tmpdir(), 'ledger-module-')), 'data');
  });

  afterEach(async () => {
    await rm(join(dataDir, '..'), { recursive: true, force: true });
  });

  it('opens events.sqlite in the data folder and closes it on shutdown', async () => {
    const app = await Test.createTestingModule({
      imports: [TestConfigModule.with({ LEDGER_DATA_DIR: dataDir }), EventStoreModule],
    }).compile();
    await app.init();

    const store = app.get<EventStore>(EVENT_STORE);
    expect(store).toBeInstanceOf(SqliteEventStore);
    expect(app.get(SNAPSHOT_STORE)).toBe(store);
    expect(existsSync(join(dataDir, 'events.sqlite'))).toBe(true);
    await store.appendToStream('organization-acme', [], 'any');
    await expect(store.ping()).resolves.toBeUndefined();

    await app.close();
    await expect(store.ping()).rejects.toThrow(/closed/);
  });

  it.each(['postgres', 'eventstoredb'])(
    'refuses LEDGER_EVENT_STORE=%s with a clear message',
    async (eventStore) => {
      const compiling = Test.createTestingModule({
        imports: [
          TestConfigModule.with({ LEDGER_DATA_DIR: dataDir, LEDGER_EVENT_STORE: eventStore }),
          EventStoreModule,
        ],
      }).compile();
      await expect(compiling).rejects.toThrow(
        `LEDGER_EVENT_STORE=${eventStore} is not available in this build yet`,
      );
      expect(existsSync(join(dataDir, 'events.sqlite'))).toBe(false);
    },
  );
});
