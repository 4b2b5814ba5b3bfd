// `npm run test:faults`: the fault and abuse suite (test/faults/*.faults.ts). It drives the
// built service as a child process, one scenario at a time, and ends with the figures table.
// The default `jest` run does not pick these files up (they are not *.spec.ts).
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test/faults'],
  testMatch: ['**/test/faults/**/*.faults.ts'],
  transform: { '^.+\\.(t|j)s$': '@swc/jest' },
  transformIgnorePatterns: [
    '/node_modules/(?!(@nestjs|@fastify|content-disposition|jose|commander)/)',
  ],
  maxWorkers: 1,
  testTimeout: 240_000,
  reporters: [
    'default',
    '<rootDir>/test/faults/support/faults-reporter.js',
    '<rootDir>/test/support/summary-reporter.js',
  ],
};
