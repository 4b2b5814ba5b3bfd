import { Global, Module } from '@nestjs/common';
import { TokenVerifier } from './token-verifier';

/** Token verification for every edge (HTTP guard, gRPC). */
@Global()
@Module({ providers: [TokenVerifier], exports: [TokenVerifier] })
export class AuthModule {}
