import {
  explain,
  LedgerApi,
  LedgerProblem,
  type GrantBalance,
  type GroupBy,
  type LedgerEvent,
  type UsageReport,
} from './api';
import { availableSeries } from './available-series';
import { drawBalanceChart, drawUsageChart } from './charts';
import { formatCredits, formatExpiry, formatTime, thisMonth } from './format';
import { readToken, UnreadableToken, type TokenInfo } from './token';

/** The token lives in this tab only: session storage, never local storage or a cookie. */
const TOKEN_KEY = 'charmiq.console.token';
const VIEWS = ['balance', 'usage', 'history'] as const;
type View = (typeof VIEWS)[number];

const byId = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

const ui = {
  message: byId('message'),
  main: byId('main'),
  signedIn: byId('signed-in'),
  signedInAs: byId('signed-in-as'),
  signOut: byId<HTMLButtonElement>('sign-out'),
  signInForm: byId<HTMLFormElement>('sign-in-form'),
  token: byId<HTMLInputElement>('token'),
  organizationBar: byId('organization-bar'),
  currentOrganization: byId('current-organization'),
  organizationForm: byId<HTMLFormElement>('organization-form'),
  organizationSelectField: byId('organization-select-field'),
  organizationSelect: byId<HTMLSelectElement>('organization-select'),
  organizationInputField: byId('organization-input-field'),
  organizationInput: byId<HTMLInputElement>('organization-input'),
  views: byId('views'),
  balanceAvailable: byId('balance-available'),
  balanceReserved: byId('balance-reserved'),
  balanceChart: byId<HTMLCanvasElement>('balance-chart'),
  balanceChartNote: byId('balance-chart-note'),
  balancePoints: byId<HTMLTableElement>('balance-points'),
  grants: byId<HTMLTableElement>('grants'),
  usageForm: byId<HTMLFormElement>('usage-form'),
  usageFrom: byId<HTMLInputElement>('usage-from'),
  usageTo: byId<HTMLInputElement>('usage-to'),
  usageGroup: byId<HTMLSelectElement>('usage-group'),
  usageCsv: byId<HTMLButtonElement>('usage-csv'),
  usageChart: byId<HTMLCanvasElement>('usage-chart'),
  usageTable: byId<HTMLTableElement>('usage-table'),
  usageKeyHeader: byId('usage-key-header'),
  historyType: byId<HTMLSelectElement>('history-type'),
  verify: byId<HTMLButtonElement>('verify'),
  verifyResult: byId('verify-result'),
  stateAt: byId('state-at'),
  stateAtTitle: byId('state-at-title'),
  stateAvailable: byId('state-available'),
  stateReserved: byId('state-reserved'),
  stateMembers: byId('state-members'),
  stateThreshold: byId('state-threshold'),
  stateGrants: byId<HTMLTableElement>('state-grants'),
  timeline: byId<HTMLTableElement>('timeline'),
  timelineCount: byId('timeline-count'),
};

interface Session {
  token: string;
  info: TokenInfo;
  api: LedgerApi;
}

let session: Session | undefined;
/** Names of the organizations a user token belongs to, for the header. */
const organizationNames = new Map<string, string>();
let historyEvents: LedgerEvent[] = [];
/** Bumped on every navigation, so a slow answer for a view left behind is dropped. */
let generation = 0;

// ---- messages ----------------------------------------------------------------------------

function showMessage(text: string, tone: 'error' | 'info' = 'error') {
  ui.message.textContent = text;
  ui.message.className = `message ${tone}`;
}

function clearMessage() {
  ui.message.textContent = '';
  ui.message.className = 'message';
}

/** Shows a failure; a refused token ends the session, since nothing else can work with it. */
function fail(error: unknown, organizationId?: string) {
  showMessage(explain(error, organizationId));
  if (error instanceof LedgerProblem && error.status === 401) signOut(false);
}

// ---- routing: #/{organizationId}/{view} ----------------------------------------------------

function parseRoute(): { organizationId?: string; view: View } {
  const [, organizationId, view] = /^#\/([^/]+)(?:\/(\w+))?$/.exec(location.hash) ?? [];
  return {
    organizationId: organizationId ? decodeURIComponent(organizationId) : undefined,
    view: VIEWS.includes(view as View) ? (view as View) : 'balance',
  };
}

const routeTo = (organizationId: string, view: View) =>
  `#/${encodeURIComponent(organizationId)}/${view}`;

function showOnly(sectionId: string) {
  for (const section of document.querySelectorAll<HTMLElement>('main > .view')) {
    section.hidden = section.id !== sectionId;
  }
}

