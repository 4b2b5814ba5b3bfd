import { Command, InvalidArgumentError, Option } from 'commander';
import { SingleBar } from 'cli-progress';
import type { DataSource } from 'typeorm';
import { PROJECTIONS } from '../../projections';
import { verifyOrganization } from '../audit/verify';
import { ConfigError, loadConfig } from '../config/config';
import { openEventStore } from '../event-store/open-event-store';
import type { EventStore } from '../event-store/event-store';
import { isIdentifier, organizationStreamId } from '../ledger/identifiers';
import { balanceAt } from '../ledger/organization/balance';
import type { OrganizationEvent } from '../ledger/organization/events';
import { evolve } from '../ledger/organization/evolve';
import { initialOrganizationState } from '../ledger/organization/state';
import { nextDay, reportDays, toCsv, usageReport } from '../read/queries';
import { readModelDataSource } from '../read/read-model-database';
import { rebuildProjections, type RebuildProgress } from '../read/rebuild';
import { fromRecorded } from '../write/aggregate-writer';

/**
 * Operator commands on the stores the settings name (the same environment as the service):
 *   npm run -s ledger -- rebuild [projection|all]
 *   npm run -s ledger -- replay --org acme [--at 2026-05-01T00:00:00Z]
 *   npm run -s ledger -- verify --org acme | --all
 *   npm run -s ledger -- export-usage --org acme --from 2026-05-01 --to 2026-05-31 --format csv
 */
const organizationId = (value: string) => {
  if (!isIdentifier(value))
    throw new InvalidArgumentError('must match ^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$');
  return value;
};
const instant = (value: string) => {
  if (Number.isNaN(Date.parse(value))) throw new InvalidArgumentError('must be an ISO date-time');
  return value;
};

interface Stores {
  store: EventStore;
  database: DataSource;
}

async function withStores<T>(work: (stores: Stores) => Promise<T>): Promise<T> {
  const config = loadConfig();
  const store = await openEventStore(config);
  const database = await readModelDataSource(config).initialize();
  try {
    return await work({ store, database });
  } finally {
    await database.destroy();
    await store.close();
  }
}

const write = (text: string) => process.stdout.write(text);

async function rebuild(name: string) {
  const projections = name === 'all' ? PROJECTIONS : PROJECTIONS.filter((p) => p.name === name);
  if (projections.length === 0) {
    throw new InvalidArgumentError(
      `unknown projection ${name}; one of: all, ${PROJECTIONS.map((p) => p.name).join(', ')}`,
    );
  }
  await withStores(async ({ store, database }) => {
    const bar = new SingleBar({
      format:
        '{projection} |{bar}| {percentage}% | {value}/{total} positions | {speed} events/s | ETA {eta}s',
      stream: process.stderr,
    });
    const started = new Map<string, number>();
    const summaries = new Map<string, { events: number; seconds: number }>();
    const show = ({ projection, position, target, events }: RebuildProgress) => {
      if (!started.has(projection)) {
        if (started.size > 0) bar.stop();
        started.set(projection, Date.now());
        bar.start(Number(target), 0, { projection, speed: 0 });
      }
      const seconds = Math.max(0.001, (Date.now() - started.get(projection)!) / 1000);
      summaries.set(projection, { events, seconds });
      bar.setTotal(Number(target));
      bar.update(Number(position), { projection, speed: Math.round(events / seconds) });
    };
    await rebuildProjections(store, database, projections, show);
    bar.stop();
    // The bar draws only on a terminal; logs get one line per projection.
    for (const [projection, { events, seconds }] of summaries) {
      const speed = Math.round(events / seconds);
      process.stderr.write(
        `${projection}: ${events} events in ${seconds.toFixed(2)} s (${speed} events/s)\n`,
      );
    }
    write(`rebuilt: ${projections.map((p) => p.name).join(', ')}\n`);
  });
}

async function replay(organization: string, at?: string) {
  await withStores(async ({ store }) => {
    const until = at === undefined ? Infinity : Date.parse(at);
    let state = initialOrganizationState();
    for (let from = 0n; ; from += 1000n) {
      const page = await store.readStream(organizationStreamId(organization), {
        fromRevision: from,
        maxCount: 1000,
      });
      for (const recorded of page) {
        const event = fromRecorded<OrganizationEvent>(recorded);
        const time = Date.parse(event.occurredAt);
        if (time > until) return;
        state = evolve(state, event);
        const { available, reserved } = balanceAt(state, time);
        write(
          `${recorded.revision} ${event.occurredAt} ${event.type} ${JSON.stringify(event.data)} ` +
            `by ${recorded.metadata.actor.kind}:${recorded.metadata.actor.id} -> available ${available}, reserved ${reserved}\n`,
        );
      }
      if (page.length < 1000) return;
    }
  });
}

async function verify(options: { org?: string; all?: boolean }) {
  if (!options.org && !options.all) throw new InvalidArgumentError('give --org X or --all');
  const consistent = await withStores(async ({ store, database }) => {
    const organizations = options.org
      ? [options.org]
      : (await database.query(`SELECT "organization_id" FROM "organizations" ORDER BY 1`)).map(
          (row: { organization_id: string }) => row.organization_id,
        );
    let allConsistent = true;
    for (const organization of organizations) {
      const report = await verifyOrganization(store, database, organization, async () => undefined);
      allConsistent &&= report.consistent;
      write(`${JSON.stringify(report)}\n`);
    }
    return allConsistent;
  });
  if (!consistent) process.exitCode = 2;
}

async function exportUsage(options: {
  org: string;
  from?: string;
  to?: string;
  format: string;
  groupBy: 'day' | 'charm' | 'user';
}) {
  await withStores(async ({ database }) => {
    const { from, to } = reportDays(options.from, options.to);
    const report = await usageReport(database, options.org, from, nextDay(to), options.groupBy);
    write(
      options.format === 'csv'
        ? toCsv(report.rows)
        : `${JSON.stringify({ ...report, to }, null, 2)}\n`,
    );
  });
}

const program = new Command('ledger').description('Operator commands of the credit ledger');
program
  .command('rebuild')
  .description('rebuild one or all projections from position 0 (the service keeps answering)')
  .argument('[projection]', `all, ${PROJECTIONS.map((p) => p.name).join(', ')}`, 'all')
  .action(rebuild);
program
  .command('replay')
  .description("print an organization's history and its balance after each event")
  .requiredOption('--org <organizationId>', 'the organization', organizationId)
  .option('--at <time>', 'stop at this time (ISO)', instant)
  .action((options: { org: string; at?: string }) => replay(options.org, options.at));
program
  .command('verify')
  .description('replay streams and compare them with the read models; exit 2 if they differ')
  .option('--org <organizationId>', 'one organization', organizationId)
  .option('--all', 'every organization')
  .action(verify);
program
  .command('export-usage')
  .description('usage of one organization, as the API reports it')
  .requiredOption('--org <organizationId>', 'the organization', organizationId)
  .option('--from <day>', 'first day, YYYY-MM-DD')
  .option('--to <day>', 'last day, YYYY-MM-DD')
  .addOption(
    new Option('--group-by <key>', 'rows by').choices(['day', 'charm', 'user']).default('day'),
  )
  .addOption(new Option('--format <format>', 'output').choices(['csv', 'json']).default('csv'))
  .action(exportUsage);

program.parseAsync(process.argv).catch((error: unknown) => {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`${error instanceof ConfigError ? message : `ledger: ${message}`}\n`);
  process.exitCode = 1;
});
