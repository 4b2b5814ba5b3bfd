import { Controller, Get, Header, Global, Injectable, Module } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import { Public } from '../api/http/request-context';
import { Counter, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** From half a millisecond to a second: writes, loads and requests alike. */
const SECONDS_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1];

/** The ledger's Prometheus metrics, in a registry of its own (tests start many apps). */
@Injectable()
export class LedgerMetrics {
  readonly registry = new Registry();

  readonly commands = new Counter({
    name: 'ledger_commands_total',
    help: 'Commands decided, by aggregate and outcome (written, replayed, rejected, failed)',
    labelNames: ['aggregate', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly batchSize = new Histogram({
    name: 'ledger_batch_commands',
    help: 'Commands appended together in one write (group commit)',
    labelNames: ['aggregate'] as const,
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512],
    registers: [this.registry],
  });

  readonly appendSeconds = this.seconds(
    'ledger_append_seconds',
    'Time to make one batch durable in the event store',
    ['aggregate'],
  );

  readonly loadSeconds = this.seconds(
    'ledger_aggregate_load_seconds',
    'Time to load an aggregate that was not in the cache, from a snapshot or from its events',
    ['aggregate', 'from'],
  );

  readonly natsRequestSeconds = this.seconds(
    'ledger_nats_request_seconds',
    'Time from a NATS request reaching its handler to its reply, by subject and outcome (ok, rejected, failed)',
    ['subject', 'outcome'],
  );

  readonly conflicts = new Counter({
    name: 'ledger_append_conflicts_total',
    help: 'Batches redone because another writer moved the stream',
    labelNames: ['aggregate'] as const,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  /** A duration in seconds, in SECONDS_BUCKETS. */
  private seconds<Label extends string>(name: string, help: string, labelNames: Label[]) {
    return new Histogram<Label>({
      name,
      help,
      labelNames,
      buckets: SECONDS_BUCKETS,
      registers: [this.registry],
    });
  }
}

@ApiExcludeController()
@Public()
@Controller('metrics')
export class MetricsController {
  constructor(private readonly metrics: LedgerMetrics) {}

  @Get()
  @Header('content-type', 'text/plain; version=0.0.4; charset=utf-8')
  scrape(): Promise<string> {
    return this.metrics.registry.metrics();
  }
}

@Global()
@Module({ providers: [LedgerMetrics], controllers: [MetricsController], exports: [LedgerMetrics] })
export class MetricsModule {}