/** A view that could not load shows a line saying so, not empty charts and tables. */
function showBody(view: View, loaded: boolean) {
  byId(`${view}-body`).hidden = !loaded;
  byId(`${view}-unavailable`).hidden = loaded;
}

function focusHeading(sectionId: string) {
  document.querySelector<HTMLElement>(`#${sectionId} h1`)?.focus();
}

async function render(moveFocus: boolean) {
  const current = ++generation;
  if (!session) {
    ui.organizationBar.hidden = true;
    ui.views.hidden = true;
    ui.signedIn.hidden = true;
    showOnly('sign-in');
    return;
  }
  const { organizationId, view } = parseRoute();
  if (!organizationId) {
    ui.views.hidden = true;
    ui.currentOrganization.textContent = 'none chosen';
    showOnly('choose');
    return;
  }
  showCurrentOrganization(organizationId);
  ui.views.hidden = false;
  for (const link of ui.views.querySelectorAll<HTMLAnchorElement>('a[data-view]')) {
    const linkView = link.dataset.view as View;
    link.href = routeTo(organizationId, linkView);
    if (linkView === view) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  showOnly(view);
  if (moveFocus) focusHeading(view);
  const section = byId(view);
  section.setAttribute('aria-busy', 'true');
  try {
    if (view === 'balance') await loadBalance(organizationId, current);
    else if (view === 'usage') await loadUsage(organizationId, current);
    else await loadHistory(organizationId, current);
  } finally {
    section.removeAttribute('aria-busy');
  }
}

/** The organization is always in the header, by name where the console knows it. */
function showCurrentOrganization(organizationId: string) {
  const name = organizationNames.get(organizationId);
  ui.currentOrganization.textContent = name ? `${name} (${organizationId})` : organizationId;
  if (!name && session) {
    // A service token lists no organizations: ask for the name. A refusal is left to the
    // view's own call to explain; the header keeps the id.
    session.api.organization(organizationId).then(
      (organization) => {
        organizationNames.set(organizationId, organization.name);
        if (parseRoute().organizationId === organizationId) {
          ui.currentOrganization.textContent = `${organization.name} (${organizationId})`;
        }
      },
      () => undefined,
    );
  }
  if (session?.info.kind === 'service') ui.organizationInput.value = organizationId;
  else if ([...ui.organizationSelect.options].some((option) => option.value === organizationId)) {
    ui.organizationSelect.value = organizationId;
  }
}

// ---- sign-in and the organization picker ---------------------------------------------------

async function signIn(token: string): Promise<boolean> {
  let info: TokenInfo;
  try {
    info = readToken(token);
  } catch (error) {
    if (!(error instanceof UnreadableToken)) throw error;
    showMessage(`That is not a token the console can read: ${error.message}. Paste the whole JWT.`);
    return false;
  }
  const api = new LedgerApi(token);
  organizationNames.clear();
  ui.organizationSelect.replaceChildren();
  let home: string | undefined;
  if (info.kind === 'user') {
    try {
      const mine = await api.userOrganizations(info.subject);
      for (const organization of mine.organizations) {
        organizationNames.set(organization.organizationId, organization.name);
        ui.organizationSelect.append(
          new Option(
            `${organization.name} (${organization.organizationId}), ${organization.role}${organization.active ? ', active' : ''}`,
            organization.organizationId,
          ),
        );
      }
      home = mine.activeOrganizationId ?? mine.organizations[0]?.organizationId;
    } catch (error) {
      showMessage(explain(error));
      return false;
    }
  } else if (info.kind === 'integration' && info.organizationId) {
    ui.organizationSelect.append(new Option(info.organizationId, info.organizationId));
    home = info.organizationId;
  }
  session = { token, info, api };
  sessionStorage.setItem(TOKEN_KEY, token);
  const picksFromList = info.kind !== 'service';
  ui.organizationSelectField.hidden = !picksFromList;
  ui.organizationInputField.hidden = picksFromList;
  ui.organizationInput.required = !picksFromList;
  ui.signedInAs.textContent = `Signed in as ${info.subject} (${info.kind} token)`;
  ui.signedIn.hidden = false;
  ui.organizationBar.hidden = false;
  ui.token.value = '';
  // A user starts in their active organization, as everywhere else in CharmIQ.
  if (!parseRoute().organizationId && home)
    history.replaceState(null, '', routeTo(home, 'balance'));
  return true;
}

function signOut(clearNotice = true) {
  session = undefined;
  sessionStorage.removeItem(TOKEN_KEY);
  organizationNames.clear();
  historyEvents = [];
  if (clearNotice) clearMessage();
  history.replaceState(null, '', location.pathname);
  void render(false).then(() => ui.token.focus());
}

ui.signInForm.addEventListener('submit', (event) => {
  event.preventDefault();
  clearMessage();
  void signIn(ui.token.value.trim()).then((ok) => {
    if (ok) void render(true);
    else ui.token.focus();
  });
});

ui.signOut.addEventListener('click', () => signOut());

ui.organizationForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const organizationId =
    session?.info.kind === 'service'
      ? ui.organizationInput.value.trim()
      : ui.organizationSelect.value;
  if (!organizationId) return;
  clearMessage();
  const target = routeTo(organizationId, parseRoute().view);
  if (location.hash === target) void render(true);
  else location.hash = target;
});

