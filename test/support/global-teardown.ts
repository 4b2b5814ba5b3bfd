import { dropEndToEndDatabases, E2E_ON_POSTGRES } from './postgres';

export default async function globalTeardown(): Promise<void> {
  if (E2E_ON_POSTGRES) await dropEndToEndDatabases();
}
