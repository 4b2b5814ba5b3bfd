/**
 * `npm run bench`: starts what each scenario needs, runs it after a warm-up, prints one table
 * (and writes bench/results/latest.json) with every target and whether it was met. Load
 * comes from separate processes; every run is bounded in time. Not part of `npm test`.
 */
import { spawn } from 'node:child_process';
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import Database from 'better-sqlite3';
import { Command } from 'commander';
import { createTestDatabase } from '../test/support/postgres';
import {
  freePort,
  SERVICE_NODE_FLAGS,
  startService,
  type ServiceProcess,
} from '../test/support/service-process';
import { serviceToken, TEST_SECRET, tokenFor } from '../test/support/tokens';
import { historyDataset, manyOrganizationsDataset, TWIN_RUNS } from './datasets';
import {
  cpuSeconds,
  machineTicks,
  peakRssMb,
  runLoad,
  threadCpuSeconds,
  threadWrittenBytes,
  writtenBytes,
} from './support/processes';
import { THREAD_NAMES } from '../src/threads/thread-name';
import { allocationProfile, threadProfiles } from './support/profile';
import type { LoadReport } from './support/stats';
import type { FloorOptions } from './floor/contract-io';

export interface Row {
  scenario: string;
  target: string;
  throughput?: number;
  p50?: number;
  p99?: number;
  peakRssMb?: number;
  baseline?: number;
  measured: string;
  met: boolean;
  booksBalanced?: boolean;
  /** The service's CPU time (all threads) per charge, warm-up included, in ms. */
  cpuMsPerCharge?: number;
  /** The same by the service's thread. */
  cpuMsPerChargeByThread?: Record<string, number>;
  /** The same for the load process, and for the bench's NATS server (unless BENCH_NATS_URL). */
  loadCpuMsPerCharge?: number;
  natsCpuMsPerCharge?: number;
  /** Charges a second this machine's cores could carry at most, at those three costs. */
  cpuCeilingPerSecond?: number;
  /** The share of the machine's CPU time left idle while the load ran (warm-up included). */
  idleShare?: number;
  /** KB the service wrote to files per charge, warm-up included; by thread; the NATS server's. */
  writtenKbPerCharge?: number;
  writtenKbPerChargeByThread?: Record<string, number>;
  natsWrittenKbPerCharge?: number;
}

/**
 * The bench's own NATS server (JetStream, a temporary folder), so that no other ledger on the
 * machine's shared server answers our requests from its queue group; a new one for each row.
 * Set by main().
 */
let NATS_URL = process.env.BENCH_NATS_URL ?? '';
/** The current row's NATS server, whose CPU time counts in a charge's cost. */
let natsPid: number | undefined;

async function startNatsServer(): Promise<() => Promise<void>> {
  const port = await freePort();
  const storeDir = mkdtempSync(join(tmpdir(), 'ledger-bench-nats-'));
  const server = spawn(
    '/usr/sbin/nats-server',
    ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir],
    {
      stdio: 'ignore',
    },
  );
  NATS_URL = `nats://127.0.0.1:${port}`;
  natsPid = server.pid;
  for (let attempt = 0; ; attempt += 1) {
    try {
      const probe = await connect({ servers: NATS_URL });
      await probe.close();
      break;
    } catch (error) {
      if (attempt > 50) throw error;
      await delay(100);
    }
  }
  return async () => {
    server.kill('SIGTERM');
    await new Promise((resolve) => server.once('exit', resolve));
    rmSync(storeDir, { recursive: true, force: true });
  };
}
const USER = 'bench-user';
const GRANT = 1_000_000_000_000;

interface Timing {
  warmupMs: number;
  durationMs: number;
}

/** Signs up the bench user and makes `ids` company organizations with a large grant each. */
async function prepareOrganizations(service: ServiceProcess, ids: string[]): Promise<void> {
  const token = await serviceToken();
  const post = async (path: string, body: object) => {
    const response = await fetch(`${service.url}${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (!response.ok && response.status !== 409) {
      throw new Error(`${path}: ${response.status} ${await response.text()}`);
    }
  };
  await post('/v1/users', { userId: USER });
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < ids.length) {
        const id = ids[next++];
        await post('/v1/organizations', { organizationId: id, name: id, ownerUserId: USER });
        await post(`/v1/organizations/${id}/grants`, {
          grantId: 'bench',
          amount: GRANT,
          source: 'purchase',
        });
      }
    }),
  );
}

/**
 * The books: credits gone from the organizations equal the credits the load was told it
 * charged. autocannon drops the requests in flight when its time is up, so for it up to
 * `inFlight` more may be gone (charged, the answer never read).
 */
async function booksBalance(service: ServiceProcess, ids: string[], charged: number, inFlight = 0) {
  const token = await serviceToken();
  let gone = 0;
  for (const id of ids) {
    const response = await fetch(`${service.url}/v1/organizations/${id}/balance`, {
      headers: { authorization: `Bearer ${token}` },
    });
    const body = (await response.json()) as { available: number; reserved: number };
    gone += GRANT - body.available - body.reserved;
  }
  return gone >= charged && gone <= charged + inFlight;
}

async function withService<T>(
  env: Record<string, string>,
  work: (service: ServiceProcess) => Promise<T>,
): Promise<T> {
  const dataDir = mkdtempSync(join(tmpdir(), 'ledger-bench-'));
  const profileDir = join(dataDir, 'profile');
  const allocationsFile = join(dataDir, 'allocations.heapprofile');
  const service = await startMeasuredService(
    {
      LEDGER_DATA_DIR: dataDir,
      LEDGER_NATS_REQUESTS: 'on',
      NATS_URL,
      ...(samplingAllocations ? { LEDGER_BENCH_ALLOCATIONS_FILE: allocationsFile } : {}),
      ...env,
    },
    [
      ...(profiling ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []),
      ...(samplingAllocations
        ? ['--require', join(__dirname, 'support', 'allocation-sampler.js')]
        : []),
    ],
  );
  try {
    return await work(service);
  } finally {
    await service.stop();
    if (profiling) {
      const lines = (entries: { name: string; share: number }[]) =>
        entries.map(({ name, share }) => `  ${(share * 100).toFixed(1).padStart(5)}%  ${name}\n`);
      for (const { thread, busy, top, ownTotal } of threadProfiles(profileDir)) {
        process.stderr.write(
          [
            `bench: ${thread} thread, busy ${(busy * 100).toFixed(0)}% of the time; its running time (self time):\n`,
            ...lines(top),
            `bench: ${thread} thread, the service's own functions by total time (with what they call):\n`,
            ...lines(ownTotal),
          ].join(''),
        );
      }
    }
    if (samplingAllocations) printAllocations(allocationsFile);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

