import { Global, Module, type DynamicModule } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { HealthGrpcController } from './api/grpc/health.grpc-controller';
import { LedgerGrpcController } from './api/grpc/ledger.grpc-controller';
import { AuditController } from './api/http/audit.controller';
import { BalanceController } from './api/http/balance.controller';
import { UsageController } from './api/http/usage.controller';
import { ReadModelsModule } from './read/read-models.module';
import { CreditsController } from './api/http/credits.controller';
import { HealthModule } from './api/http/health.controller';
import { OrganizationsController } from './api/http/organizations.controller';
import { AuthenticationGuard } from './api/http/request-context';
import { UsersController } from './api/http/users.controller';
import { AuthModule } from './auth/auth.module';
import { LEDGER_CONFIG, type LedgerConfig } from './config/config';
import { EventStoreModule } from './event-store/event-store.module';
import { loggerModule } from './logging/logging.module';
import { MetricsModule } from './metrics/metrics';
import { NatsModule } from './nats/nats.module';
import { LedgerNatsService } from './api/nats/ledger-nats.service';
import { WriteModule } from './write/write.module';

@Global()
@Module({})
class ConfigModule {
  static forRoot(config: LedgerConfig): DynamicModule {
    return {
      module: ConfigModule,
      providers: [{ provide: LEDGER_CONFIG, useValue: config }],
      exports: [LEDGER_CONFIG],
    };
  }
}

/** HTTP, gRPC, the write side and the event store in one process; adapters chosen from config. */
@Module({})
export class AppModule {
  static forRoot(config: LedgerConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot(config),
        loggerModule(config),
        EventStoreModule,
        AuthModule,
        HealthModule.forRoot(),
        MetricsModule,
        WriteModule,
        ReadModelsModule,
        NatsModule,
      ],
      controllers: [
        UsersController,
        OrganizationsController,
        CreditsController,
        BalanceController,
        UsageController,
        AuditController,
        LedgerGrpcController,
        HealthGrpcController,
      ],
      providers: [{ provide: APP_GUARD, useClass: AuthenticationGuard }, LedgerNatsService],
    };
  }
}
