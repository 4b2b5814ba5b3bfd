import { Inject, Injectable, Logger, type OnApplicationShutdown } from '@nestjs/common';
import { CommandBus, QueryBus } from '@nestjs/cqrs';
import type { NatsConnection } from '@nats-io/transport-node';
import { Svcm, type Service, type ServiceMsg } from '@nats-io/services';
import type { ClassConstructor } from 'class-transformer';
import { randomUUID } from 'node:crypto';
import { actorOf, SERVICE_SCOPE, type Caller } from '../../auth/caller';
import { LEDGER_CONFIG, type LedgerConfig } from '../../config/config';
import { LedgerError, ValidationFailed } from '../../ledger/errors';
import { LedgerMetrics } from '../../metrics/metrics';
import { EventPublishing } from '../../nats/nats.module';
import {
  CaptureReservation,
  ChargeCharmRun,
  GrantCredits,
  RefundCharmRun,
  ReleaseReservation,
  ReserveCredits,
  type RequestContext,
} from '../../write/commands';
import { GetBalance } from '../../write/queries';
import { ChargeCharmRunDto } from '../http/dto/credits.dto';
import { acceptedAsIs } from '../compiled-check';
import { isDependencyUnavailable } from '../dependency-errors';
import { validatedByClassValidator } from '../http/validation.pipe';
import {
  BalanceRequest,
  CaptureRequest,
  GrantRequest,
  RefundRequest,
  ReleaseRequest,
  ReserveRequest,
} from './nats.dto';

/** NATS requests are trusted by subject permissions on the account (README). */
const NATS_CALLER: Caller = { kind: 'service', id: 'nats', scopes: new Set([SERVICE_SCOPE]) };

type Handle = (body: object, context: RequestContext) => Promise<object>;

/**
 * The ledger's request/reply subjects (API.md), in queue group `ledger`, through the NATS
 * service framework so `$SRV.PING/INFO/STATS` answer as service `ledger`. Same validation,
 * same command bus and same domain errors as HTTP; a reply goes out only after the write
 * is durable, and every request gets one, malformed or not.
 */
@Injectable()
export class LedgerNatsService implements OnApplicationShutdown {
  private readonly logger = new Logger(LedgerNatsService.name);
  private service?: Service;

  constructor(
    private readonly commands: CommandBus,
    private readonly queries: QueryBus,
    publishing: EventPublishing,
    @Inject(LEDGER_CONFIG) config: LedgerConfig,
    private readonly metrics: LedgerMetrics,
  ) {
    if (config.natsRequests) publishing.onConnected((connection) => void this.serve(connection));
  }

  async onApplicationShutdown() {
    await this.service?.stop().catch(() => undefined);
  }

  private readonly endpoints: Record<string, { dto: ClassConstructor<object>; handle: Handle }> = {
    'charm-runs.charge': {
      dto: ChargeCharmRunDto,
      handle: (body, context) =>
        this.commands.execute(new ChargeCharmRun(body as ChargeCharmRunDto, context)),
    },
    'charm-runs.refund': {
      dto: RefundRequest,
      handle: (body, context) =>
        this.commands.execute(new RefundCharmRun(body as RefundRequest, context)),
    },
    'reservations.create': {
      dto: ReserveRequest,
      handle: (body, context) =>
        this.commands.execute(new ReserveCredits(body as ReserveRequest, context)),
    },
    'reservations.capture': {
      dto: CaptureRequest,
      handle: (body, context) =>
        this.commands.execute(new CaptureReservation(body as CaptureRequest, context)),
    },
    'reservations.release': {
      dto: ReleaseRequest,
      handle: (body, context) =>
        this.commands.execute(new ReleaseReservation(body as ReleaseRequest, context)),
    },
    'grants.create': {
      dto: GrantRequest,
      handle: (body, context) =>
        this.commands.execute(new GrantCredits(body as GrantRequest, context)),
    },
    'balance.get': {
      dto: BalanceRequest,
      handle: (body, context) =>
        this.queries.execute(
          new GetBalance(context.caller, (body as BalanceRequest).organizationId),
        ),
    },
  };

  private async serve(connection: NatsConnection) {
    try {
      await this.service?.stop().catch(() => undefined);
      // @nats-io/services (only published as 3.0.0-25) types a nats-core prerelease of its own;
      // the connection is the same protocol object at run time.
      const client = connection as unknown as ConstructorParameters<typeof Svcm>[0];
      const service = await new Svcm(client).add({
        name: 'ledger',
        version: '1.0.0',
        description: 'CharmIQ credit ledger',
        queue: 'ledger',
      });
      for (const [name, endpoint] of Object.entries(this.endpoints)) {
        // Endpoint names are single tokens; the subject keeps the dots.
        service.addEndpoint(name.replace('.', '_'), {
          subject: `ledger.${name}`,
          queue: 'ledger',
          handler: (error, message) => {
            if (error) return;
            void this.answer(message, `ledger.${name}`, endpoint);
          },
        });
      }
      this.service = service;
    } catch (error) {
      this.logger.error(`NATS service not started: ${String(error)}`);
    }
  }

  private async answer(
    message: ServiceMsg,
    subject: string,
    endpoint: { dto: ClassConstructor<object>; handle: Handle },
  ) {
    const received = performance.now();
    let reply: object;
    let outcome: 'ok' | 'rejected' | 'failed' = 'ok';
    try {
      const body = this.validated(message, endpoint.dto);
      const context: RequestContext = {
        caller: NATS_CALLER,
        actor: actorOf(NATS_CALLER),
        correlationId: randomUUID(),
      };
      const result = (await endpoint.handle(body, context)) as Record<string, unknown>;
      reply = { ok: true, ...result, position: String(result.position) };
    } catch (error) {
      reply = { ok: false, error: errorOf(error) };
      outcome = error instanceof LedgerError ? 'rejected' : 'failed';
      if (!(error instanceof LedgerError) && !isDependencyUnavailable(error))
        this.logger.error(`NATS request failed: ${String(error)}`);
    }
    message.respond(JSON.stringify(reply));
    this.metrics.natsRequestSeconds.observe(
      { subject, outcome },
      (performance.now() - received) / 1000,
    );
  }

  private validated(message: ServiceMsg, dto: ClassConstructor<object>): object {
    let body: unknown;
    try {
      body = JSON.parse(message.string());
    } catch {
      throw new ValidationFailed([{ field: 'body', message: 'must be JSON' }]);
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new ValidationFailed([{ field: 'body', message: 'must be a JSON object' }]);
    }
    return acceptedAsIs(dto, body) ?? validatedByClassValidator(dto, body);
  }
}

function errorOf(error: unknown) {
  if (error instanceof LedgerError) {
    return {
      code: error.code,
      message: error.message,
      ...(error.details ? { details: error.details } : {}),
    };
  }
  if (isDependencyUnavailable(error))
    return { code: 'UNAVAILABLE', message: 'a dependency is unreachable; retry' };
  return { code: 'INTERNAL', message: 'internal error' };
}
