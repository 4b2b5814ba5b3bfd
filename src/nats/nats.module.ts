import {
  Global,
  Inject,
  Injectable,
  Logger,
  Module,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
} from '@nestjs/common';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { DataSource } from 'typeorm';
import { HealthChecks } from '../api/http/health.controller';
import { LEDGER_CONFIG, type LedgerConfig } from '../config/config';
import { EVENT_STORE, type EventStore } from '../event-store/event-store';
import { saveCheckpoint } from '../read/projection-runner';
import { READ_MODEL_DATABASE } from '../read/read-models';
import { JetStreamPublisher } from './jetstream-publisher';

const PUBLISHER_CHECKPOINT = 'jetstream-publisher';
const RECONNECT_WAIT_MS = 1000;

/**
 * The NATS connection and the JetStream publisher. The service never waits for NATS: it
 * connects in the background, reconnects by itself, and the publisher catches up with
 * everything it owes once NATS is back. /health reports NATS without failing readiness.
 */
@Injectable()
export class EventPublishing implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(EventPublishing.name);
  private connection?: NatsConnection;
  private stopping = false;
  private connecting?: Promise<void>;
  private readonly connectedListeners: ((connection: NatsConnection) => void)[] = [];
  readonly publisher: JetStreamPublisher;

  constructor(
    @Inject(LEDGER_CONFIG) private readonly config: LedgerConfig,
    @Inject(EVENT_STORE) store: EventStore,
    @Inject(READ_MODEL_DATABASE) database: DataSource,
    health: HealthChecks,
  ) {
    const placeholder = database.options.type === 'postgres' ? '$1' : '?';
    this.publisher = new JetStreamPublisher(
      store,
      {
        load: async () => {
          const rows: { position: string }[] = await database.query(
            `SELECT "position" FROM "projection_checkpoints" WHERE "projection" = ${placeholder}`,
            [PUBLISHER_CHECKPOINT],
          );
          return rows.length === 0 ? 0n : BigInt(rows[0].position);
        },
        save: (position) =>
          database.transaction((manager) =>
            saveCheckpoint(manager, PUBLISHER_CHECKPOINT, position),
          ),
      },
      () => this.connection,
      {
        replicas: config.jetStreamReplicas,
        onError: (error) =>
          this.logger.warn(`publishing to JetStream failed, will retry: ${String(error)}`),
      },
    );
    health.register(
      'nats',
      async () => {
        if (!this.connection || this.connection.isClosed()) throw new Error('not connected');
        await this.connection.flush();
      },
      { required: false },
    );
  }

  /** Called once the first connection is up (the client then reconnects by itself). */
  onConnected(listener: (connection: NatsConnection) => void) {
    this.connectedListeners.push(listener);
    if (this.connection) listener(this.connection);
  }

  async onApplicationBootstrap() {
    await this.publisher.start();
    this.connecting = this.connectInBackground();
  }

  async onApplicationShutdown() {
    this.stopping = true;
    await this.publisher.stop();
    await this.connecting;
    await this.connection?.close();
  }

  private async connectInBackground() {
    while (!this.stopping && !this.connection) {
      try {
        this.connection = await connect({
          servers: this.config.natsServers,
          name: 'ledger',
          reconnect: true,
          maxReconnectAttempts: -1,
          reconnectTimeWait: RECONNECT_WAIT_MS,
          // Otherwise the client captures a stack trace up front for every request, and every
          // JetStream publish is one: a tenth of the hot path's time went there.
          noAsyncTraces: true,
        });
        this.logger.log(`connected to NATS at ${this.connection.getServer()}`);
        for (const listener of this.connectedListeners) listener(this.connection);
      } catch (error) {
        this.logger.warn(`NATS not reachable (${String(error)}); retrying`);
        await new Promise((resolve) => setTimeout(resolve, RECONNECT_WAIT_MS));
      }
    }
  }
}

@Global()
@Module({ providers: [EventPublishing], exports: [EventPublishing] })
export class NatsModule {}
