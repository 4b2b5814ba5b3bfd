import { measureDomain } from '../../../bench/domain';
import { availableCredits } from '../../../src/ledger/organization/burn-down';

describe("the bench's measure of the organization's own work (bench/domain.ts)", () => {
  it('charges every run once, takes the snapshots the pipeline would, and times both', () => {
    const { charges, snapshots, microsPerCharge, state } = measureDomain(5_000);
    expect(charges).toBe(5_000);
    expect(state.runs.size).toBe(5_000);
    expect(availableCredits(state, Date.UTC(2026, 11, 2))).toBe(1e12 - 5_000);
    // Batches of 32 and a snapshot once 500 events are past the last: at 512, 1,024 ... 4,608.
    expect(snapshots).toBe(9);
    expect(microsPerCharge.decideAndEvolve).toBeGreaterThan(0);
    expect(microsPerCharge.snapshots).toBeGreaterThan(0);
    expect(microsPerCharge.total).toBeGreaterThanOrEqual(
      microsPerCharge.decideAndEvolve + microsPerCharge.snapshots - 0.01,
    );
  });
});
