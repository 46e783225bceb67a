// The workflow side of the reconciliation and failback actions (runbooks/reconcile.yaml,
// runbooks/failback.yaml), called from the runbook interpreter's switch. Deterministic: it only
// routes activities to the right region and decides from their results. The rows themselves never
// pass through here (a 10,000-transaction divergence would not fit in history): classification
// stages them in the new primary, apply reads them there.
import * as wf from '@temporalio/workflow';
import { ApplicationFailure, TimeoutType } from '@temporalio/common';
import type { ActivityOptions } from '@temporalio/common';
import type { ReconcileActivities } from '../activities/reconcile';
import type { DbNodeState, RegionActivities, RejoinResult } from '../src/contract/activities';
import { regionTaskQueue } from '../src/contract/runbook/ids';
import { verifyCaseDecision } from './approvals';
import { COMPENSATION, type Compensations } from './compensation';
import type { RunInput, RunRecord, StepState } from '../src/contract/runbook/types';
import {
  PRESERVE_WAITING,
  reconciliationIdOf,
  type ApplyResult,
  type CaseResolveInput,
  type CaseResolveResult,
  type CasesListInput,
  type ClassifyResult,
  type ReconcileCase,
} from '../src/contract/reconcile';

export const RECONCILE_ACTIONS = [
  'reconcile.preserve',
  'reconcile.classify',
  'reconcile.apply',
  'reconcile.verify',
  'reconcile.report',
  'failback.checkCases',
  'failback.rejoinTarget',
  'traffic.restore',
] as const;
export type ReconcileAction = (typeof RECONCILE_ACTIONS)[number];

export interface ActionContext {
  input: RunInput;
  rec: RunRecord;
  state: StepState;
  /** The step's activity options (timeouts from the runbook). */
  opts: Partial<ActivityOptions>;
  source(): string;
  refuse(message: string): never;
  compensations: Compensations;
  stepId: string;
}

type Acts = ReconcileActivities & RegionActivities;

/** The reconciliation (and database, traffic) activities of one region's worker, with timeouts for long statements. */
function reconcilerIn(region: string, options: Partial<ActivityOptions> = {}): Acts {
  return wf.proxyActivities<Acts>({
    taskQueue: regionTaskQueue(region),
    startToCloseTimeout: '15m',
    // Long statements heartbeat every second: a worker that dies is noticed within seconds, and
    // the retry finds the work either committed (and says so) or rolled back.
    heartbeatTimeout: '10s',
    retry: { initialInterval: '500ms', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 10 },
    cancellationType: wf.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
    ...options,
  });
}

function failureType(err: unknown): string | undefined {
  if (err instanceof wf.ActivityFailure && err.cause instanceof ApplicationFailure) return err.cause.type ?? undefined;
  return undefined;
}

function failureMessage(err: unknown): string {
  if (err instanceof wf.ActivityFailure && err.cause) return err.cause.message;
  return err instanceof Error ? err.message : String(err);
}

/**
 * How long reconcile.preserve waits on the provider (Aurora: its snapshot of the old primary,
 * taken when the region is back, and the restore) before it gives up and says so. The wait is
 * the workflow's, between attempts, so the step can show what it is waiting for.
 */
const PRESERVE_WAIT_MS = 6 * 60 * 60_000;
const PRESERVE_POLL_MAX_MS = 60_000;

function fmtCounts(c: Record<string, number>): string {
  return (
    Object.entries(c)
      .filter(([, v]) => v > 0)
      .map(([k, v]) => `${k} ${v}`)
      .join(', ') || 'nothing'
  );
}

export function isReconcileAction(action: string): action is ReconcileAction {
  return (RECONCILE_ACTIONS as readonly string[]).includes(action);
}

