// The readiness evaluation a Temporal Schedule runs per service (regionshift-readiness-<service>):
// each region's worker describes its own database, one of them reads the traffic records, the
// failover runbook runs dry (its preflight and plan, as `regionshift plan` does) toward each region
// it could go to, a control worker says who could approve, and src/readiness/evaluate.ts judges.
// It changes nothing; its result is the evaluation.
import * as wf from '@temporalio/workflow';
import { ApplicationFailure } from '@temporalio/common';
import type { DbNodeState, RegionActivities, TrafficState } from '../src/contract/activities';
import type { DecisionActivities } from '../activities/approvals';
import {
  candidateTargets,
  evaluateReadiness,
  type ApproversReport,
  type ReadinessEvaluation,
  type ReadinessInput,
  type ReadinessObservations,
  type TargetDryRun,
} from '../src/contract/readiness';
import { regionTaskQueue } from '../src/contract/runbook/ids';
import type { Mode, RunInput, RunRecord } from '../src/contract/runbook/types';
import { SA } from './search-attributes';

const inRegion = (region: string) =>
  // A region whose worker is down is a finding, not something to wait for: no retries, a short queue wait.
  wf.proxyActivities<RegionActivities>({
    taskQueue: regionTaskQueue(region),
    scheduleToStartTimeout: '5s',
    startToCloseTimeout: '10s',
    retry: { maximumAttempts: 1 },
  });

const control = wf.proxyActivities<DecisionActivities>({
  scheduleToStartTimeout: '10s',
  startToCloseTimeout: '10s',
  retry: { maximumAttempts: 2 },
});

function why(err: unknown): string {
  const e = err as { message?: string; cause?: { message?: string } };
  return e.cause?.message ? `${e.message}: ${e.cause.message}` : (e.message ?? String(err));
}

export async function readiness(input: ReadinessInput): Promise<ReadinessEvaluation> {
  const workersDown: Record<string, string> = {};
  const topology = await Promise.all(
    input.regions.map((region) =>
      inRegion(region)
        .dbDescribe({ service: input.service })
        .catch((err: unknown): DbNodeState => {
          workersDown[region] = why(err);
          return { region, reachable: false, error: `its worker did not describe its database (${why(err)})` };
        }),
    ),
  );
  // The records are global; any region's worker reads them: the writer's first, then the rest.
  const writer = topology.find((n) => n.reachable && n.role === 'primary')?.region;
  const readers = [
    ...(writer ? [writer] : []),
    ...input.regions.filter((r) => r !== writer && topology.find((n) => n.region === r)?.reachable),
  ];
  let traffic: { state: TrafficState } | { error: string } = { error: 'no region worker answered' };
  for (const region of readers) {
    try {
      traffic = { state: await inRegion(region).trafficDescribe({ service: input.service }) };
      break;
    } catch (err) {
      traffic = { error: `${region}: ${why(err)}` };
    }
  }
  // Evaluations scheduled before this (no failover in their input) judge the topology only.
  if (!input.failover || !wf.patched('readiness-per-target'))
    return evaluateReadiness(input, topology, traffic, Date.now());
  // Planned while a writer answers (the stricter preflight: the target must stream from it);
  // unplanned when none does, as the guardian would start it.
  const mode: Mode = writer ? 'planned' : 'unplanned';
  const failover = input.failover;
  const [dryRuns, approvers] = await Promise.all([
    Promise.all(candidateTargets(input, writer).map((target) => dryRun(input.service, { ...failover, target, mode }))),
    control
      .checkApprovers({ service: input.service })
      .catch((err: unknown): { error: string } => ({ error: why(err) })),
  ]);
  const seen: ReadinessObservations = {
    workersDown,
    dryRuns: Object.fromEntries(dryRuns.map((d) => [d.target, d.run])),
    approvers: approvers as ApproversReport | { error: string },
  };
  return evaluateReadiness(input, topology, traffic, Date.now(), seen);
}

/** The failover runbook, dry, toward one target: what its preflight finds or refuses, and its plan. */
async function dryRun(
  service: string,
  req: Omit<RunInput, 'dryRun' | 'requestedBy' | 'trigger'>,
): Promise<{ target: string; run: TargetDryRun }> {
  const info = wf.workflowInfo();
  const workflowId = `${info.workflowId}-to-${req.target}`;
  const input: RunInput = { ...req, dryRun: true, requestedBy: 'readiness', trigger: `readiness:${info.workflowId}` };
  const rec = await wf
    .executeChild<(i: RunInput) => Promise<RunRecord>>('runbook', {
      workflowId,
      args: [input],
      staticSummary: `readiness: ${req.runbook.kind} ${service} → ${req.target} (dry run, ${req.mode})`,
      // Dry runs are not followed in Slack, nor counted as runs of the service (RegionshiftMode).
      typedSearchAttributes: [
        { key: SA.service, value: service },
        { key: SA.target, value: req.target },
        { key: SA.mode, value: 'dry-run' },
        { key: SA.trigger, value: input.trigger },
      ],
    })
    .catch((err: unknown): RunRecord | string => {
      const cause = err instanceof wf.ChildWorkflowFailure ? err.cause : undefined;
      const attached = cause instanceof ApplicationFailure ? (cause.details?.[0] as RunRecord | undefined) : undefined;
      return attached ?? why(cause ?? err);
    });
  if (typeof rec === 'string') return { target: req.target, run: { mode: req.mode, workflowId, refused: rec } };
  const preflight = rec.steps.find((s) => s.action === 'preflight');
  return {
    target: req.target,
    run: {
      mode: req.mode,
      workflowId,
      runId: rec.runId,
      ...(rec.status === 'succeeded'
        ? { preflight: preflight?.detail }
        : { refused: rec.error ?? preflight?.error ?? rec.status }),
      ...(rec.plan ? { plan: rec.plan } : {}),
    },
  };
}
