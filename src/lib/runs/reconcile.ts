// Starting reconciliation and failback runs, and reading and resolving cases, from outside
// Temporal (CLI, demo, Slack bot). Both runs follow an unplanned failover: its run record, found
// in Temporal's history of the service's runs, says which region diverged and from where, and
// what traffic looked like before it.
import { randomUUID } from 'node:crypto';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { Config } from '../config/schema';
import { CONTROL_TASK_QUEUE } from '../../contract/runbook/ids';
import type { RunbookDoc, RunInput, RunRecord } from '../../contract/runbook/types';
import type {
  CaseResolveInput,
  CaseResolveResult,
  CasesListInput,
  ReconcileCase,
  ReconcileHandoff,
} from '../../contract/reconcile';
import type { CasesOp, CasesRequest, CasesResponse } from '../../../workflows/reconcile-actions';
import { finishedRecords, findService, InputError, RefusedError } from './client';
import { signDecision, type DecisionSigner } from '../sign';
import { caseSubject } from '../../contract/approvals';
import { lagMsOf } from '../../contract/policy/target';

/** What an unplanned failover's record hands over to reconciliation and failback. */
export function handoffOf(rec: RunRecord): ReconcileHandoff {
  return {
    failoverWorkflowId: rec.workflowId,
    failoverRunId: rec.runId,
    oldPrimary: rec.reconcile?.oldPrimary ?? rec.source ?? '',
    newPrimary: rec.target,
    divergence: {
      ...(rec.promotion?.timeline !== undefined
        ? { timeline: rec.promotion.timeline }
        : rec.reconcile?.divergence?.timeline !== undefined
          ? { timeline: rec.reconcile.divergence.timeline }
          : {}),
      ...((rec.reconcile?.divergence?.lsn ?? rec.promotion?.before.lsn)
        ? { lsn: rec.reconcile?.divergence?.lsn ?? rec.promotion?.before.lsn }
        : {}),
      ...(rec.promotion?.before.lastReplayedCommitAt ? { at: rec.promotion.before.lastReplayedCommitAt } : {}),
      ...lagEvidenceOf(rec),
    },
    ...((rec.trafficBefore ?? rec.traffic?.before) ? { trafficBefore: rec.trafficBefore ?? rec.traffic?.before } : {}),
    ...(rec.endedAt ? { failoverEndedAt: rec.endedAt } : {}),
  };
}

/**
 * The failure time and the replication lag observed before promotion, as the failover's handoff
 * step recorded them; for a record from before it did, from the promotion's own evidence and the
 * run's start.
 */
function lagEvidenceOf(rec: RunRecord): Pick<ReconcileHandoff['divergence'], 'failedAt' | 'lagMs' | 'lagObservedAt'> {
  const d = rec.reconcile?.divergence;
  if (d?.failedAt) {
    return {
      failedAt: d.failedAt,
      ...(d.lagMs !== undefined ? { lagMs: d.lagMs } : {}),
      ...(d.lagObservedAt ? { lagObservedAt: d.lagObservedAt } : {}),
    };
  }
  const before = rec.promotion?.before;
  const lagMs = lagMsOf(before);
  return {
    failedAt: rec.startedAt,
    ...(lagMs !== undefined ? { lagMs, lagObservedAt: before!.lastHeardFromPrimaryAt! } : {}),
  };
}

export interface FoundFailover {
  record: RunRecord;
  handoff: ReconcileHandoff;
  /** Whether a failback of it has already succeeded. */
  failedBack: boolean;
}

/**
 * The latest succeeded unplanned failover of the service that asked for reconciliation, from the
 * newest runs of its workflow id backwards; a planned failover after it means the topology has
 * moved on. Undefined when there is none.
 */
export async function latestUnplannedFailover(
  client: Client,
  service: string,
  lookBack = 25,
): Promise<FoundFailover | undefined> {
  let failedBack = false;
  for await (const rec of finishedRecords(client, service, lookBack)) {
    if (rec.dryRun || rec.status !== 'succeeded') continue;
    if (rec.kind === 'failback') failedBack = true;
    if (rec.kind !== 'failover') continue;
    if (rec.mode === 'planned') return undefined;
    if (rec.reconcile?.required) return { record: rec, handoff: handoffOf(rec), failedBack };
  }
  return undefined;
}

export interface FollowUpRequest {
  service: string;
  requestedBy: string;
  trigger: string;
  /** Failback only: run despite open cases, with this reason recorded. */
  overrideReason?: string;
  /** The failover to follow; found in Temporal when absent. */
  handoff?: ReconcileHandoff;
}

