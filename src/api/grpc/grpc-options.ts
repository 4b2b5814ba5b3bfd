import { join } from 'node:path';
import { Transport, type GrpcOptions } from '@nestjs/microservices';
import type { LedgerConfig } from '../../config/config';

export const LEDGER_PROTO = join(__dirname, 'ledger.proto');
export const HEALTH_PROTO = join(__dirname, 'health.proto');

/** The gRPC server beside HTTP: LedgerService and the standard health service. */
export function grpcOptions(config: Pick<LedgerConfig, 'grpcPort'>, host = '0.0.0.0'): GrpcOptions {
  return {
    transport: Transport.GRPC,
    options: {
      url: `${host}:${config.grpcPort}`,
      package: ['charmiq.ledger.v1', 'grpc.health.v1'],
      protoPath: [LEDGER_PROTO, HEALTH_PROTO],
      // Credit amounts fit a JS number (at most 10^12); defaults make absent fields zero/empty.
      loader: { keepCase: false, longs: Number, enums: String, defaults: true },
      gracefulShutdown: true,
    },
  };
}
