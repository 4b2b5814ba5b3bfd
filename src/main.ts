import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { Logger } from 'nestjs-pino';
import { grpcOptions } from './api/grpc/grpc-options';
import { configureHttp } from './api/http/http-setup';
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

  const app = await NestFactory.create<NestExpressApplication>(AppModule.forRoot(config), {
    bufferLogs: true,
  });
  const logger = app.get(Logger);
  app.useLogger(logger);
  configureHttp(app);
  app.connectMicroservice(grpcOptions(config));
  try {
    await app.startAllMicroservices();
    await app.listen(config.port);
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