/** A reconcile or failback RunInput for the service's latest unplanned failover. */
export async function buildFollowUpInput(
  client: Client,
  config: Config,
  runbook: RunbookDoc,
  req: FollowUpRequest,
): Promise<RunInput> {
  const service = findService(config, req.service);
  const kind = runbook.kind;
  if (kind !== 'reconcile' && kind !== 'failback')
    throw new InputError(`runbook ${runbook.file} is a ${kind} runbook; expected reconcile or failback`);
  let handoff = req.handoff;
  if (!handoff) {
    const found = await latestUnplannedFailover(client, service.name);
    if (!found)
      throw new RefusedError(
        `${service.name} has no unplanned failover to ${kind === 'reconcile' ? 'reconcile' : 'fail back from'}: the latest runs show none since the last planned one (regionshift status ${service.name})`,
      );
    if (found.failedBack)
      throw new RefusedError(
        `${service.name} already failed back from failover ${found.handoff.failoverRunId} (${found.handoff.oldPrimary} → ${found.handoff.newPrimary})`,
      );
    handoff = found.handoff;
  }
  if (!handoff.oldPrimary || !service.regions.includes(handoff.oldPrimary))
    throw new InputError(`the failover's old primary "${handoff.oldPrimary}" is not a region of ${service.name}`);
  if (kind === 'failback' && req.overrideReason !== undefined && req.overrideReason.trim() === '')
    throw new InputError("--override-reason needs a reason: it goes into the run's audit record");
  const failback = kind === 'failback';
  return {
    runbook,
    service: service.name,
    regions: service.regions,
    // reconcile: from the old primary (source) into the new one (target); failback: back again.
    mode: failback ? 'planned' : 'unplanned',
    source: failback ? handoff.newPrimary : handoff.oldPrimary,
    target: failback ? handoff.oldPrimary : handoff.newPrimary,
    dryRun: false,
    policy: service.policy,
    requestedBy: req.requestedBy,
    trigger: req.trigger,
    handoff,
    // A failback moves the cache back with the database (runbooks/failback.yaml, condition `cache`).
    ...(failback && service.cache ? { cache: true } : {}),
    ...(failback && req.overrideReason ? { override: { by: req.requestedBy, reason: req.overrideReason } } : {}),
    ...(failback && service.traffic.provider === 'route53' && service.traffic.routing === 'weighted'
      ? { trafficDrain: service.traffic.drain }
      : {}),
  };
}

// --- cases -----------------------------------------------------------------------------------

/** One workflow per call: a case decision's signature names it, so it cannot be replayed into another. */
function casesWorkflowId(service: string): string {
  return `regionshift-cases-${service}-${randomUUID()}`;
}

async function casesCall(
  client: Client,
  config: Config,
  service: string,
  req: CasesOp,
  workflowId = casesWorkflowId(service),
): Promise<CasesResponse> {
  const svc = findService(config, service);
  try {
    return await client.workflow.execute('reconcileCases', {
      taskQueue: CONTROL_TASK_QUEUE,
      workflowId,
      args: [{ ...req, service: svc.name, regions: svc.regions } as CasesRequest],
      workflowExecutionTimeout: '5m',
      staticSummary:
        req.op === 'resolve'
          ? `case ${req.resolve.caseId}: ${req.resolve.action} by ${req.resolve.by}`
          : `list cases of ${svc.name}`,
    });
  } catch (err) {
    if (err instanceof WorkflowFailedError) {
      let cause: unknown = err.cause;
      while (cause && !(cause instanceof ApplicationFailure) && (cause as { cause?: unknown }).cause)
        cause = (cause as { cause?: unknown }).cause;
      const message = (cause as Error | undefined)?.message ?? err.message;
      const type = cause instanceof ApplicationFailure ? cause.type : undefined;
      if (type === 'CaseNotFound') throw new InputError(message);
      if (type === 'CaseRefused' || type === 'CasesUnreachable' || type === 'ReconcileNotPrimary')
        throw new RefusedError(message);
      throw new Error(message);
    }
    throw err;
  }
}

/** The service's reconciliation cases (open by default), from its primary (or any reachable node). */
export async function listCases(client: Client, config: Config, input: CasesListInput): Promise<ReconcileCase[]> {
  const res = await casesCall(client, config, input.service, { op: 'list', list: input });
  return res.op === 'list' ? res.cases : [];
}

/**
 * Resolves a case as a person decided: accept or compensate books the case's proposal (never an
 * overwrite or a delete), reject books nothing; who, when and why are recorded with the case.
 * For the Slack bot's buttons as much as for `regionshift cases resolve`. Throws InputError for
 * an unknown case, RefusedError when the case cannot be resolved that way.
 */
export async function resolveCase(
  client: Client,
  config: Config,
  input: Omit<CaseResolveInput, 'signature' | 'signed'>,
  signer?: DecisionSigner,
): Promise<CaseResolveResult> {
  if (!['accept', 'reject', 'compensate'].includes(input.action))
    throw new InputError(`--action is accept, reject or compensate, not "${input.action}"`);
  if (!input.by) throw new InputError('a case is resolved by someone: --by NAME');
  const workflowId = casesWorkflowId(findService(config, input.service).name);
  const signature = signer
    ? await signDecision(signer, {
        kind: 'case',
        workflowId,
        runId: '',
        subject: caseSubject(input),
        by: input.by,
        groups: input.groups ?? [],
        reason: input.note ?? '',
      })
    : undefined;
  const res = await casesCall(
    client,
    config,
    input.service,
    { op: 'resolve', resolve: { ...input, ...(signature ? { signature } : {}) } },
    workflowId,
  );
  if (res.op !== 'resolve') throw new Error('unexpected answer from reconcileCases');
  return res.result;
}
