import { Global, Module } from '@nestjs/common';
import { CqrsModule } from '@nestjs/cqrs';
import { VerifyOrganizationHandler } from '../audit/verify';
import { LEDGER_CONFIG, type LedgerConfig } from '../config/config';
import { EVENT_STORE } from '../event-store/event-store';
import { WriteModule } from '../write/write.module';
import {
  GetOrganizationHandler,
  GetUsageHandler,
  GetUserOrganizationsHandler,
  ListMembersHandler,
} from './queries';
import { readModelDataSource } from './read-model-database';
import { READ_MODEL_DATABASE, ReadModels } from './read-models';

/** The read models' database, the projection runner, and the queries answered from them. */
@Global()
@Module({
  imports: [CqrsModule, WriteModule],
  providers: [
    GetUserOrganizationsHandler,
    GetUsageHandler,
    GetOrganizationHandler,
    ListMembersHandler,
    VerifyOrganizationHandler,
    {
      provide: READ_MODEL_DATABASE,
      // After the event store has opened (and passed its integrity check): read models are
      // never created or migrated beside a store the service refuses to start on.
      inject: [LEDGER_CONFIG, EVENT_STORE],
      useFactory: (config: LedgerConfig) => readModelDataSource(config).initialize(),
    },
    ReadModels,
  ],
  exports: [ReadModels, READ_MODEL_DATABASE],
})
export class ReadModelsModule {}