export async function runReconcileAction(action: ReconcileAction, ctx: ActionContext): Promise<void> {
  const { input, rec, state } = ctx;
  const svc = input.service;
  const handoff =
    input.handoff ??
    ctx.refuse(
      `a ${input.runbook.kind} run needs the unplanned failover it follows (RunInput.handoff); start it with regionshift ${input.runbook.kind}`,
    );
  const id = reconciliationIdOf(handoff);
  const r = (rec.reconciliation ??= { id });
  const info = wf.workflowInfo();

  /** Where the old side is read when preserve restored it elsewhere (Aurora). */
  const oldSide = () => (r.preserve?.oldSide ? { oldSide: r.preserve.oldSide } : {});

  async function classifyPass(pass: number, widenFrom?: string): Promise<ClassifyResult> {
    const c = await reconcilerIn(input.target, ctx.opts).reconcileClassify({
      service: svc,
      reconciliationId: id,
      oldRegion: ctx.source(),
      ...oldSide(),
      handoff,
      pass,
      ...(widenFrom ? { widenFrom } : {}),
      requestedBy: input.requestedBy,
      workflowRunId: info.runId,
    });
    // The record keeps the first pass (the divergence window); a widened pass is in the verify step's detail.
    if (!r.classify || r.classify.pass === pass) r.classify = c;
    return c;
  }

  /** Apply; when the new side changed under a staged decision, classify again and retry (three times). */
  async function applyPass(pass: number, widenFrom?: string): Promise<ApplyResult> {
    for (let attempt = 1; ; attempt++) {
      try {
        const a = await reconcilerIn(input.target, ctx.opts).reconcileApply({
          service: svc,
          reconciliationId: id,
          pass,
          requestedBy: input.requestedBy,
          workflowRunId: info.runId,
        });
        if (!r.apply || r.apply.pass === pass) r.apply = a;
        return a;
      } catch (err) {
        if (failureType(err) !== 'ReconcileStale' || attempt >= 3) throw err;
        await classifyPass(pass, widenFrom);
      }
    }
  }

  switch (action) {
    case 'reconcile.preserve': {
      state.region = ctx.source();
      const since = handoff.divergence.failedAt ?? handoff.failoverEndedAt;
      const waitStarted = Date.now();
      const retry = ctx.opts.retry ?? {
        initialInterval: '500ms',
        backoffCoefficient: 2,
        maximumInterval: '10s',
        maximumAttempts: 10,
      };
      for (let pauseMs = 2_000; ; pauseMs = Math.min(pauseMs * 2, PRESERVE_POLL_MAX_MS)) {
        // The old primary's region may still be coming back: wait for its worker a while, not for ever.
        try {
          r.preserve = await reconcilerIn(ctx.source(), {
            scheduleToStartTimeout: '2m',
            startToCloseTimeout: '3m',
            ...ctx.opts,
            // Waiting on the provider comes back here at once, so the step can say what it waits for.
            retry: { ...retry, nonRetryableErrorTypes: [...(retry.nonRetryableErrorTypes ?? []), ...PRESERVE_WAITING] },
          }).reconcilePreserve({ service: svc, newPrimary: input.target, ...(since ? { since } : {}) });
          break;
        } catch (err) {
          if (
            err instanceof wf.ActivityFailure &&
            err.cause instanceof wf.TimeoutFailure &&
            err.cause.timeoutType === TimeoutType.SCHEDULE_TO_START
          ) {
            ctx.refuse(
              `the old primary's region ${ctx.source()} has no worker answering (task queue ${regionTaskQueue(ctx.source())}, waited 2 minutes): bring the region back (its worker; its database is started read-only by this step), then run regionshift reconcile --service ${svc} again`,
            );
          }
          const type = failureType(err);
          if (!type || !(PRESERVE_WAITING as readonly string[]).includes(type)) throw err;
          const waited = Date.now() - waitStarted;
          if (waited >= PRESERVE_WAIT_MS) {
            ctx.refuse(
              `gave up after ${Math.round(waited / 60_000)} minutes waiting to preserve ${ctx.source()}'s old primary: ${failureMessage(err)}. Run regionshift reconcile --service ${svc} again once it is there`,
            );
          }
          state.detail = `waiting (${Math.round(waited / 1000)}s so far): ${failureMessage(err)}`;
          await wf.sleep(pauseMs);
        }
      }
      state.detail = r.preserve.detail;
      return;
    }
    case 'reconcile.classify': {
      state.region = input.target;
      const c = await classifyPass(1);
      state.detail = `${c.alreadyApplied ? 'already applied: ' : ''}window from ${c.divergence.windowFrom} (${c.divergence.basis}); read ${c.read.oldRows} old / ${c.read.newRows} new rows: ${fmtCounts(c.txn)}${Object.values(c.rows).some((v) => v > 0) ? `; rows: ${fmtCounts(c.rows)}` : ''}`;
      return;
    }
    case 'reconcile.apply': {
      state.region = input.target;
      const a = await applyPass(r.classify?.pass ?? 1);
      state.detail = `${a.alreadyApplied ? 'already applied: ' : ''}${a.transactionsApplied} transactions (${a.entriesApplied} entries) re-applied, ${a.stateMoves} state moves, ${a.duplicatesDropped} duplicates dropped, ${a.casesOpened} cases opened${a.casesOpened ? ` (${fmtCounts(a.casesByKind as Record<string, number>)})` : ''}`;
      return;
    }
    case 'reconcile.verify': {
      state.region = input.target;
      let v = await reconcilerIn(input.target, ctx.opts).reconcileVerify({
        service: svc,
        reconciliationId: id,
        oldRegion: ctx.source(),
        ...oldSide(),
        escalate: false,
      });
      const notes: string[] = [];
      if (v.widenTo) {
        // A difference just before the window: a transaction that began long before it committed.
        const pass = (r.classify?.pass ?? 1) + 1;
        notes.push(`${v.mismatches.length} difference(s) just before the window: widened to ${v.widenTo}`);
        await classifyPass(pass, v.widenTo);
        const a = await applyPass(pass, v.widenTo);
        notes.push(`pass ${pass}: ${a.transactionsApplied} more re-applied, ${a.casesOpened} more cases`);
        v = await reconcilerIn(input.target, ctx.opts).reconcileVerify({
          service: svc,
          reconciliationId: id,
          oldRegion: ctx.source(),
          ...oldSide(),
          escalate: true,
        });
      }
      r.verify = v;
      // Mutable tables say how many keys the window named (left to classify and apply).
      const tables = v.tables
        .map(
          (t) =>
            `${t.table} ${t.rows} rows${t.excluded !== undefined ? ` (${t.excluded} keys in the window left out)` : ''}, ${t.ranges} ranges, ${t.rowsFetched} fetched`,
        )
        .join('; ');
      const differing = v.tables
        .filter((t) => t.differences > 0)
        .map((t) => `${t.table} ${t.differences}`)
        .join(', ');
      notes.push(
        v.ok
          ? `no difference outside the window (${tables})`
          : `DIFFERENCES outside the window: ${v.mismatches.length} row(s)${differing ? ` (${differing})` : ''}, ${v.balanceMismatches.length} balance(s); escalated as case ${v.escalatedCase}`,
      );
      state.detail = notes.join('; ');
      return;
    }
    case 'reconcile.report': {
      state.region = input.target;
      r.report = await reconcilerIn(input.target, ctx.opts).reconcileReport({
        service: svc,
        reconciliationId: id,
        workflowId: info.workflowId,
        runId: info.runId,
        requestedBy: input.requestedBy,
        ...oldSide(),
      });
      const rep = r.report;
      state.detail =
        `lost ${rep.txn['only-old']}, only-new ${rep.txn['only-new']}, identical ${rep.txn.identical}, same-id conflicts ${rep.txn['same-id-different-payload']}; re-applied ${rep.applied.transactions}; ${rep.cases.open} case(s) open of ${rep.cases.opened}` +
        (rep.oldSide
          ? `; the old side was read from ${rep.oldSide.cluster} in ${rep.oldSide.region}, which runs (and costs) until deleted; when nobody needs to query it any more: ${rep.oldSide.deleteCommands.join(' && ')}`
          : '');
      return;
    }
    case 'failback.checkCases': {
      state.region = ctx.source();
      const check = await reconcilerIn(ctx.source(), { startToCloseTimeout: '1m', ...ctx.opts }).failbackCheck({
        service: svc,
        reconciliationId: id,
      });
      const problems: string[] = [];
      if (!check.oldSideRead)
        problems.push(
          `reconciliation ${id} has not read ${handoff.oldPrimary}'s divergent writes, and the rejoin would rewind them away (run: regionshift reconcile --service ${svc})`,
        );
      else if (!check.reconciled)
        problems.push(`reconciliation ${id} has not applied (run: regionshift reconcile --service ${svc})`);
      if (check.openCases.length > 0) {
        problems.push(
          `${check.openCases.length} reconciliation case(s) open: ${check.openCases
            .slice(0, 10)
            .map((c) => `${c.id} (${c.kind})`)
            .join(
              ', ',
            )}${check.openCases.length > 10 ? ', …' : ''}; decide them with: regionshift cases resolve <id> --by <you> --action accept|reject|compensate`,
        );
      }
      rec.failback = { reconciliationId: id, check };
      if (problems.length > 0 && !input.override) {
        ctx.refuse(
          `failback of ${svc} refused: ${problems.join('; ')}. To fail back anyway: regionshift failback --service ${svc} --override-reason "<why>" (recorded in the run)`,
        );
      }
      if (problems.length > 0) {
        check.overridden = problems;
        rec.failback.override = input.override!;
      }
      state.detail =
        problems.length > 0
          ? `OVERRIDDEN by ${input.override!.by}: "${input.override!.reason}" (${problems.join('; ')})`
          : check.detail;
      return;
    }
    case 'failback.rejoinTarget': {
      state.region = input.target;
      // pg_rewind discards the old primary's divergent writes: only after reconciliation has read them (or a recorded override).
      if (!rec.failback?.check)
        ctx.refuse(
          'failback.rejoinTarget needs failback.checkCases earlier in the runbook: the old primary is only rewound once reconciliation has read it',
        );
      const rejoin: RejoinResult = await reconcilerIn(input.target, {
        startToCloseTimeout: '10m',
        ...ctx.opts,
      }).dbRejoinAsStandby({ service: svc, primaryRegion: ctx.source() });
      rec.failback.oldPrimaryRejoin = rejoin;
      // A provider that cannot make it a replica in place (Aurora: a cluster outside the global
      // database) says so and leaves it alone: fencing the current primary next would only cut the
      // service off for a switchover that cannot happen.
      if (!rejoin.streamingFrom) {
        ctx.refuse(
          `failback of ${svc} refused: ${input.target} is not a replica of ${ctx.source()}, so there is nothing to switch over to (${rejoin.detail ?? 'not rejoined'}); nothing was fenced or moved`,
        );
      }
      state.detail =
        rejoin.detail ??
        `${rejoin.rejoined ? 'rejoined' : 'already a standby'}, streaming from ${rejoin.streamingFrom}${rejoin.rewound ? ' (rewound)' : ''}`;
      return;
    }
    case 'traffic.restore': {
      state.region = input.target;
      const want = handoff.trafficBefore ?? ctx.refuse('the failover recorded no traffic state to restore');
      const before = rec.trafficBefore ?? (await reconcilerIn(input.target).trafficDescribe({ service: svc }));
      ctx.compensations.register(
        ctx.stepId,
        action,
        `restore traffic records of ${svc} as they were before failback`,
        async () => {
          const s = await reconcilerIn(input.target, COMPENSATION).trafficRestore({ service: svc, state: before });
          return s.records.map((x) => `${x.region} ${x.weight ?? x.failover ?? x.routingControl ?? ''}`).join(', ');
        },
      );
      const after = await reconcilerIn(input.target, ctx.opts).trafficRestore({ service: svc, state: want });
      rec.failback = { ...(rec.failback ?? { reconciliationId: id }), trafficRestored: { before, after } };
      rec.traffic = {
        before,
        after,
        changed: true,
        maxCachedSeconds: Math.max(0, ...before.records.map((x) => x.ttl)),
      };
      state.detail = `restored to the records before failover ${handoff.failoverRunId}: ${after.records.map((x) => `${x.region} ${x.weight ?? x.failover ?? x.routingControl ?? x.location ?? ''}`.trim()).join(', ')}`;
      return;
    }
  }
}

