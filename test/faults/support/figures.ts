import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** Where each scenario appends its row; the faults reporter prints them as one table. */
export const FIGURES_FILE = join(__dirname, '..', '..', 'artifacts', 'faults.json');

/** One scenario's figures, as the issue asks for them. */
export interface Figures {
  scenario: string;
  /** Operations sent to the service. */
  sent: number;
  /** Operations the service acknowledged (a success reply, a replay included). */
  acknowledged: number;
  /** Operations the service refused with an error reply (402, 400, 503...). */
  rejected: number;
  /** Acknowledged operations missing from the stream afterwards. Must be 0. */
  lost: number;
  /** Operations found more than once (a runId charged twice, an event twice in JetStream). */
  doubled: number;
  /** Worst time from the end of the fault to service again, in ms (null: no recovery step). */
  recoveryMs: number | null;
  /** What "recovery" measured, in a few words. */
  recovery?: string;
}

export function recordFigures(figures: Figures): void {
  mkdirSync(dirname(FIGURES_FILE), { recursive: true });
  const rows: Figures[] = existsSync(FIGURES_FILE)
    ? (JSON.parse(readFileSync(FIGURES_FILE, 'utf8')) as Figures[])
    : [];
  rows.push(figures);
  writeFileSync(FIGURES_FILE, `${JSON.stringify(rows, null, 2)}\n`);
  process.stdout.write(`faults: ${JSON.stringify(figures)}\n`);
}
