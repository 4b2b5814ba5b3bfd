import {
  Controller,
  DynamicModule,
  Get,
  Header,
  Inject,
  Injectable,
  Logger,
  Module,
  ModuleMetadata,
} from '@nestjs/common';
import { ApiOkResponse, ApiServiceUnavailableResponse, ApiTags } from '@nestjs/swagger';
import { EVENT_STORE, EventStore } from '../../event-store/event-store';
import { unavailable } from '../../ledger/errors';
import { Public } from './request-context';

/** Resolves when the dependency answers; rejects (or times out) when it does not. */
export type HealthCheck = () => Promise<void>;

export interface CheckState {
  status: 'up' | 'down';
  /** False for a dependency the service works without for a while (NATS). */
  required?: boolean;
}

export interface HealthReport {
  status: 'ok';
  checks: Record<string, CheckState>;
}

/** A check that has not answered by then counts as down: /health itself must not hang. */
export const HEALTH_CHECK_TIMEOUT_MS = 3000;

/**
 * The dependencies /health reports on. The event store is always one; other modules add
 * theirs (NATS, the read-model database) by injecting this and calling `register`.
 */
@Injectable()
export class HealthChecks {
  private readonly logger = new Logger(HealthChecks.name);
  private readonly checks = new Map<string, HealthCheck>();
  private readonly optional = new Set<string>();

  constructor(@Inject(EVENT_STORE) eventStore: EventStore) {
    this.register('eventStore', () => eventStore.ping());
  }

  private state(status: CheckState['status'], name: string): CheckState {
    return this.optional.has(name) ? { status, required: false } : { status };
  }

  /** `required: false` reports the dependency without making the service unready. */
  register(name: string, check: HealthCheck, options: { required?: boolean } = {}): void {
    if (this.checks.has(name)) throw new Error(`health check ${name} is already registered`);
    this.checks.set(name, check);
    if (options.required === false) this.optional.add(name);
  }

  /** Runs every check at once; `healthy` when all are up. */
  async run(
    timeoutMs = HEALTH_CHECK_TIMEOUT_MS,
  ): Promise<{ healthy: boolean; checks: Record<string, CheckState> }> {
    const entries = await Promise.all(
      [...this.checks].map(async ([name, check]): Promise<[string, CheckState]> => {
        try {
          await withTimeout(check, timeoutMs);
          return [name, this.state('up', name)];
        } catch (error) {
          // The reason goes to the log, not to the public answer.
          this.logger.warn(`health check ${name} failed: ${describe(error)}`);
          return [name, this.state('down', name)];
        }
      }),
    );
    return {
      healthy: entries.every(([name, state]) => state.status === 'up' || this.optional.has(name)),
      checks: Object.fromEntries(entries),
    };
  }
}

async function withTimeout(check: HealthCheck, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([Promise.resolve().then(check), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const describe = (error: unknown): string =>
  error instanceof Error ? error.message : String(error);

/** Readiness: 200 when every dependency answers, else a 503 problem with each check's state. */
@ApiTags('health')
@Public()
@Controller('health')
export class HealthController {
  constructor(private readonly healthChecks: HealthChecks) {}

  @Get()
  @Header('Cache-Control', 'no-store')
  @ApiOkResponse({ description: 'Every dependency answers' })
  @ApiServiceUnavailableResponse({ description: 'A dependency does not answer (problem+json)' })
  async health(): Promise<HealthReport> {
    const { healthy, checks } = await this.healthChecks.run();
    if (!healthy) {
      const down = Object.keys(checks).filter((name) => checks[name].status === 'down');
      throw unavailable(`Not ready: ${down.join(', ')} down`, { checks });
    }
    return { status: 'ok', checks };
  }
}

/**
 * /health and the HealthChecks registry, global so any module can register a check. EVENT_STORE
 * must be resolvable here: pass the module that exports it unless it is global.
 */
@Module({})
export class HealthModule {
  static forRoot(imports: NonNullable<ModuleMetadata['imports']> = []): DynamicModule {
    return {
      module: HealthModule,
      global: true,
      imports,
      controllers: [HealthController],
      providers: [HealthChecks],
      exports: [HealthChecks],
    };
  }
}
