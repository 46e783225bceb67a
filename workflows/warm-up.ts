// A control worker's first run pays for what V8 and the SDK do once per workflow thread: compiling
// the bundle's functions as they are first called, parsing the bundle's source map (the SDK maps
// the stack of every promise a workflow makes) and optimising the activation path. On the bench's
// planned failover that first workflow task took ~380 ms on a cold worker, ~40 ms on a warm one.
// So each control worker runs this once as it starts, eagerly on itself, before it says it is
// ready (workers/region.ts): a product feature, which the bench measures as an operator's first
// run after a deploy would see it, not a trick of the bench.
import type { RunInput } from '../src/contract/runbook/types';
import { runbook } from './runbook';

/** Names no real service (service names are DNS-like): no guardian answers to it, no run is counted for it. */
export const WARM_UP_SERVICE = '(warm-up)';

/**
 * The interpreter itself, on a runbook whose one step can never run (planned and unplanned at
 * once): its state, search attributes, guardian notices and close, without touching a region.
 */
export async function warmUp(): Promise<string> {
  const input: RunInput = {
    runbook: {
      kind: 'failover',
      hash: 'warm-up',
      file: 'warm-up',
      steps: [{ id: 'never', action: 'db.fenceOnReturn', when: ['planned', 'unplanned'] }],
    },
    service: WARM_UP_SERVICE,
    regions: ['a', 'b'],
    mode: 'planned',
    target: 'b',
    dryRun: false,
    policy: {
      rpoBudgetSeconds: 0,
      allowDataLoss: false,
      approval: { planned: 'none', unplanned: 'none' },
      approvers: [],
      approvalTimeout: '1m',
      onApprovalTimeout: 'reject',
      lagTimeout: '1m',
      cooldown: '1m',
    },
    requestedBy: 'worker start',
    trigger: 'warm-up',
  };
  const rec = await runbook(input);
  return `${rec.status}: ${rec.steps.map((s) => `${s.id} ${s.status}`).join(', ')}`;
}
