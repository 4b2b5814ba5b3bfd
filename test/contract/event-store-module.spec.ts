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
import { EventStoreDbEventStore } from '../../src/event-store/eventstoredb/eventstoredb-event-store';
import { PostgresEventStore } from '../../src/event-store/postgres/postgres-event-store';
import { SqliteEventStore } from '../../src/event-store/sqlite/sqlite-event-store';
import { startEventStoreDbDouble } from '../support/eventstoredb-double';
import { createTestDatabase } from '../support/postgres';
import { newEvents } from './event-store.contract';

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

  it('opens the PostgreSQL event store at DATABASE_URL', async () => {
    const database = await createTestDatabase();
    try {
      const app = await Test.createTestingModule({
        imports: [
          TestConfigModule.with({
            LEDGER_DATA_DIR: dataDir,
            LEDGER_EVENT_STORE: 'postgres',
            DATABASE_URL: database.url,
          }),
          EventStoreModule,
        ],
      }).compile();
      await app.init();
      const store = app.get<EventStore>(EVENT_STORE);
      expect(store).toBeInstanceOf(PostgresEventStore);
      expect(app.get(SNAPSHOT_STORE)).toBe(store);
      await store.appendToStream('organization-acme', newEvents(1), 'no_stream');
      expect(await store.readStream('organization-acme')).toHaveLength(1);
      expect(existsSync(join(dataDir, 'events.sqlite'))).toBe(false);
      await app.close();
      await expect(store.ping()).rejects.toThrow(/closed/);
    } finally {
      await database.drop();
    }
  });

  it('opens EventStoreDB at EVENTSTORE_URL, and refuses to start when it does not answer', async () => {
    const double = await startEventStoreDbDouble();
    try {
      const app = await Test.createTestingModule({
        imports: [
          TestConfigModule.with({
            LEDGER_EVENT_STORE: 'eventstoredb',
            EVENTSTORE_URL: double.connectionString,
          }),
          EventStoreModule,
        ],
      }).compile();
      await app.init();
      const store = app.get<EventStore>(EVENT_STORE);
      expect(store).toBeInstanceOf(EventStoreDbEventStore);
      await store.appendToStream('organization-acme', newEvents(2), 'no_stream');
      expect(await store.readStream('organization-acme')).toHaveLength(2);
      await app.close();
    } finally {
      await double.stop();
    }

    const unreachable = Test.createTestingModule({
      imports: [
        TestConfigModule.with({
          LEDGER_EVENT_STORE: 'eventstoredb',
          EVENTSTORE_URL: 'esdb://127.0.0.1:1?tls=false',
        }),
        EventStoreModule,
      ],
    }).compile();
    await expect(unreachable).rejects.toThrow(
      /EventStoreDB at esdb:\/\/127\.0\.0\.1:1.* does not answer/,
    );
  });
});