function printAllocations(file: string) {
  if (!existsSync(file)) {
    process.stderr.write(
      'bench: the service wrote no allocation profile (it did not stop on SIGTERM)\n',
    );
    return;
  }
  const { bytes, functions, places } = allocationProfile(file);
  const lines = (entries: { name: string; share: number }[]) =>
    entries
      .map(({ name, share }) => `  ${(share * 100).toFixed(1).padStart(5)}%  ${name}\n`)
      .join('');
  process.stderr.write(
    `bench: main thread allocated ${(bytes / 1e6).toFixed(0)} MB (sampled); by function:\n` +
      lines(functions) +
      'bench: by package or file:\n' +
      lines(places),
  );
}

async function baseline(organizations: number, timing: Timing): Promise<LoadReport> {
  const database = await createTestDatabase();
  try {
    return await runLoad('pg-baseline', {
      databaseUrl: database.url,
      organizations,
      concurrency: 64,
      ...timing,
    });
  } finally {
    await database.drop();
  }
}

async function natsScenario(
  service: ServiceProcess,
  organizations: string[],
  timing: Timing,
  extra: { concurrency?: number; ratePerSecond?: number } = {},
) {
  return measuredLoad(ledgerUnderLoad(service, organizations), () =>
    natsLoad(organizations, timing, extra),
  );
}

/** The load of the NATS scenarios: 64 requesters (closed loop), or a rate (open loop). */
function natsLoad(
  organizations: string[],
  timing: Timing,
  extra: { concurrency?: number; ratePerSecond?: number } = {},
) {
  return runLoad('nats-charges', {
    natsUrl: NATS_URL,
    organizations,
    userId: USER,
    concurrency: extra.concurrency ?? 64,
    ratePerSecond: extra.ratePerSecond,
    runPrefix: `run-${Date.now()}`,
    ...timing,
  });
}

/** CPU time per charge, in ms (the service's, the load's, the NATS server's), and the KB written. */
interface CpuPerCharge {
  service: number;
  /** The service's, by thread: each of its own, and the rest (V8's GC helper, libuv) together. */
  serviceThreads: Record<string, number>;
  load: number;
  nats?: number;
  /** The share of the machine's CPU time left idle while the load ran. */
  idle: number;
  /** KB written to files per charge: by the service, by its threads, by NATS (JetStream). */
  written: { service: number; serviceThreads: Record<string, number>; nats?: number };
}

/** The service's threads as the bench shows them, by the names it gives them. */
const SERVICE_THREADS: [label: string, name: string][] = [
  ['request thread', 'main'],
  ['read side', THREAD_NAMES.readSide],
  ['event-store writer', THREAD_NAMES.eventStoreWriter],
];

/** The threads that write to disk: the writer, the read side and the WAL checkpoints. */
const WRITING_THREADS: [label: string, name: string][] = [
  ['event-store writer', THREAD_NAMES.eventStoreWriter],
  ['read side', THREAD_NAMES.readSide],
  ['WAL checkpoints', THREAD_NAMES.walCheckpointer],
];

/** Each of the service's threads' share of `serviceTotal`, the rest as `other threads`. */
function byThread(
  before: Map<string, number>,
  after: Map<string, number>,
  serviceTotal: number,
  threads = SERVICE_THREADS,
): Record<string, number> {
  const shares: Record<string, number> = {};
  let named = 0;
  for (const [label, name] of threads) {
    const now = after.get(name);
    if (now === undefined) continue;
    shares[label] = now - (before.get(name) ?? 0);
    named += shares[label];
  }
  shares['other threads'] = serviceTotal - named;
  return shares;
}

/**
 * Runs a load against the service and what it did: the load's report, whether the books
 * balance (`inFlight` as in booksBalance), the peak RSS and the CPU time per charge.
 */
/**
 * The floor (bench/floor/contract-io.ts) as a child process with the service's Node.js flags,
 * on a new store. Its books: one event in its store for each credit the load was told it
 * charged (every charge is of 1 credit).
 */