window.addEventListener('hashchange', () => {
  clearMessage();
  void render(true);
});

// ---- balance -------------------------------------------------------------------------------

async function loadBalance(organizationId: string, current: number) {
  const { api } = session!;
  const [balance, events] = await Promise.allSettled([
    api.balance(organizationId),
    api.history(organizationId),
  ]);
  if (current !== generation) return;
  if (balance.status === 'rejected') {
    ui.balanceAvailable.textContent = '–';
    ui.balanceReserved.textContent = '–';
    fillRows(ui.grants, []);
    showBody('balance', false);
    fail(balance.reason, organizationId);
    return;
  }
  showBody('balance', true);
  setFigure(ui.balanceAvailable, balance.value.available);
  setFigure(ui.balanceReserved, balance.value.reserved);
  fillRows(ui.grants, balance.value.grants.map(grantCells));
  if (events.status === 'rejected') {
    // Reading the balance does not need history rights; the chart does.
    const reason = events.reason;
    ui.balanceChartNote.textContent =
      reason instanceof LedgerProblem && reason.status === 403
        ? "The chart is drawn from the organization's history, which your role may not read (owners and admins may)."
        : `The chart could not be drawn. ${explain(reason, organizationId)}`;
    ui.balanceChartNote.hidden = false;
    drawBalanceChart(ui.balanceChart, { points: [], grants: [], expiries: [], transfers: [] });
    fillRows(ui.balancePoints, []);
    if (reason instanceof LedgerProblem && reason.status === 401) fail(reason);
    return;
  }
  ui.balanceChartNote.hidden = true;
  const series = availableSeries(events.value, Date.now());
  drawBalanceChart(ui.balanceChart, series);
  fillRows(
    ui.balancePoints,
    series.points.map((point) => [
      formatTime(point.at),
      number(point.available),
      point.cause,
      point.mark ?? '',
    ]),
  );
}

function grantCells(grant: GrantBalance): Cell[] {
  return [
    grant.grantId,
    grant.source,
    number(grant.remaining),
    number(grant.held),
    number(grant.priority),
    formatExpiry(grant.expiresAt),
  ];
}

// ---- usage ---------------------------------------------------------------------------------

const KEY_HEADERS: Record<GroupBy, string> = { day: 'Day', charm: 'Charm', user: 'User' };

function usageQuery() {
  if (!ui.usageFrom.value || !ui.usageTo.value) {
    const month = thisMonth();
    ui.usageFrom.value ||= month.from;
    ui.usageTo.value ||= month.to;
  }
  return {
    from: ui.usageFrom.value,
    to: ui.usageTo.value,
    groupBy: ui.usageGroup.value as GroupBy,
  };
}

async function loadUsage(organizationId: string, current: number) {
  let report: UsageReport;
  try {
    report = await session!.api.usage(organizationId, usageQuery());
  } catch (error) {
    if (current !== generation) return;
    fillRows(ui.usageTable, []);
    ui.usageTable.tFoot!.replaceChildren();
    drawUsageChart(ui.usageChart, []);
    showBody('usage', false);
    fail(error, organizationId);
    return;
  }
  if (current !== generation) return;
  showBody('usage', true);
  ui.usageKeyHeader.textContent = KEY_HEADERS[report.groupBy];
  drawUsageChart(ui.usageChart, report.rows);
  fillRows(
    ui.usageTable,
    report.rows.map((row) => [
      row.key,
      number(row.runs),
      number(row.credits),
      number(row.refunded),
      number(row.credits - row.refunded),
    ]),
  );
  if (report.rows.length === 0) {
    fillRows(ui.usageTable, [['No charm runs in these days.']]);
  }
  const { runs, credits, refunded } = report.totals;
  const total = row([
    'Total',
    number(runs),
    number(credits),
    number(refunded),
    number(credits - refunded),
  ]);
  total.firstElementChild!.replaceWith(headerCell('Total', 'row'));
  ui.usageTable.tFoot!.replaceChildren(total);
}