// --- cases: list and resolve through the worker next to the primary --------------------------

export type CasesOp = { op: 'list'; list: CasesListInput } | { op: 'resolve'; resolve: CaseResolveInput };
export type CasesRequest = { service: string; regions: string[] } & CasesOp;
export type CasesResponse = { region: string } & (
  { op: 'list'; cases: ReconcileCase[] } | { op: 'resolve'; result: CaseResolveResult }
);

/**
 * Lists or resolves reconciliation cases for the CLI and the Slack bot: the cases live in the
 * service's primary database, so this finds the writable primary (any reachable node will do for
 * a list) and asks that region's worker. Every resolution is in this workflow's history too.
 */
export async function reconcileCases(req: CasesRequest): Promise<CasesResponse> {
  // Checked first: an unsigned or wrongly signed decision never reaches a database.
  const signed = req.op === 'resolve' ? await verifyCaseDecision(req.resolve) : undefined;
  const nodes = await Promise.all(
    req.regions.map((region) =>
      reconcilerIn(region, { scheduleToStartTimeout: '5s', startToCloseTimeout: '10s', retry: { maximumAttempts: 1 } })
        .dbDescribe({ service: req.service })
        .catch((err): DbNodeState => ({ region, reachable: false, error: String((err as Error).message) })),
    ),
  );
  const primary = nodes.find((n) => n.reachable && n.role === 'primary' && !n.fenced);
  const retry: Partial<ActivityOptions> = {
    retry: { maximumAttempts: 3 },
    scheduleToStartTimeout: '30s',
    startToCloseTimeout: '2m',
  };
  if (req.op === 'list') {
    const where = primary ?? nodes.find((n) => n.reachable);
    if (!where)
      throw ApplicationFailure.nonRetryable(
        `no database of ${req.service} is reachable: ${nodes.map((n) => `${n.region}: ${n.error}`).join('; ')}`,
        'CasesUnreachable',
      );
    return {
      op: 'list',
      region: where.region,
      cases: await reconcilerIn(where.region, retry).reconcileCasesList(req.list),
    };
  }
  if (!primary)
    throw ApplicationFailure.nonRetryable(
      `${req.service} has no writable primary right now (${nodes.map((n) => `${n.region} ${n.reachable ? `${n.role}${n.fenced ? ', fenced' : ''}` : 'unreachable'}`).join('; ')}); cases are resolved in the primary`,
      'CasesUnreachable',
    );
  return {
    op: 'resolve',
    region: primary.region,
    result: await reconcilerIn(primary.region, retry).reconcileCasesResolve({ ...req.resolve, signed }),
  };
}
