import { NestFactory } from '@nestjs/core';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { Logger } from 'nestjs-pino';
import { grpcOptions } from './api/grpc/grpc-options';
import { configureHttp, ledgerHttpAdapter } from './api/http/http-setup';
import { AppModule } from './app.module';
import { ConfigError, LedgerConfig, loadConfig } from './config/config';

async function bootstrap(): Promise<void> {
  let config: LedgerConfig;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      // One clear line naming the setting, before any file, port or connection is opened.
      process.stderr.write(`${error.message}\n`);
      process.exitCode = 1;
      return;
    }
    throw error;
  }

  let app: NestFastifyApplication;
  try {
    // abortOnError false: a provider that cannot open (a damaged event store, a database that
    // refuses) ends the start with its reason instead of process.abort() and a core dump;
    // autoFlushLogs false keeps Nest's own multi-line report of it out of the output.
    app = await NestFactory.create<NestFastifyApplication>(
      AppModule.forRoot(config),
      ledgerHttpAdapter(),
      { bufferLogs: true, abortOnError: false, autoFlushLogs: false },
    );
  } catch (error) {
    process.stderr.write(
      `The ledger did not start: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    process.exitCode = 1;
    return;
  }
  const logger = app.get(Logger);
  app.useLogger(logger);
  app.flushLogs();
  configureHttp(app);
  app.connectMicroservice(grpcOptions(config));
  try {
    await app.startAllMicroservices();
    // Every interface, as a service in a container must (Fastify alone would take localhost).
    await app.listen(config.port, '0.0.0.0');
  } catch (error) {
    logger.error(error instanceof Error ? error : new Error(String(error)), 'Bootstrap');
    await app.close();
    process.exitCode = 1;
    return;
  }
  logger.log(
    `Credit ledger listening on ${await app.getUrl()} (HTTP) and port ${config.grpcPort} (gRPC)`,
    'Bootstrap',
  );
}

bootstrap().catch((error: unknown) => {
  process.stderr.write(
    `${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exitCode = 1;
});