function reloadUsage() {
  const { organizationId } = parseRoute();
  if (!session || !organizationId) return;
  clearMessage();
  void loadUsage(organizationId, ++generation);
}

ui.usageForm.addEventListener('submit', (event) => {
  event.preventDefault();
  reloadUsage();
});
ui.usageGroup.addEventListener('change', reloadUsage);

ui.usageCsv.addEventListener('click', () => {
  const { organizationId } = parseRoute();
  if (!session || !organizationId) return;
  clearMessage();
  session.api.usageCsv(organizationId, usageQuery()).then(
    ({ blob, fileName }) => {
      // The bytes are the API's own CSV; the page only names and hands over the file.
      const url = URL.createObjectURL(blob);
      const link = document.createElement('a');
      link.href = url;
      link.download = fileName;
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    },
    (error: unknown) => fail(error, organizationId),
  );
});

// ---- history -------------------------------------------------------------------------------

async function loadHistory(organizationId: string, current: number) {
  ui.stateAt.hidden = true;
  ui.verifyResult.replaceChildren();
  let events: LedgerEvent[];
  try {
    events = await session!.api.history(organizationId);
  } catch (error) {
    if (current !== generation) return;
    historyEvents = [];
    renderTimeline(organizationId);
    showBody('history', false);
    fail(error, organizationId);
    return;
  }
  if (current !== generation) return;
  showBody('history', true);
  historyEvents = events;
  const chosen = ui.historyType.value;
  const types = [...new Set(events.map((event) => event.type))].sort();
  ui.historyType.replaceChildren(
    new Option('All types', ''),
    ...types.map((type) => new Option(type, type)),
  );
  ui.historyType.value = types.includes(chosen) ? chosen : '';
  renderTimeline(organizationId);
}

const TIMELINE_LABELS = ['Revision', 'Time', 'Type', 'Actor', 'Amount', 'Details'];

function renderTimeline(organizationId: string) {
  const type = ui.historyType.value;
  const shown = historyEvents.filter((event) => !type || event.type === type);
  ui.timelineCount.textContent = `${shown.length} of ${historyEvents.length} events`;
  const body = ui.timeline.tBodies[0];
  body.replaceChildren(
    ...shown.map((event) => {
      const tr = row([
        number(event.revision),
        formatTime(event.metadata.occurredAt),
        event.type,
        event.metadata.actor ? `${event.metadata.actor.kind} ${event.metadata.actor.id}` : '',
        amountOf(event),
        detailsOf(event),
      ]);
      tr.dataset.revision = String(event.revision);
      // On a phone each event is a card; these name its lines (see styles.css).
      TIMELINE_LABELS.forEach((label, index) => (tr.cells[index].dataset.label = label));
      const button = document.createElement('button');
      button.type = 'button';
      button.className = 'small';
      button.textContent = 'State then';
      button.setAttribute('aria-label', `State as of revision ${event.revision}`);
      button.addEventListener('click', () => void showStateAt(organizationId, event, tr));
      const cell = document.createElement('td');
      cell.append(button);
      tr.append(cell);
      return tr;
    }),
  );
}

ui.historyType.addEventListener('change', () => {
  const { organizationId } = parseRoute();
  if (organizationId) renderTimeline(organizationId);
});

async function showStateAt(organizationId: string, event: LedgerEvent, tr: HTMLTableRowElement) {
  clearMessage();
  try {
    const state = await session!.api.stateAt(organizationId, event.metadata.occurredAt);
    for (const selected of ui.timeline.querySelectorAll('tr[aria-current]')) {
      selected.removeAttribute('aria-current');
    }
    tr.setAttribute('aria-current', 'true');
    ui.stateAtTitle.textContent = `State as of ${formatTime(state.at)} UTC (revision ${state.revision ?? 'none'}, after ${event.type})`;
    setFigure(ui.stateAvailable, state.available);
    setFigure(ui.stateReserved, state.reserved);
    ui.stateMembers.textContent =
      state.members.map(({ userId, role }) => `${userId} (${role})`).join(', ') || 'none';
    ui.stateThreshold.textContent =
      state.lowBalanceThreshold > 0 ? formatCredits(state.lowBalanceThreshold) : 'off';
    fillRows(ui.stateGrants, state.grants.map(grantCells));
    ui.stateAt.hidden = false;
    ui.stateAtTitle.focus();
  } catch (error) {
    fail(error, organizationId);
  }
}

