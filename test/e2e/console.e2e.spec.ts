import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import {
  newDataDir,
  removeDataDir,
  startLedger,
  TestClock,
  type RunningLedger,
} from '../support/ledger-app';
import { tokenFor } from '../support/tokens';

/**
 * The console at /console, driven in Debian's headless Chromium the way finance and admins
 * use it: a pasted token, an organization, balance, usage, history. Screenshots of every view
 * go to test/artifacts/console/.
 */
const CHROMIUM = '/usr/bin/chromium';
const ROOT = join(__dirname, '..', '..');
const ARTIFACTS = join(ROOT, 'test', 'artifacts', 'console');

// Locally a missing browser skips the suite; in CI (CI=true) launching it fails the suite.
const haveBrowser = existsSync(CHROMIUM) || process.env.CI === 'true';
if (!haveBrowser) {
  process.stderr.write(`console e2e skipped: no ${CHROMIUM} (apt-get install chromium)\n`);
}
const describeInBrowser = haveBrowser ? describe : describe.skip;

describeInBrowser('console in a real browser', () => {
  let dataDir: string;
  let ledger: RunningLedger;
  let browser: Browser;
  let base: string;
  let last = '0';
  const clock = new TestClock(Date.parse('2026-04-10T08:00:00Z'));
  const tokens: Record<string, string> = {};
  const USAGE_RANGE = { from: '2026-04-01', to: '2026-04-30' };

  beforeAll(async () => {
    // The page under test is what this source builds to, even when Jest runs alone.
    execFileSync(process.execPath, [join(ROOT, 'console', 'build.mjs')], { stdio: 'inherit' });
    mkdirSync(ARTIFACTS, { recursive: true });
    dataDir = newDataDir();
    ledger = await startLedger(dataDir, { clock });
    await ledger.app.listen(0, '127.0.0.1');
    const { port } = ledger.app.getHttpServer().address() as AddressInfo;
    base = `http://127.0.0.1:${port}`;
    await seed();
    tokens.ann = await tokenFor({ sub: 'ann' });
    tokens.ben = await tokenFor({ sub: 'ben' });
    tokens.carl = await tokenFor({ sub: 'carl' });
    tokens.service = await tokenFor({ sub: 'finance-desk', scope: 'ledger:service' });
    tokens.expired = await tokenFor(
      { sub: 'ann' },
      { expiresIn: Math.floor(Date.now() / 1000) - 3600 },
    );
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await ledger?.close();
    if (dataDir) removeDataDir(dataDir);
  });

  /** acme: two grants (one expires), runs of two charms by two users, a hold, a refund, a transfer. */
  async function seed() {
    const write = async (method: 'post' | 'put', path: string, body: object) => {
      const response = await ledger.http[method](path).send(body);
      expect([200, 201]).toContain(response.status);
      last = response.body.position ?? last;
    };
    const at = (iso: string) => (clock.current = Date.parse(iso));
    for (const userId of ['ann', 'ben', 'carl']) await write('post', '/v1/users', { userId });
    for (const organizationId of ['acme', 'labs']) {
      await write('post', '/v1/organizations', {
        organizationId,
        name: organizationId === 'acme' ? 'Acme' : 'Acme Labs',
        ownerUserId: 'ann',
      });
    }
    await write('post', '/v1/organizations/acme/members', { userId: 'ben', role: 'billing' });
    await write('post', '/v1/organizations/acme/grants', {
      grantId: 'purchase-1',
      amount: 1000,
      source: 'purchase',
    });
    await write('post', '/v1/organizations/acme/grants', {
      grantId: 'spring-promo',
      amount: 200,
      source: 'promotion',
      priority: 10,
      expiresAt: '2026-04-11T12:00:00Z',
    });
    await write('put', '/v1/organizations/acme/low-balance-threshold', { threshold: 100 });
    at('2026-04-10T09:00:00Z');
    const run = (runId: string, charmId: string, userId: string, amount: number) =>
      write('post', '/v1/charm-runs', { runId, charmId, userId, amount, organizationId: 'acme' });
    await run('r1', 'summarize', 'ann', 10);
    await run('r2', 'translate', 'ben', 20);
    at('2026-04-11T15:00:00Z');
    await run('r3', 'summarize', 'ben', 40);
    await write('post', '/v1/organizations/acme/reservations', {
      reservationId: 'hold-1',
      charmId: 'translate',
      userId: 'ann',
      amount: 50,
    });
    await write('post', '/v1/organizations/acme/reservations/hold-1/capture', { amount: 30 });
    at('2026-04-12T08:00:00Z');
    await write('post', '/v1/organizations/acme/charm-runs/r3/refund', { amount: 5 });
    await write('post', '/v1/organizations/acme/transfers', {
      transferId: 'to-labs',
      toOrganizationId: 'labs',
      amount: 100,
    });
    // The page reads without minPosition: wait here until the read models have it all.
    await ledger.http.get(`/v1/organizations/acme/usage?minPosition=${last}`).expect(200);
  }

  const contexts: BrowserContext[] = [];
  afterEach(async () => {
    await Promise.all(contexts.splice(0).map((context) => context.close()));
  });

  /** A fresh tab (its own session storage); page errors and console errors are collected. */
  async function openConsole(viewport = { width: 1280, height: 800 }, hash = '') {
    const context = await browser.newContext({ viewport, acceptDownloads: true });
    contexts.push(context);
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(`console: ${message.text()}`);
    });
    await page.goto(`${base}/console${hash ? `/${hash}` : ''}`);
    return { page, problems };
  }

  async function signIn(page: Page, token: string) {
    await page.getByLabel('Access token').fill(token);
    await page.getByRole('button', { name: 'Sign in' }).click();
  }

  async function openOrganization(page: Page, organizationId: string, name: string) {
    await page.getByLabel('Switch organization').selectOption(organizationId);
    await page.getByRole('button', { name: 'Open' }).click();
    await expectText(page, '#current-organization', `${name} (${organizationId})`);
  }

  // Code that runs in the page is given as text: the tests' tsconfig has no DOM types.
  const inPage = <T>(page: Page, expression: string) => page.evaluate<T>(expression);

  /** Waits until the element holds `text` (case and all). */
  const expectText = (page: Page, selector: string, text: string) =>
    page
      .locator(selector)
      .filter({ hasText: new RegExp(text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')) })
      .waitFor({ state: 'attached', timeout: 10_000 });

  const shot = (page: Page, name: string) =>
    page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });

  /** A table's body as text, cell by cell. */
  const tableRows = (page: Page, selector: string) =>
    page.$$eval(`${selector} tbody tr`, (rows) =>
      rows.map((row) => [...row.querySelectorAll('td')].map((cell) => cell.textContent ?? '')),
    );

  it('serves the page at /console without a token, with a strict Content-Security-Policy', async () => {
    await ledger.anonymous.get('/console').expect(301).expect('location', '/console/');
    const page = await ledger.anonymous.get('/console/').expect(200);
    expect(page.headers['content-type']).toContain('text/html');
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    expect(page.text).toContain('<script defer src="main.js"></script>');
    const script = await ledger.anonymous.get('/console/main.js').expect(200);
    expect(script.headers['content-type']).toContain('javascript');
    // Chart.js is in the bundle: nothing is fetched from a CDN.
    expect(page.text).not.toMatch(/https?:\/\//);
    await ledger.anonymous.get('/v1/organizations/acme/balance').expect(401);
  });

  it('signs in with a pasted token, shows the chosen organization, its balance chart and grants', async () => {
    const { page, problems } = await openConsole();
    await signIn(page, tokens.ann);
    // A user lands in their active organization, named in the header.
    await expectText(page, '#current-organization', 'Personal (personal-ann)');
    await openOrganization(page, 'acme', 'Acme');
    await page.waitForSelector('#grants tbody tr');

    const balance = (await ledger.http.get('/v1/organizations/acme/balance').expect(200)).body;
    expect(await page.getAttribute('#balance-available', 'data-value')).toBe(
      String(balance.available),
    );
    expect(await page.getAttribute('#balance-reserved', 'data-value')).toBe(
      String(balance.reserved),
    );
    const grants = await tableRows(page, '#grants');
    expect(grants.map(([grantId, , remaining]) => [grantId, remaining])).toEqual(
      balance.grants.map((grant: { grantId: string; remaining: number }) => [
        grant.grantId,
        grant.remaining.toLocaleString('en-US'),
      ]),
    );
    expect(grants[0]).toEqual(['purchase-1', 'purchase', '835', '0', '100', 'never']);

    // The chart: a line of available credits with grants, the expiry and the transfer marked.
    const datasets = JSON.parse((await page.getAttribute('#balance-chart', 'data-datasets'))!);
    expect(datasets).toEqual([
      { label: 'Available credits', points: expect.any(Number) },
      { label: 'Grants', points: 2 },
      { label: 'Expiries', points: 1 },
      { label: 'Transfers', points: 1 },
    ]);
    expect(datasets[0].points).toBeGreaterThan(8);
    expect(
      await inPage<number>(page, `document.getElementById('balance-chart').width`),
    ).toBeGreaterThan(300);
    // Folded from the history, the line ends where the ledger's own balance is.
    const points = await tableRows(page, '#balance-points');
    expect(points.at(-1)![1]).toBe(balance.available.toLocaleString('en-US'));
    expect(points.map((point) => point[3])).toContain('grant spring-promo expires');
    expect(points.map((point) => point[3])).toContain('100 credits out to labs');

    // The token is in this tab's session storage only.
    expect(await inPage<string[]>(page, 'Object.keys(sessionStorage)')).toEqual([
      'charmiq.console.token',
    ]);
    expect(await inPage<number>(page, 'localStorage.length')).toBe(0);
    expect(await inPage<string>(page, 'document.cookie')).toBe('');
    await page.locator('details.chart-data summary').click();
    await shot(page, 'balance');
    expect(problems).toEqual([]);
  });

  it('reports usage by day, charm and user, with totals, and downloads the API’s own CSV', async () => {
    const { page, problems } = await openConsole(undefined, '#/acme/usage');
    await signIn(page, tokens.ann);
    await expectText(page, '#current-organization', 'Acme (acme)');
    await page.getByLabel('From', { exact: true }).fill(USAGE_RANGE.from);
    await page.getByLabel('To', { exact: true }).fill(USAGE_RANGE.to);
    await page.getByRole('button', { name: 'Show usage' }).click();
    await expectText(page, '#usage-table tbody', '2026-04-11');
    expect(await tableRows(page, '#usage-table')).toEqual([
      ['2026-04-10', '2', '30', '0', '30'],
      ['2026-04-11', '2', '70', '5', '65'],
    ]);
    expect(await page.textContent('#usage-key-header')).toBe('Day');
    await shot(page, 'usage-by-day');

    await page.getByLabel('Group by').selectOption('charm');
    await expectText(page, '#usage-key-header', 'Charm');
    await expectText(page, '#usage-table tbody', 'summarize');
    expect(await tableRows(page, '#usage-table')).toEqual([
      ['summarize', '2', '50', '5', '45'],
      ['translate', '2', '50', '0', '50'],
    ]);
    expect(
      await page.$$eval('#usage-table tfoot tr > *', (cells) => cells.map((c) => c.textContent)),
    ).toEqual(['Total', '4', '100', '5', '95']);
    const datasets = JSON.parse((await page.getAttribute('#usage-chart', 'data-datasets'))!);
    expect(datasets).toEqual([
      { label: 'Kept (credits less refunds)', points: 2 },
      { label: 'Refunded', points: 2 },
    ]);

    const [download] = await Promise.all([
      page.waitForEvent('download'),
      page.getByRole('button', { name: 'Download CSV' }).click(),
    ]);
    const downloaded = readFileSync((await download.path())!);
    const api = await ledger.http
      .get(`/v1/organizations/acme/usage?from=2026-04-01&to=2026-04-30&groupBy=charm`)
      .set('accept', 'text/csv')
      .buffer(true)
      .parse((response, done) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => done(null, Buffer.concat(chunks)));
      })
      .expect(200);
    expect(downloaded.equals(api.body as Buffer)).toBe(true);
    expect(download.suggestedFilename()).toBe('usage-acme-2026-04-01-2026-04-30-by-charm.csv');
    await shot(page, 'usage-by-charm');

    await page.getByLabel('Group by').selectOption('user');
    await expectText(page, '#usage-key-header', 'User');
    await expectText(page, '#usage-table tbody', 'ben');
    expect((await tableRows(page, '#usage-table')).map((row) => row[0])).toEqual(['ann', 'ben']);
    expect(problems).toEqual([]);
  });

  it('walks the history: filters by type, shows the state as of an event, and verifies', async () => {
    const { page, problems } = await openConsole(undefined, '#/acme/history');
    await signIn(page, tokens.ann);
    await expectText(page, '#current-organization', 'Acme (acme)');
    const history = (await ledger.http.get('/v1/organizations/acme/history?limit=1000').expect(200))
      .body;
    await expectText(page, '#timeline-count', `of ${history.events.length} events`);
    expect(await page.locator('#timeline tbody tr').count()).toBe(history.events.length);

    await page.getByLabel('Event type').selectOption('CharmRunCharged');
    expect(await tableRows(page, '#timeline')).toEqual([
      expect.arrayContaining([
        'CharmRunCharged',
        'service test-suite',
        '10',
        'run r1, charm summarize, by ann',
      ]),
      expect.arrayContaining(['CharmRunCharged', 'service test-suite', '20']),
      expect.arrayContaining(['CharmRunCharged', 'service test-suite', '40']),
    ]);
    await shot(page, 'history-filtered');

    // The state right after r2, when the promotion was still good.
    const r2 = history.events.find(
      (event: { type: string; data: { runId?: string } }) =>
        event.type === 'CharmRunCharged' && event.data.runId === 'r2',
    );
    await page.getByRole('button', { name: `State as of revision ${r2.revision}` }).click();
    await page.waitForSelector('#state-at:not([hidden])');
    const then = (
      await ledger.http
        .get(
          `/v1/organizations/acme/history?limit=1&at=${encodeURIComponent(r2.metadata.occurredAt)}`,
        )
        .expect(200)
    ).body.stateAt;
    expect(await page.getAttribute('#state-available', 'data-value')).toBe(String(then.available));
    expect(then.available).toBe(1170);
    expect(await page.getAttribute('#state-reserved', 'data-value')).toBe(String(then.reserved));
    expect(
      (await tableRows(page, '#state-grants')).map(([id, , remaining]) => [id, remaining]),
    ).toEqual(
      then.grants.map((grant: { grantId: string; remaining: number }) => [
        grant.grantId,
        grant.remaining.toLocaleString('en-US'),
      ]),
    );
    expect(await page.textContent('#state-members')).toBe('ann (owner), ben (billing)');
    expect(await page.textContent('#state-at-title')).toContain(`revision ${then.revision}`);
    // Focus follows to the state, for keyboard and screen-reader users.
    expect(await inPage<string>(page, 'document.activeElement?.id')).toBe('state-at-title');

    await page.getByRole('button', { name: 'Verify' }).click();
    await expectText(page, '#verify-result', 'consistent');
    expect(await page.textContent('#verify-result')).toBe(
      `Verified: consistent. ${history.events.length} events replayed; every read model agrees with the stream.`,
    );
    await shot(page, 'history-state-and-verify');
    expect(problems).toEqual([]);
  });

  it('lets a service token type any organization id', async () => {
    const { page, problems } = await openConsole();
    await signIn(page, tokens.service);
    await expectText(page, '#signed-in-as', 'finance-desk (service token)');
    expect(await page.getByLabel('Switch organization').isVisible()).toBe(false);
    await page.getByLabel('Organization id').fill('labs');
    await page.getByLabel('Organization id').press('Enter');
    await expectText(page, '#current-organization', 'Acme Labs (labs)');
    await page.waitForSelector('#grants tbody tr');
    // The credits acme moved over are a grant of labs.
    expect(
      (await tableRows(page, '#grants')).map(([, source, remaining]) => [source, remaining]),
    ).toEqual([['transfer', '100']]);
    expect(problems).toEqual([]);
  });

  describe('says what went wrong, in words, and never leaves a blank page', () => {
    const message = (page: Page) => page.locator('#message');

    it('for a token that is not a JWT, and one that has expired', async () => {
      const { page } = await openConsole();
      await signIn(page, 'not-a-token');
      await expectText(page, '#message', 'That is not a token the console can read');
      await signIn(page, tokens.expired);
      await expectText(page, '#message', 'Your token was not accepted: the token has expired');
      expect(await page.getByLabel('Access token').isVisible()).toBe(true);
      expect(await message(page).getAttribute('role')).toBe('alert');
      await shot(page, 'error-expired-token');
    });

    it('for an organization the user is not in (403), and for a role that may not read history', async () => {
      const outsider = await openConsole(undefined, '#/acme/balance');
      await signIn(outsider.page, tokens.carl);
      await expectText(
        outsider.page,
        '#message',
        'You are not allowed to do this in organization acme',
      );
      expect(await outsider.page.textContent('#current-organization')).toBe('acme');
      expect(await outsider.page.locator('#balance-unavailable').isVisible()).toBe(true);
      expect(await outsider.page.locator('#balance-chart').isVisible()).toBe(false);
      await shot(outsider.page, 'error-forbidden');

      const billing = await openConsole(undefined, '#/acme/history');
      await signIn(billing.page, tokens.ben);
      await expectText(
        billing.page,
        '#message',
        'You are not allowed to do this in organization acme',
      );
      // Billing reads the balance but not the history the chart is drawn from: a note says so.
      await billing.page.getByRole('link', { name: 'Balance' }).click();
      await billing.page.waitForSelector('#grants tbody tr');
      await expectText(billing.page, '#balance-chart-note', 'your role may not read');
      expect(await billing.page.textContent('#message')).toBe('');
    });

    it('when the ledger is unavailable or cannot be reached', async () => {
      const { page } = await openConsole(undefined, '#/acme/usage');
      await page.route('**/v1/organizations/acme/usage?**', (route) =>
        route.fulfill({
          status: 503,
          contentType: 'application/problem+json',
          body: JSON.stringify({
            type: 'https://charmiq.dev/problems/unavailable',
            title: 'Service unavailable',
            status: 503,
            detail: 'the read models are catching up',
            code: 'UNAVAILABLE',
          }),
        }),
      );
      await signIn(page, tokens.ann);
      await expectText(
        page,
        '#message',
        'The ledger is unavailable right now: the read models are catching up. Try again in a moment.',
      );
      await shot(page, 'error-unavailable');
      await page.route('**/v1/organizations/acme/balance', (route) =>
        route.abort('connectionrefused'),
      );
      await page.getByRole('link', { name: 'Balance' }).click();
      await expectText(page, '#message', 'The ledger could not be reached');
      expect(await page.locator('#balance').isVisible()).toBe(true);
    });
  });

  it('fits a phone-sized window without sideways scrolling', async () => {
    const { page, problems } = await openConsole({ width: 390, height: 844 }, '#/acme/balance');
    await signIn(page, tokens.ann);
    await page.waitForSelector('#grants tbody tr');
    const overflow = () =>
      inPage<number>(
        page,
        'document.documentElement.scrollWidth - document.documentElement.clientWidth',
      );
    expect(await overflow()).toBe(0);
    await shot(page, 'phone-balance');
    await page.getByRole('link', { name: 'Usage' }).click();
    await page.getByLabel('From', { exact: true }).fill(USAGE_RANGE.from);
    await page.getByLabel('To', { exact: true }).fill(USAGE_RANGE.to);
    await page.getByRole('button', { name: 'Show usage' }).click();
    await expectText(page, '#usage-table tbody', '2026-04-10');
    expect(await overflow()).toBe(0);
    await shot(page, 'phone-usage');
    await page.getByRole('link', { name: 'History' }).click();
    await page.waitForSelector('#timeline tbody tr');
    expect(await overflow()).toBe(0);
    await shot(page, 'phone-history');
    expect(problems).toEqual([]);
  });

  it('works from the keyboard, with a label on every control', async () => {
    const { page, problems } = await openConsole();
    const focused = () =>
      inPage<string>(page, 'document.activeElement?.id || document.activeElement?.textContent');
    await page.keyboard.press('Tab');
    expect(await focused()).toBe('Skip to content');
    await page.keyboard.press('Tab');
    expect(await focused()).toBe('token');
    await page.keyboard.type(tokens.ann);
    await page.keyboard.press('Enter');
    await expectText(page, '#current-organization', 'Personal (personal-ann)');
    // After signing in, focus is on the view's heading; the next Tab stops are the controls.
    expect(await focused()).toBe('balance-title');

    // Every control answers to its label.
    for (const label of ['Switch organization']) {
      expect(await page.getByLabel(label).count()).toBe(1);
    }
    await page.getByLabel('Switch organization').focus();
    await page.keyboard.press('Shift+Tab');
    await page.keyboard.press('Tab');
    expect(await focused()).toBe('organization-select');
    await page.getByLabel('Switch organization').selectOption('acme');
    await page.keyboard.press('Tab');
    expect(await focused()).toBe('Open');
    await page.keyboard.press('Enter');
    await expectText(page, '#current-organization', 'Acme (acme)');
    expect(await focused()).toBe('balance-title');
    // The views are just before the heading.
    await page.keyboard.press('Shift+Tab');
    expect(await focused()).toBe('History');
    await page.keyboard.press('Shift+Tab');
    expect(await focused()).toBe('Usage');
    await page.keyboard.press('Enter');
    // The page holds the key column's "Day" before the view opens: wait for the view itself
    // (a loaded machine checked the focus before the route had changed).
    await page.locator('#usage').waitFor({ state: 'visible', timeout: 10_000 });
    await expectText(page, '#usage-key-header', 'Day');
    expect(await focused()).toBe('usage-title');
    for (const label of ['From', 'To', 'Group by']) {
      expect(await page.getByLabel(label, { exact: true }).count()).toBe(1);
    }
    await page.keyboard.press('Tab');
    expect(await focused()).toBe('usage-from');
    await page.goto(`${base}/console/#/acme/history`);
    await page.waitForSelector('#timeline tbody tr');
    expect(await page.getByLabel('Event type').count()).toBe(1);
    await page.getByLabel('Event type').focus();
    await page.keyboard.press('Tab');
    expect(await focused()).toBe('verify');
    await page.keyboard.press('Enter');
    await expectText(page, '#verify-result', 'consistent');
    // Every form control has a label element pointing at it.
    const unlabelled = await inPage<string[]>(
      page,
      `[...document.querySelectorAll('input, select, textarea')]
        .filter((control) => !control.labels?.length).map((control) => control.id)`,
    );
    expect(unlabelled).toEqual([]);
    expect(await page.locator('main').count()).toBe(1);
    expect(await page.locator('nav[aria-label="Views"]').count()).toBe(1);
    expect(problems).toEqual([]);
  });
});
