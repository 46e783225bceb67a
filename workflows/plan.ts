// What a dry run returns: each step with the region and task queue it would run on, whether its
// conditions would hold, and the values it would act on (positions, traffic before and after).
import type { PlannedStep } from '../src/contract/runbook/types';
import { regionTaskQueue } from '../src/contract/runbook/ids';
import { shiftedRecords } from '../src/contract/traffic/plan';
import { describeTraffic } from './actions';
import { specOf, type RunState } from './run-state';

export function planOf(run: RunState): PlannedStep[] {
  const { input, rec } = run;
  const src = rec.topology?.find((n) => n.region === rec.source);
  const tgt = rec.topology?.find((n) => n.region === input.target);
  return input.runbook.steps.map((step) => {
    const spec = step.action ? specOf(step.action) : undefined;
    const placement =
      step.placement ?? spec?.placement ?? (step.action ? input.runbook.plugins?.[step.action]?.placement : undefined);
    const region = placement === 'source' ? rec.source : placement === 'target' ? input.target : undefined;
    const assumeFenced = input.mode === 'planned' || src?.reachable === true;
    const unmet = step.when.filter((c) =>
      c === 'fenced' ? !assumeFenced : c === 'not-fenced' ? assumeFenced : !run.holds(c),
    );
    const values: Record<string, unknown> = {};
    if (step.action === 'db.fenceWrites') Object.assign(values, { writerLsn: src?.lsn, reachable: src?.reachable });
    if (step.action === 'db.waitForLag')
      Object.assign(values, { targetReplayedLsn: tgt?.lsn, timeout: input.policy.lagTimeout });
    if (step.action === 'db.promote')
      Object.assign(values, { timeline: tgt?.timeline, streamingFrom: tgt?.streamingFrom });
    if (step.action === 'traffic.shift' && rec.trafficBefore && rec.source) {
      Object.assign(values, {
        before: describeTraffic(rec.trafficBefore),
        after: describeTraffic({
          ...rec.trafficBefore,
          records: shiftedRecords(rec.trafficBefore.records, rec.source, input.target, input.trafficDrain),
        }),
      });
    }
    return {
      id: step.id,
      title: run.stepState(step.id).title,
      action: step.action ?? 'approval',
      region,
      taskQueue: region ? regionTaskQueue(region) : undefined,
      ...(unmet.length ? { skip: `condition not met: ${unmet.join(', ')}` } : {}),
      ...(Object.keys(values).length ? { values } : {}),
    };
  });
}
