// Prints the figures every fault scenario recorded (test/artifacts/faults.json) as one table
// at the end of `npm run test:faults`. It starts the run with an empty file, so a scenario
// that failed before recording its row is missing from the table rather than stale.
const { existsSync, readFileSync, rmSync } = require('node:fs');
const { join } = require('node:path');

const FIGURES_FILE = join(__dirname, '..', '..', 'artifacts', 'faults.json');
const COLUMNS = ['scenario', 'sent', 'acknowledged', 'rejected', 'lost', 'doubled', 'recovery'];

class FaultsReporter {
  onRunStart() {
    rmSync(FIGURES_FILE, { force: true });
  }

  onRunComplete() {
    const rows = existsSync(FIGURES_FILE) ? JSON.parse(readFileSync(FIGURES_FILE, 'utf8')) : [];
    const cells = rows.map((row) => [
      row.scenario,
      String(row.sent),
      String(row.acknowledged),
      String(row.rejected),
      String(row.lost),
      String(row.doubled),
      row.recoveryMs === null
        ? '-'
        : `${(row.recoveryMs / 1000).toFixed(1)} s${row.recovery ? ` (${row.recovery})` : ''}`,
    ]);
    const widths = COLUMNS.map((name, i) =>
      Math.max(name.length, ...cells.map((c) => c[i].length)),
    );
    const line = (values) => `| ${values.map((v, i) => v.padEnd(widths[i])).join(' | ')} |`;
    const out = [
      '',
      'Fault suite figures (lost and doubled must be 0):',
      line(COLUMNS),
      `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
      ...cells.map(line),
      '',
    ];
    process.stdout.write(`${out.join('\n')}\n`);
  }
}

module.exports = FaultsReporter;