async function withFloor<T>(
  does: FloorOptions['does'],
  work: (floor: UnderLoad) => Promise<T>,
): Promise<T> {
  const dataDir = mkdtempSync(join(tmpdir(), 'ledger-bench-floor-'));
  const child = spawn(
    process.execPath,
    [
      ...SERVICE_NODE_FLAGS,
      ...nodeFlags,
      join(__dirname, 'floor', 'contract-io.js'),
      JSON.stringify({ natsUrl: NATS_URL, dataDir, does } satisfies FloorOptions),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout!.once('data', () => resolve());
      child.once('exit', (code) =>
        reject(new Error(`the floor exited (${code}) before it was ready`)),
      );
    });
    return await work({
      pid: child.pid!,
      booksBalance: async (charged) => {
        // Answered at once, nothing charged: no books to check.
        if (does === 'nats-only') return true;
        return eventsIn(dataDir) === charged;
      },
    });
  } finally {
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(timer);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** A process under load: which one, and whether its books hold what the load charged. */
interface UnderLoad {
  pid: number;
  booksBalance(charged: number): Promise<boolean>;
}

/** The ledger under load: its books are the organizations' balances (see booksBalance). */
function ledgerUnderLoad(
  service: ServiceProcess,
  organizations: string[],
  inFlight = 0,
): UnderLoad {
  return {
    pid: service.child.pid!,
    booksBalance: (charged) => booksBalance(service, organizations, charged, inFlight),
  };
}

async function measuredLoad(measured: UnderLoad, load: () => Promise<LoadReport>) {
  const { pid } = measured;
  const serviceBefore = cpuSeconds(pid);
  const threadsBefore = threadCpuSeconds(pid);
  const natsBefore = natsPid === undefined ? undefined : cpuSeconds(natsPid);
  const writtenBefore = writtenBytes(pid);
  const threadsWrittenBefore = threadWrittenBytes(pid);
  const natsWrittenBefore = natsPid === undefined ? undefined : writtenBytes(natsPid);
  const machineBefore = machineTicks();
  const report = await load();
  const machineAfter = machineTicks();
  // Once the service is quiet again, so that the read side's projections and publishing of
  // the charges count in their cost; before the books are read, which are not the charges' work.
  await quiet(pid, 30_000);
  const perCharge = (seconds: number) => (seconds * 1000) / Math.max(1, report.charged);
  const serviceSeconds = cpuSeconds(pid) - serviceBefore;
  const threads = byThread(threadsBefore, threadCpuSeconds(pid), serviceSeconds);
  const kbPerCharge = (bytes: number) => bytes / 1024 / Math.max(1, report.charged);
  const serviceWritten = writtenBytes(pid) - writtenBefore;
  const threadsWritten = byThread(
    threadsWrittenBefore,
    threadWrittenBytes(pid),
    serviceWritten,
    WRITING_THREADS,
  );
  const cpu: CpuPerCharge = {
    service: perCharge(serviceSeconds),
    serviceThreads: Object.fromEntries(
      Object.entries(threads).map(([label, seconds]) => [label, perCharge(seconds)]),
    ),
    load: perCharge(report.cpuSeconds),
    nats: natsBefore === undefined ? undefined : perCharge(cpuSeconds(natsPid!) - natsBefore),
    idle:
      (machineAfter.idle - machineBefore.idle) /
      Math.max(1, machineAfter.total - machineBefore.total),
    written: {
      service: kbPerCharge(serviceWritten),
      serviceThreads: Object.fromEntries(
        Object.entries(threadsWritten).map(([label, bytes]) => [label, kbPerCharge(bytes)]),
      ),
      nats:
        natsWrittenBefore === undefined
          ? undefined
          : kbPerCharge(writtenBytes(natsPid!) - natsWrittenBefore),
    },
  };
  const balanced = await measured.booksBalance(report.charged);
  return { report, balanced, rss: peakRssMb(pid), cpu };
}

/**
 * The charges a second all cores could carry if they did nothing else: what the throughput
 * targets are up against on this machine, whatever the service does with its share.
 */
function cpuCeiling(cpu: CpuPerCharge): number {
  return (availableParallelism() * 1000) / (cpu.service + cpu.load + (cpu.nats ?? 0));
}

/** How the `measured` column shows the CPU time per charge (`who`: the measured process). */
function cpuText(cpu: CpuPerCharge, who = 'service'): string {
  const threads = Object.entries(cpu.serviceThreads)
    .map(([label, ms]) => `${label} ${fmt(ms, 3)}`)
    .join(', ');
  const others = `load ${fmt(cpu.load, 3)}${cpu.nats === undefined ? '' : `, NATS ${fmt(cpu.nats, 3)}`}`;
  const { written } = cpu;
  const writers = Object.entries(written.serviceThreads)
    .map(([label, kb]) => `${label} ${fmt(kb, 1)}`)
    .join(', ');
  const natsWritten = written.nats === undefined ? '' : `; NATS ${fmt(written.nats, 1)}`;
  return `${who} CPU ${fmt(cpu.service, 3)} ms a charge (${threads}; ${others}; the cores fit ${fmt(cpuCeiling(cpu))}/s, and were ${fmt(cpu.idle * 100)}% idle); written to files ${fmt(written.service, 1)} KB a charge (${writers}${natsWritten})`;
}

/** The CPU fields of a row. */
function cpuFields(cpu: CpuPerCharge): Partial<Row> {
  return {
    cpuMsPerCharge: cpu.service,
    cpuMsPerChargeByThread: cpu.serviceThreads,
    loadCpuMsPerCharge: cpu.load,
    natsCpuMsPerCharge: cpu.nats,
    cpuCeilingPerSecond: cpuCeiling(cpu),
    idleShare: cpu.idle,
    writtenKbPerCharge: cpu.written.service,
    writtenKbPerChargeByThread: cpu.written.serviceThreads,
    natsWrittenKbPerCharge: cpu.written.nats,
  };
}

const fmt = (value: number | undefined, digits = 0) =>
  value === undefined || Number.isNaN(value) ? '' : value.toFixed(digits);

function printTable(rows: Row[]): void {
  const header = [
    'scenario',
    'throughput/s',
    'p50 ms',
    'p99 ms',
    'peak RSS MB',
    'baseline/s',
    'measured',
    'target',
    'met',
  ];
  const lines = rows.map((row) => [
    row.scenario,
    fmt(row.throughput),
    fmt(row.p50, 2),
    fmt(row.p99, 2),
    fmt(row.peakRssMb),
    fmt(row.baseline),
    row.measured + (row.booksBalanced === false ? ' (BOOKS DO NOT BALANCE)' : ''),
    row.target,
    row.met ? 'yes' : 'NO',
  ]);
  const widths = header.map((title, i) =>
    Math.max(title.length, ...lines.map((line) => line[i].length)),
  );
  const show = (cells: string[]) =>
    `| ${cells.map((cell, i) => cell.padEnd(widths[i])).join(' | ')} |`;
  process.stdout.write(`${show(header)}\n|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|\n`);
  for (const line of lines) process.stdout.write(`${show(line)}\n`);
}

export type Scenario = (timing: Timing, rows: Row[]) => Promise<void>;

/** The row of a scenario whose target is a number of charges a second. */
function throughputRow(
  scenario: string,
  target: Target,
  {
    report,
    balanced,
    rss,
    cpu,
  }: { report: LoadReport; balanced: boolean; rss: number; cpu: CpuPerCharge },
): Row {
  return {
    scenario,
    target: target.text,
    throughput: report.throughput,
    p50: report.p50,
    p99: report.p99,
    peakRssMb: rss,
    measured: `${fmt(report.throughput)} charges/s; ${cpuText(cpu)}`,
    met: target.met(report.throughput) && balanced,
    booksBalanced: balanced,
    ...cpuFields(cpu),
  };
}

/** One organization charged by 64 requesters over NATS, then the baseline on one row. */
async function hotOrganization(env: Record<string, string>, timing: Timing) {
  const orgs = ['hot'];
  const measured = await withService(env, async (service) => {
    await prepareOrganizations(service, orgs);
    return natsScenario(service, orgs, timing);
  });
  const base = await baseline(1, timing);
  const ratio = measured.report.throughput / base.throughput;
  return {
    throughput: measured.report.throughput,
    ratio,
    row: {
      throughput: measured.report.throughput,
      p50: measured.report.p50,
      p99: measured.report.p99,
      peakRssMb: measured.rss,
      baseline: base.throughput,
      measured: `${ratio.toFixed(1)}x baseline; ${cpuText(measured.cpu)}`,
      booksBalanced: measured.balanced,
      ...cpuFields(measured.cpu),
    },
  };
}

/** The floor's rows: no target, what the service's row of the same load is up against. */
function floorRow(
  scenario: string,
  { report, balanced, rss, cpu }: Awaited<ReturnType<typeof measuredLoad>>,
  service: string,
): Row {
  return {
    scenario: `floor: ${scenario}`,
    target: "(none: what the service's row is up against)",
    throughput: report.throughput,
    p50: report.p50,
    p99: report.p99,
    peakRssMb: rss,
    measured: `${service}; ${cpuText(cpu, 'floor')}`,
    met: balanced,
    booksBalanced: balanced,
    ...cpuFields(cpu),
  };
}

/** How far the service's row (charges/s, if it ran) got towards the floor's. */
function reached(rate: number | undefined, floor: LoadReport): string {
  return rate === undefined
    ? 'the service not measured in this run'
    : `the service reached ${fmt((100 * rate) / floor.throughput)}% of it`;
}

/**
 * Whether the floor itself meets its service row's target. The ledger does all of the floor's
 * I/O and its own work besides, with the same store, publisher and threads: a target the
 * floor misses, the ledger could meet only by waiting on round trips less than the floor
 * does (the hard bound is the floor's ceiling, in its CPU text).
 */
function floorAgainst(target: Target, value: number): string {
  return `the floor itself ${target.met(value) ? 'meets' : 'misses'} the row's target (${target.text})`;
}

const CONTRACT_IO = "the contract's I/O alone (bench/floor)";

/** A row's target: as printed, and whether a value meets it (a floor row's too). */
interface Target {
  text: string;
  met(value: number): boolean;
}

const chargesPerSecond = (minimum: number): Target => ({
  text: `>= ${minimum.toLocaleString('en-US')} charges/s`,
  met: (rate) => rate >= minimum,
});
const HOT_TARGET = chargesPerSecond(15_000);
const SPREAD_TARGET = chargesPerSecond(15_000);
const LATENCY_TARGET: Target = { text: 'p99 <= 10 ms', met: (p99) => p99 <= 10 };
const HTTP_TARGET: Target = { text: '>= 5,000/s', met: (rate) => rate >= 5_000 };

const scenarios: Record<string, Scenario> = {
  async hot(timing, rows) {
    const measured = await hotOrganization({}, timing);
    rows.push({
      scenario: 'one hot organization, 64 requesters over NATS, SQLite store',
      target: `${HOT_TARGET.text} and >= 4x baseline`,
      ...measured.row,
      met: HOT_TARGET.met(measured.throughput) && measured.ratio >= 4 && measured.row.booksBalanced,
    });
    hotRate = measured.throughput;
  },

  /**
   * The floor (bench/floor/contract-io.ts) under the hot row's load, right after it: the
   * contract's I/O with none of the ledger's own work, on the machine as it is now. Each floor
   * scenario follows its service row, as the machine's speed drifts within minutes.
   */
  async 'floor-hot'(timing, rows) {
    const measured = await withFloor('contract', (floor) =>
      measuredLoad(floor, () => natsLoad(['hot'], timing)),
    );
    rows.push(
      floorRow(
        `${CONTRACT_IO}, one hot organization, 64 requesters`,
        measured,
        `${reached(hotRate, measured.report)}; ${floorAgainst(HOT_TARGET, measured.report.throughput)}`,
      ),
    );
  },

  async 'hot-postgres'(timing, rows) {
    const database = await createTestDatabase();
    try {
      const measured = await hotOrganization(
        { LEDGER_EVENT_STORE: 'postgres', DATABASE_URL: database.url },
        timing,
      );
      rows.push({
        scenario: 'the same, PostgreSQL event store',
        target: '>= 2x baseline',
        ...measured.row,
        met: measured.ratio >= 2 && measured.row.booksBalanced,
      });
    } finally {
      await database.drop();
    }
  },

  async spread(timing, rows) {
    const orgs = Array.from({ length: 1000 }, (_, i) => `spread-${i}`);
    const measured = await withService({}, async (service) => {
      await prepareOrganizations(service, orgs);
      return natsScenario(service, orgs, timing);
    });
    rows.push(
      throughputRow('1,000 organizations, charges spread evenly, NATS', SPREAD_TARGET, measured),
    );
    spreadRate = measured.report.throughput;
  },

  /** The floor under the spread row's load (see floor-hot). */
  async 'floor-spread'(timing, rows) {
    const orgs = Array.from({ length: 1000 }, (_, i) => `spread-${i}`);
    const measured = await withFloor('contract', (floor) =>
      measuredLoad(floor, () => natsLoad(orgs, timing)),
    );
    rows.push(
      floorRow(
        `${CONTRACT_IO}, 1,000 organizations spread`,
        measured,
        `${reached(spreadRate, measured.report)}; ${floorAgainst(SPREAD_TARGET, measured.report.throughput)}`,
      ),
    );
  },

  async http(timing, rows) {
    const orgs = ['hot-http'];
    const measured = await withService({}, async (service) => {
      await prepareOrganizations(service, orgs);
      const token = await serviceToken();
      const load = () =>
        runLoad('http-charges', {
          url: service.url,
          token,
          organizationId: orgs[0],
          userId: USER,
          connections: 64,
          runPrefix: `http-${Date.now()}`,
          ...timing,
        });
      return measuredLoad(ledgerUnderLoad(service, orgs, 2 * 64), load);
    });
    rows.push(
      throughputRow(
        'HTTP POST /v1/charm-runs, 64 connections (autocannon), one organization',
        HTTP_TARGET,
        measured,
      ),
    );
  },

  async latency(timing, rows) {
    const orgs = ['hot'];
    const rate = Math.max(100, Math.round((hotRate ?? latencyRate * 2) / 2));
    const measured = await withService({}, async (service) => {
      await prepareOrganizations(service, orgs);
      return withStalls(service, () =>
        natsScenario(service, orgs, timing, { ratePerSecond: rate }),
      );
    });
    rows.push({
      scenario: `latency at half the hot rate (${rate}/s, open loop)`,
      target: LATENCY_TARGET.text,
      throughput: measured.report.throughput,
      p50: measured.report.p50,
      p99: measured.report.p99,
      peakRssMb: measured.rss,
      measured: `p99 ${fmt(measured.report.p99, 2)} ms (service: ${measured.stalls}; ${cpuText(measured.cpu)})`,
      met: LATENCY_TARGET.met(measured.report.p99) && measured.balanced,
      booksBalanced: measured.balanced,
      ...cpuFields(measured.cpu),
    });
    latencyMeasured = { rate, p99: measured.report.p99 };
  },

  /**
   * The floor at the latency row's rate (see floor-hot), and NATS alone at that rate: each
   * request answered at once, the tail that the load, NATS and the machine make by themselves.
   */
  async 'floor-latency'(timing, rows) {
    const rate = latencyMeasured?.rate ?? latencyRate;
    const service = latencyMeasured
      ? `the service's p99 ${fmt(latencyMeasured.p99, 2)} ms`
      : 'the service not measured in this run';
    for (const does of ['contract', 'nats-only'] as const) {
      const measured = await withFloor(does, (floor) =>
        measuredLoad(floor, () => natsLoad(['hot'], timing, { ratePerSecond: rate })),
      );
      const what = does === 'contract' ? CONTRACT_IO : 'NATS alone, each request answered at once';
      rows.push(
        floorRow(
          `${what}, at the latency row's rate (${rate}/s, open loop)`,
          measured,
          `p99 ${fmt(measured.report.p99, 2)} ms, ${service}; ${floorAgainst(LATENCY_TARGET, measured.report.p99)}`,
        ),
      );
    }
  },

  /** 1,000,000 past runs: rebuild speed, cold load, charge latency vs a new one, usage report. */
  async history(_timing, rows) {
    const runs = 1_000_000;
    const dataset = await historyDataset(runs);
    const dataDir = copyOfDataset(dataset);
    const events = eventsIn(dataDir);
    try {
      // The service builds the read models first (no NATS: nothing to publish or answer yet)...
      const catchUpStarted = performance.now();
      await buildReadModels(dataDir, 'history');
      const catchUpSeconds = (performance.now() - catchUpStarted) / 1000;
      rows.push({
        scenario: 'the service building the read models of 1,000,000 events at start',
        target: '(no target; for comparison)',
        throughput: events / catchUpSeconds,
        measured: `${fmt(events / catchUpSeconds)} events/s (${fmt(events)} events, ${catchUpSeconds.toFixed(1)} s)`,
        met: true,
      });

      // ...then the operator rebuilds them all, as after a projection change.
      const started = performance.now();
      const code = await ledgerCli(dataDir, ['rebuild', 'all']);
      const seconds = (performance.now() - started) / 1000;
      if (code !== 0) throw new Error(`rebuild exited with ${code}`);
      const eventsPerSecond = events / seconds;
      rows.push({
        scenario: 'rebuild all read models from 1,000,000 events (operator CLI)',
        target: '>= 30,000 events/s',
        throughput: eventsPerSecond,
        measured: `${fmt(eventsPerSecond)} events/s (${fmt(events)} events, ${seconds.toFixed(1)} s)`,
        met: eventsPerSecond >= 30_000,
      });
      // Each cold load after the first starts from a copy of the store and read models as
      // they are now: the first one's charges leave the history no longer one event short of
      // its next snapshot.
      const pristine = mkdtempSync(join(tmpdir(), 'ledger-bench-'));
      cpSync(dataDir, pristine, { recursive: true });
      try {
        const { first, latency, reportTimes } = await withHistoryService(
          dataDir,
          async (service, nc) => {
            const cold = await coldLoad(service, nc);
            const old: number[] = [];
            const fresh: number[] = [];
            for (let i = 0; i < 400; i += 1) {
              old.push(await timedCharge(nc, 'history', `seq-old-${Date.now()}-${i}`));
              fresh.push(await timedCharge(nc, 'fresh', `seq-new-${Date.now()}-${i}`));
            }
            return {
              first: cold,
              latency: {
                old: median(old.slice(100)),
                fresh: median(fresh.slice(100)),
                rss: peakRssMb(service.child.pid!),
              },
              reportTimes: await usageReportTimes(service, runs),
            };
          },
        );
        const colds = [first];
        while (colds.length < COLD_LOADS) {
          const copy = mkdtempSync(join(tmpdir(), 'ledger-bench-'));
          cpSync(pristine, copy, { recursive: true });
          try {
            colds.push(await withHistoryService(copy, coldLoad));
          } finally {
            rmSync(copy, { recursive: true, force: true });
          }
        }
        const ratio = latency.old / latency.fresh;
        const coldOld = median(colds.map((cold) => cold.coldOld));
        const each = colds.map((cold) => cold.coldOld.toFixed(1)).join(', ');
        rows.push({
          scenario: 'charge: organization with 1,000,000 past events vs a new one',
          target: 'latency within 1.25x; cold load <= 50 ms',
          p50: latency.old,
          peakRssMb: latency.rss,
          measured: `${ratio.toFixed(2)}x (p50 ${latency.old.toFixed(2)} vs ${latency.fresh.toFixed(2)} ms); cold load ${coldOld.toFixed(1)} ms, the median of ${colds.length} starts (${each} ms), of which loading it ${median(colds.map((cold) => cold.loadMs)).toFixed(1)} ms (medians: the first charge after start, new org: ${median(colds.map((cold) => cold.coldNew)).toFixed(1)} ms; the first load from a snapshot after start, the twin of ${fmt(TWIN_RUNS)} runs: ${median(colds.map((cold) => cold.firstLoad)).toFixed(1)} ms)`,
          met: ratio <= 1.25 && coldOld <= 50,
        });
        rows.push({
          scenario: 'usage report, one organization, a year by day over 1,000,000 runs',
          target: '<= 50 ms',
          p50: median(reportTimes),
          measured: `${median(reportTimes).toFixed(1)} ms median, ${Math.max(...reportTimes).toFixed(1)} ms worst`,
          met: median(reportTimes) <= 50,
        });
      } finally {
        rmSync(pristine, { recursive: true, force: true });
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  },

  /** 100,000 organizations charged once each: memory stays bounded by the cache. */
  async many(timing, rows) {
    const count = 100_000;
    const dataset = await manyOrganizationsDataset(count);
    const dataDir = copyOfDataset(dataset);
    try {
      await buildReadModels(dataDir, 'many-0');
      const service = await startMeasuredService({
        LEDGER_DATA_DIR: dataDir,
        LEDGER_NATS_REQUESTS: 'on',
        NATS_URL,
      });
      try {
        // The ids are generated in the load process: 100,000 of them do not fit in argv.
        const report = await runLoad('nats-charges', {
          natsUrl: NATS_URL,
          organizationPrefix: 'many-',
          organizationCount: count,
          userId: USER,
          concurrency: 64,
          runPrefix: `many-${Date.now()}`,
          warmupMs: 0,
          // Every organization once, within a bound.
          stopAfter: count,
          durationMs: 150_000,
        });
        const rss = peakRssMb(service.child.pid!);
        const memory = await memoryOf(service);
        const touched = Math.min(count, report.completed);
        rows.push({
          scenario: `${count.toLocaleString('en')} organizations touched (${touched.toLocaleString('en')} charged)`,
          target: 'RSS <= 400 MB',
          throughput: report.throughput,
          p50: report.p50,
          p99: report.p99,
          peakRssMb: rss,
          measured: `peak RSS ${rss.toFixed(0)} MB (at the end: ${memory})`,
          met: rss <= 400 && touched === count,
        });
      } finally {
        await service.stop();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  },
};

/**
 * Lets the service build the read models of a generated dataset up to its head (no NATS:
 * nothing to publish or answer yet), then stops it and starts the JetStream publisher at the
 * head: the generated history is not news.
 */
async function buildReadModels(dataDir: string, probeOrganization: string): Promise<void> {
  const events = new Database(join(dataDir, 'events.sqlite'), { readonly: true });
  const head = String(events.prepare('SELECT max(position) FROM events').pluck().get());
  events.close();
  const started = performance.now();
  const building = await startService({
    LEDGER_DATA_DIR: dataDir,
    NATS_URL: 'nats://127.0.0.1:1',
    LOG_LEVEL: 'error',
  });
  try {
    const token = await serviceToken();
    for (;;) {
      const response = await fetch(
        `${building.url}/v1/organizations/${probeOrganization}/balance?minPosition=${head}`,
        { headers: { authorization: `Bearer ${token}` } },
      );
      if (response.ok) break;
      if (performance.now() - started > 300_000) throw new Error('no catch-up in 5 min');
    }
  } finally {
    await building.stop();
  }
  skipPublishing(dataDir);
}

/** One value of a service's own /metrics (Prometheus text), by its exact name and labels. */
async function metricsOf(service: ServiceProcess): Promise<(name: string) => number> {
  const text = await (await fetch(`${service.url}/metrics`)).text();
  return (name) => {
    const line = text.split('\n').find((candidate) => candidate.startsWith(`${name} `));
    return line ? Number(line.slice(name.length + 1)) : Number.NaN;
  };
}

/** Seconds the service has spent loading organizations from their snapshots, since start. */
async function snapshotLoadSeconds(service: ServiceProcess): Promise<number> {
  const metric = await metricsOf(service);
  return metric('ledger_aggregate_load_seconds_sum{aggregate="organization",from="snapshot"}') || 0;
}

/** Where a service's memory is: V8 heap used and total, and external. */
async function memoryOf(service: ServiceProcess): Promise<string> {
  const metric = await metricsOf(service);
  const megabytes = (name: string) => `${(metric(name) / 2 ** 20).toFixed(0)} MB`;
  return `heap ${megabytes('nodejs_heap_size_used_bytes')} of ${megabytes('nodejs_heap_size_total_bytes')}, external ${megabytes('nodejs_external_memory_bytes')}`;
}

/**
 * Runs `load` and adds how long the service's event loop was held up meanwhile, and by
 * garbage collection: the metrics read before it reset the event-loop delay histogram
 * (prom-client resets it on every read), the counters are differences, so that the service's
 * start and the organizations' setup are not counted.
 */
async function withStalls<Measured>(
  service: ServiceProcess,
  load: () => Promise<Measured>,
): Promise<Measured & { stalls: string }> {
  const before = await metricsOf(service);
  const measured = await load();
  const after = await metricsOf(service);
  // A counter that was never set has no line: zero.
  const grew = (name: string) => (after(name) || 0) - (before(name) || 0);
  const ms = (seconds: number) => `${(seconds * 1000).toFixed(1)} ms`;
  const gc = (kind: string) =>
    `${grew(`nodejs_gc_duration_seconds_count{kind="${kind}"}`)} ${kind} GCs, ${ms(grew(`nodejs_gc_duration_seconds_sum{kind="${kind}"}`))}`;
  // The ledger's own share of a charge's time: from its handler to its reply, warm-up included.
  const charges = (le: string) =>
    grew(
      `ledger_nats_request_seconds_bucket{le="${le}",subject="ledger.charm-runs.charge",outcome="ok"}`,
    );
  const within = (100 * charges('0.01')) / charges('+Inf');
  // The event store's share: a batch waits for its commit (and fsync) from send to durable.
  const batches = (le: string) =>
    grew(`ledger_append_seconds_bucket{le="${le}",aggregate="organization"}`);
  const sent = batches('+Inf');
  const durable = (100 * batches('0.005')) / sent;
  const stalls = `event-loop delay p99 ${ms(after('nodejs_eventloop_lag_p99_seconds'))}, max ${ms(after('nodejs_eventloop_lag_max_seconds'))}; ${gc('major')}; ${gc('incremental')}; ${gc('minor')}; ${within.toFixed(2)}% of charges answered within 10 ms of reaching the handler; ${durable.toFixed(2)}% of ${sent} batches durable within 5 ms of being sent`;
  return { ...measured, stalls };
}

/**
 * Resolves once the process has used under 10% of a core for a second (boot work done).
 * Under `--profile` or `--allocations` the sampling alone can take that much: 30% then.
 */
async function quiet(pid: number, timeoutMs = 120_000): Promise<void> {
  const idle = profiling || samplingAllocations ? 0.3 : 0.1;
  const deadline = Date.now() + timeoutMs;
  let before = cpuSeconds(pid);
  while (Date.now() < deadline) {
    await delay(1000);
    const now = cpuSeconds(pid);
    if (now - before < idle) return;
    before = now;
  }
}

/** One request over NATS, timed. */
async function timedCharge(nc: NatsConnection, organizationId: string, runId: string) {
  const started = performance.now();
  const reply = (
    await nc.request(
      'ledger.charm-runs.charge',
      JSON.stringify({ runId, charmId: 'charm-0', userId: USER, amount: 1, organizationId }),
      { timeout: 30_000 },
    )
  ).json<{ ok: boolean }>();
  if (!reply.ok) throw new Error(`charge ${runId} refused: ${JSON.stringify(reply)}`);
  return performance.now() - started;
}

/** Cold loads of the 1M-event organization the history row takes (one per start). */
const COLD_LOADS = 5;

/** The service on the history dataset in `dataDir`, with a NATS connection, for `work`. */
async function withHistoryService<T>(
  dataDir: string,
  work: (service: ServiceProcess, nc: NatsConnection) => Promise<T>,
): Promise<T> {
  const service = await startMeasuredService({
    LEDGER_DATA_DIR: dataDir,
    LEDGER_NATS_REQUESTS: 'on',
    NATS_URL,
  });
  const nc = await connect({ servers: NATS_URL });
  try {
    return await work(service, nc);
  } finally {
    await nc.drain();
    await service.stop();
  }
}

/**
 * The first charge of the 1M-event organization after a start, once the process has warmed
 * up: on the new organization (its first charge compiles the charge path), then on the twin
 * (loading it from its snapshot compiles the loading path, which a service that has run a
 * while has long compiled), so that it times loading the old one, not compiling.
 */
async function coldLoad(service: ServiceProcess, nc: NatsConnection) {
  await quiet(service.child.pid!);
  const coldNew = await timedCharge(nc, 'fresh', `cold-${Date.now()}`);
  for (let i = 0; i < 200; i += 1) await timedCharge(nc, 'fresh', `warm-${Date.now()}-${i}`);
  const firstLoad = await timedCharge(nc, 'twin', `cold-${Date.now()}`);
  const loadedBefore = await snapshotLoadSeconds(service);
  const coldOld = await timedCharge(nc, 'history', `cold-${Date.now()}`);
  const loadMs = ((await snapshotLoadSeconds(service)) - loadedBefore) * 1000;
  return { coldNew, firstLoad, coldOld, loadMs };
}

/** The usage report of the year by day, checked, 20 times after 3 unmeasured: each in ms. */
async function usageReportTimes(service: ServiceProcess, runs: number): Promise<number[]> {
  const token = await tokenFor({ sub: 'finance', scope: 'ledger:reports' });
  const report = async () => {
    const begun = performance.now();
    const response = await fetch(
      `${service.url}/v1/organizations/history/usage?from=2025-01-01&to=2026-01-01&groupBy=day`,
      { headers: { authorization: `Bearer ${token}` } },
    );
    const body = (await response.json()) as { rows?: unknown[]; totals?: { runs: number } };
    if (body.rows?.length !== 365 || body.totals?.runs !== runs) {
      throw new Error(`usage report: ${response.status} ${JSON.stringify(body).slice(0, 300)}`);
    }
    return performance.now() - begun;
  };
  for (let i = 0; i < 3; i += 1) await report();
  const times: number[] = [];
  for (let i = 0; i < 20; i += 1) times.push(await report());
  return times;
}

const median = (values: number[]) =>
  [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

/** A ledger data folder holding a copy of a generated dataset's events. */
/** The events of the store in `dataDir`. */
function eventsIn(dataDir: string): number {
  const store = new Database(join(dataDir, 'events.sqlite'), { readonly: true });
  try {
    return store.prepare('SELECT count(*) FROM events').pluck().get() as number;
  } finally {
    store.close();
  }
}

function copyOfDataset(dataset: string): string {
  const dataDir = mkdtempSync(join(tmpdir(), 'ledger-bench-'));
  copyFileSync(join(dataset, 'events.sqlite'), join(dataDir, 'events.sqlite'));
  return dataDir;
}

/**
 * The generated history is not news: start the JetStream publisher at its end rather than
 * publishing a million old events into the shared NATS while we measure.
 */
function skipPublishing(dataDir: string): void {
  const events = new Database(join(dataDir, 'events.sqlite'), { readonly: true });
  const head = String(events.prepare('SELECT max(position) FROM events').pluck().get());
  events.close();
  const readModels = new Database(join(dataDir, 'read-models.sqlite'));
  readModels
    .prepare(
      `INSERT INTO projection_checkpoints (projection, position) VALUES ('jetstream-publisher', ?)
       ON CONFLICT (projection) DO UPDATE SET position = excluded.position`,
    )
    .run(head);
  readModels.close();
}

function ledgerCli(dataDir: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [join(__dirname, '..', 'src', 'cli', 'ledger.js'), ...args],
      {
        env: { PATH: process.env.PATH, LEDGER_DATA_DIR: dataDir, LEDGER_JWT_SECRET: TEST_SECRET },
        // The progress bar goes to our stderr.
        stdio: ['ignore', 'ignore', 'inherit'],
      },
    );
    const timer = setTimeout(() => child.kill('SIGKILL'), 300_000);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code ?? 1);
    });
  });
}

