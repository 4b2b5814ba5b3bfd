// NestJS 12 (and @fastify/static's content-disposition) ship ES modules; @swc/jest (with
// .swcrc, as the build) compiles them and our TypeScript, with decorator metadata, to CommonJS so Jest can load them on Node 20.
// Type checking is `npm run lint`.
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.spec.ts'],
  transform: { '^.+\\.(t|j)s$': '@swc/jest' },
  transformIgnorePatterns: [
    '/node_modules/(?!(@nestjs|@fastify|content-disposition|jose|commander)/)',
  ],
  testTimeout: 30000,
  globalTeardown: '<rootDir>/test/support/global-teardown.ts',
  reporters: ['default', '<rootDir>/test/support/summary-reporter.js'],
};
