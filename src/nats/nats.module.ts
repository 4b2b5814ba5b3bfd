import {
  Global,
  Inject,
  Injectable,
  Logger,
  Module,
  type OnApplicationBootstrap,
  type OnApplicationShutdown,
} from '@nestjs/common';
import type { NatsConnection } from '@nats-io/transport-node';
import type { DataSource } from 'typeorm';
import { HealthChecks } from '../api/http/health.controller';
import { LEDGER_CONFIG, type LedgerConfig } from '../config/config';
import { EVENT_STORE, type EventStore } from '../event-store/event-store';
import { READ_MODEL_DATABASE } from '../read/read-models';
import { connectWhenReachable } from './connection';
import { ledgerPublisher, type JetStreamPublisher } from './jetstream-publisher';

/**
 * The NATS connection, and the JetStream publisher when the read side runs inline (else it
 * runs in the read side's thread, with a connection of its own). The service never waits for
 * NATS: it connects in the background, reconnects by itself, and the publisher catches up with
 * everything it owes once NATS is back. /health reports NATS without failing readiness.
 */
@Injectable()
export class EventPublishing implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger(EventPublishing.name);
  private connection?: NatsConnection;
  private stopping = false;
  private connecting?: Promise<void>;
  private readonly connectedListeners: ((connection: NatsConnection) => void)[] = [];
  private readonly publisher?: JetStreamPublisher;

  constructor(
    @Inject(LEDGER_CONFIG) private readonly config: LedgerConfig,
    @Inject(EVENT_STORE) store: EventStore,
    @Inject(READ_MODEL_DATABASE) database: DataSource,
    health: HealthChecks,
  ) {
    if (config.readSide === 'inline') {
      this.publisher = ledgerPublisher(
        store,
        database,
        () => this.connection,
        config,
        (error) => this.logger.warn(`publishing to JetStream failed, will retry: ${String(error)}`),
      );
    }
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
    await this.publisher?.start();
    this.connecting = this.connectInBackground();
  }

  async onApplicationShutdown() {
    this.stopping = true;
    await this.publisher?.stop();
    await this.connecting;
    await this.connection?.close();
  }

  private async connectInBackground() {
    this.connection = await connectWhenReachable(
      this.config,
      'ledger',
      () => this.stopping,
      (message) => this.logger.warn(message),
    );
    if (!this.connection) return;
    this.logger.log(`connected to NATS at ${this.connection.getServer()}`);
    for (const listener of this.connectedListeners) listener(this.connection);
  }
}

@Global()
@Module({ providers: [EventPublishing], exports: [EventPublishing] })
export class NatsModule {}