/** `--profile`: run the service under `node --cpu-prof` and print each thread's top functions. */
let profiling = false;
/** `--allocations`: sample what the service's request thread allocates, and print where. */
let samplingAllocations = false;

/** The hot scenario's rate, for the latency scenario that runs at half of it. */
let hotRate: number | undefined;
/** The spread scenario's charges/s and the latency row's rate and p99, for the floor's rows. */
let spreadRate: number | undefined;
let latencyMeasured: { rate: number; p99: number } | undefined;
/**
 * `--node-options`: flags for the measured services' Node.js, on its command line: most V8
 * flags (`--trace-gc`, `--single-threaded-gc`) are refused in NODE_OPTIONS, and the service
 * then did not start.
 */
let nodeFlags: string[] = [];

/** A measured service: its data and NATS in `env`, the bench's log level and Node.js flags. */
function startMeasuredService(env: Record<string, string>, nodeArgs: string[] = []) {
  return startService({ LOG_LEVEL: 'warn', ...env }, { nodeArgs: [...nodeFlags, ...nodeArgs] });
}

/** The latency scenario's rate when the hot scenario did not run first (`--latency-rate`). */
let latencyRate = 1500;

async function main(): Promise<void> {
  const program = new Command()
    .option('--only <names>', `comma-separated scenarios: ${Object.keys(scenarios).join(', ')}`)
    .option('--seconds <n>', 'measured seconds per load', '10')
    .option('--warmup <n>', 'warm-up seconds per load', '3')
    .option(
      '--profile',
      "profile the service (node --cpu-prof) and print each thread's top functions",
    )
    .option(
      '--allocations',
      "sample the service request thread's allocations and print the top functions and packages",
    )
    .option('--latency-rate <n>', 'charges/s of the latency scenario without the hot one', '1500')
    .option('--node-options <flags>', "the measured services' Node.js flags (V8 flags, say)")
    .parse();
  const options = program.opts<{
    only?: string;
    seconds: string;
    warmup: string;
    profile?: boolean;
    allocations?: boolean;
    latencyRate: string;
    nodeOptions?: string;
  }>();
  latencyRate = Number(options.latencyRate);
  nodeFlags = (options.nodeOptions ?? '').split(/\s+/).filter((flag) => flag !== '');
  profiling = options.profile === true;
  samplingAllocations = options.allocations === true;
  const ownNats = NATS_URL === '';
  const names = options.only ? options.only.split(',') : Object.keys(scenarios);
  const timing = {
    warmupMs: Number(options.warmup) * 1000,
    durationMs: Number(options.seconds) * 1000,
  };
  const rows: Row[] = [];
  const started = Date.now();
  for (const name of names) {
    const scenario = scenarios[name];
    if (!scenario) throw new Error(`unknown scenario ${name}`);
    process.stderr.write(`bench: ${name}...\n`);
    // Each row on a server of its own: a row leaves its JetStream messages and their
    // duplicate window behind (hot: some 300,000), and the next row paid for them. Latency
    // after hot, 2 rounds each: p99 45.8 and 36.8 ms on the server hot had used, 13.2 and
    // 18.4 ms on a new one.
    const stopNats = ownNats ? await startNatsServer() : async () => undefined;
    try {
      await scenario(timing, rows);
    } catch (error) {
      rows.push({ scenario: name, target: '', measured: `failed: ${String(error)}`, met: false });
    } finally {
      await stopNats();
    }
  }
  printTable(rows);
  const results = join(__dirname, '..', '..', 'bench', 'results');
  mkdirSync(results, { recursive: true });
  writeFileSync(
    join(results, 'latest.json'),
    `${JSON.stringify({ at: new Date().toISOString(), seconds: (Date.now() - started) / 1000, rows }, null, 2)}\n`,
  );
  process.stdout.write(
    `bench: ${((Date.now() - started) / 1000).toFixed(0)} s in all; bench/results/latest.json\n`,
  );
}

void main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  process.exit(1);
});
