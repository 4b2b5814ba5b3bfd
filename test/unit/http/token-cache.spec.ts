import { loadConfig } from '../../../src/config/config';
import { TokenVerifier } from '../../../src/auth/token-verifier';
import { TEST_SECRET, tokenFor } from '../../support/tokens';

describe('verified tokens are remembered, their time claims are not', () => {
  const verifier = new TokenVerifier(loadConfig({ LEDGER_JWT_SECRET: TEST_SECRET }));

  afterEach(() => jest.useRealTimers());

  it('answers the same caller again, and refuses the token once it has expired', async () => {
    const token = await tokenFor({ sub: 'svc', scope: 'ledger:service' }, { expiresIn: '60s' });
    const first = await verifier.verify(token);
    expect(first).toMatchObject({ kind: 'service', id: 'svc' });
    expect(await verifier.verify(token)).toBe(first);

    // Past exp and the 30 s of allowed skew: refused although it was verified before.
    jest.useFakeTimers({ now: Date.now() + 95_000, doNotFake: ['nextTick', 'setImmediate'] });
    await expect(verifier.verify(token)).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
  });

  it('never remembers a token that failed', async () => {
    const forged = await tokenFor(
      { sub: 'svc', scope: 'ledger:service' },
      { secret: 'x'.repeat(40) },
    );
    await expect(verifier.verify(forged)).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
    await expect(verifier.verify(forged)).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
  });
});
