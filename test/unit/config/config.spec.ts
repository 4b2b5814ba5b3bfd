import { ConfigError, loadConfig } from '../../../src/config/config';

function configError(env: NodeJS.ProcessEnv): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('loadConfig', () => {
  it('has the defaults of API.md', () => {
    expect(loadConfig({})).toMatchObject({
      port: 3000,
      grpcPort: 50051,
      dataDir: './data',
      eventStore: 'sqlite',
      eventStoreUrl: 'esdb://127.0.0.1:2113?tls=false',
      databaseUrl: undefined,
      natsServers: ['nats://127.0.0.1:4222'],
      logLevel: 'info',
      snapshotEvery: 500,
      cacheSize: 10_000,
      readSide: 'thread',
      readSideNice: 10,
    });
  });

  it('lowers the read side thread by 0 to 19 nice levels, and names any other number', () => {
    expect(loadConfig({ LEDGER_READ_SIDE_NICE: '0' }).readSideNice).toBe(0);
    expect(loadConfig({ LEDGER_READ_SIDE_NICE: '19' }).readSideNice).toBe(19);
    for (const wrong of ['20', '-1', '2.5', 'low']) {
      expect(configError({ LEDGER_READ_SIDE_NICE: wrong }).message).toBe(
        `Invalid setting LEDGER_READ_SIDE_NICE="${wrong}": must be an integer from 0 to 19`,
      );
    }
  });

  it('runs the read side in its own thread unless told to run it inline, and names a wrong choice', () => {
    expect(loadConfig({ LEDGER_READ_SIDE: 'inline' }).readSide).toBe('inline');
    expect(configError({ LEDGER_READ_SIDE: 'process' }).message).toMatch(
      /^Invalid setting LEDGER_READ_SIDE="process": /,
    );
  });

  it('counts empty variables as unset', () => {
    expect(loadConfig({ PORT: '', LEDGER_EVENT_STORE: '' })).toMatchObject({
      port: 3000,
      eventStore: 'sqlite',
    });
  });

  it('reads the settings', () => {
    expect(
      loadConfig({
        PORT: '8080',
        GRPC_PORT: '0',
        LEDGER_DATA_DIR: '/var/lib/ledger',
        LEDGER_EVENT_STORE: 'postgres',
        DATABASE_URL: 'postgres://ledger@db/ledger',
        LOG_LEVEL: 'debug',
        LEDGER_JWT_SECRET: 'a-secret-of-at-least-thirty-two-chars',
      }),
    ).toMatchObject({
      port: 8080,
      grpcPort: 0,
      dataDir: '/var/lib/ledger',
      eventStore: 'postgres',
      databaseUrl: 'postgres://ledger@db/ledger',
      logLevel: 'debug',
    });
  });

  it('never runs unauthenticated: a production store needs a secret or a JWKS', () => {
    expect(() =>
      loadConfig({ LEDGER_EVENT_STORE: 'postgres', DATABASE_URL: 'postgres://ledger@db/ledger' }),
    ).toThrow(/^Missing setting LEDGER_JWT_SECRET/);
    expect(
      loadConfig({
        LEDGER_EVENT_STORE: 'eventstoredb',
        LEDGER_JWKS_URL: 'https://id.example/jwks.json',
        LEDGER_JWT_ISSUER: 'https://id.example/',
        LEDGER_JWT_AUDIENCE: 'ledger',
      }).jwksUrl,
    ).toBe('https://id.example/jwks.json');
  });

  it('needs DATABASE_URL for the PostgreSQL event store', () => {
    expect(() =>
      loadConfig({ LEDGER_EVENT_STORE: 'postgres', LEDGER_JWT_SECRET: 'x'.repeat(32) }),
    ).toThrow(/^Missing setting DATABASE_URL: required with LEDGER_EVENT_STORE=postgres/);
  });

  it('pins issuer and audience with a JWKS, and takes one kind of key only', () => {
    expect(() => loadConfig({ LEDGER_JWKS_URL: 'https://id.example/jwks.json' })).toThrow(
      /LEDGER_JWT_ISSUER/,
    );
    expect(() =>
      loadConfig({ LEDGER_JWKS_URL: 'https://x/jwks', LEDGER_JWT_ISSUER: 'https://x/' }),
    ).toThrow(/LEDGER_JWT_AUDIENCE/);
    expect(() =>
      loadConfig({ LEDGER_JWT_SECRET: 'x'.repeat(32), LEDGER_JWKS_URL: 'https://x/jwks' }),
    ).toThrow(/not both/);
  });

  it('refuses a short HS256 secret', () => {
    expect(() => loadConfig({ LEDGER_JWT_SECRET: 'short' })).toThrow(/LEDGER_JWT_SECRET/);
  });

  it('splits NATS_URL on commas', () => {
    expect(
      loadConfig({ NATS_URL: 'nats://a:4222, nats://b:4222,nats://c:4222' }).natsServers,
    ).toEqual(['nats://a:4222', 'nats://b:4222', 'nats://c:4222']);
  });

  it.each([
    ['PORT', 'abc'],
    ['PORT', '70000'],
    ['PORT', '-1'],
    ['GRPC_PORT', '3.5'],
    ['LEDGER_EVENT_STORE', 'mongo'],
    ['DATABASE_URL', 'mysql://db'],
    ['LOG_LEVEL', 'loud'],
  ])('%s=%s stops the start with one line naming it', (name, value) => {
    const error = configError({ [name]: value });
    expect(error.message).toContain(name);
    expect(error.message).toContain(value);
    expect(error.message).not.toContain('\n');
  });
});