ui.verify.addEventListener('click', () => {
  const { organizationId } = parseRoute();
  if (!session || !organizationId) return;
  clearMessage();
  ui.verify.disabled = true;
  ui.verifyResult.className = 'verify-result';
  ui.verifyResult.textContent = 'Verifying: replaying the stream from the start…';
  session.api
    .verify(organizationId)
    .then(
      (result) => {
        const replayed = `${formatCredits(result.eventsReplayed)} events replayed`;
        if (result.consistent) {
          ui.verifyResult.className = 'verify-result ok';
          ui.verifyResult.textContent = `Verified: consistent. ${replayed}; every read model agrees with the stream.`;
          return;
        }
        ui.verifyResult.className = 'verify-result bad';
        const list = document.createElement('ul');
        list.append(
          ...result.differences.map((difference) => {
            const item = document.createElement('li');
            item.textContent = JSON.stringify(difference);
            return item;
          }),
        );
        const summary = document.createElement('p');
        summary.textContent = `Not consistent: ${result.differences.length} differences between the read models and the stream (${replayed}).`;
        ui.verifyResult.replaceChildren(summary, list);
      },
      (error: unknown) => {
        ui.verifyResult.textContent = 'Verify did not run.';
        fail(error, organizationId);
      },
    )
    .finally(() => (ui.verify.disabled = false));
});

function amountOf(event: LedgerEvent): Cell {
  const { amount, threshold } = event.data;
  if (typeof amount === 'number') return number(amount);
  if (typeof threshold === 'number') return number(threshold);
  return '';
}

/** One line a person can read per event, from the fields API.md lists for its type. */
function detailsOf({ type, data }: LedgerEvent): string {
  const d = (name: string) => String(data[name] ?? '');
  switch (type) {
    case 'OrganizationCreated':
      return `${d('name')} (${d('kind')}), owner ${d('ownerUserId')}`;
    case 'MemberAdded':
    case 'MemberRoleChanged':
      return `${d('userId')} as ${d('role')}`;
    case 'MemberRemoved':
      return d('userId');
    case 'CreditsGranted':
      return `grant ${d('grantId')}, ${d('source')}, priority ${d('priority')}, expires ${formatExpiry((data.expiresAt as string | null) ?? null)}`;
    case 'CharmRunCharged':
      return `run ${d('runId')}, charm ${d('charmId')}, by ${d('userId')}`;
    case 'CharmRunRefunded':
      return `run ${d('runId')}`;
    case 'CreditsReserved':
      return `hold ${d('reservationId')}, charm ${d('charmId')}, by ${d('userId')}`;
    case 'ReservationCaptured':
      return `hold ${d('reservationId')} as run ${d('runId')}, ${d('released')} released`;
    case 'ReservationReleased':
      return `hold ${d('reservationId')} (${d('reason')})`;
    case 'CreditsExpired':
      return `grant ${d('grantId')}`;
    case 'CreditsTransferredOut':
      return `transfer ${d('transferId')} to ${d('toOrganizationId')}`;
    case 'CreditsTransferredIn':
      return `transfer ${d('transferId')} from ${d('fromOrganizationId')}, grant ${d('grantId')}`;
    default:
      return '';
  }
}

// ---- tables --------------------------------------------------------------------------------

/** A cell's text; numbers are right-aligned and carry their raw value for copying and tests. */
type Cell = string | { number: number };

const number = (value: number): Cell => ({ number: value });

function row(cells: Cell[]): HTMLTableRowElement {
  const tr = document.createElement('tr');
  for (const cell of cells) {
    const td = document.createElement('td');
    if (typeof cell === 'string') td.textContent = cell;
    else {
      td.textContent = formatCredits(cell.number);
      td.className = 'number';
      td.dataset.value = String(cell.number);
    }
    tr.append(td);
  }
  if (cells.length === 1) tr.firstElementChild!.setAttribute('colspan', '99');
  return tr;
}

function headerCell(text: string, scope: 'row' | 'col') {
  const th = document.createElement('th');
  th.scope = scope;
  th.textContent = text;
  return th;
}

function fillRows(table: HTMLTableElement, rows: Cell[][]) {
  table.tBodies[0].replaceChildren(...rows.map(row));
}

function setFigure(element: HTMLElement, value: number) {
  element.textContent = formatCredits(value);
  element.dataset.value = String(value);
}

// ---- start ---------------------------------------------------------------------------------

async function start() {
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved && !(await signIn(saved))) sessionStorage.removeItem(TOKEN_KEY);
  await render(false);
}

void start();
