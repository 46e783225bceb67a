// What the demo shows for each run: the run's own record (steps, timings, approvals) plus what
// only the application can tell: how many acknowledged writes the new primary is missing.
import type { TrafficState } from '../contract/activities';
import { formatRecord } from '../present/run';
import { formatFailbackRun, formatReconcileReport } from '../cli/reconcile-report';
import type { Mode, RunRecord } from '../contract/runbook/types';
import type { RowClass, TxnClass } from '../contract/reconcile';
import { describeRegions, type DemoRegion } from './topology';

export interface DemoStep {
  id: string;
  title: string;
  status: string;
  region: string | null;
  startedAt: string | null;
  endedAt: string | null;
  detail?: string;
  error?: string;
}

export interface DemoRun {
  workflowId: string;
  runId: string;
  mode: Mode;
  source: string | null;
  target: string;
  status: RunRecord['status'];
  /** Who started the run and why: the demo itself, or the guardian with `alarm:<source>:<name>`. */
  requestedBy: string;
  trigger: string;
  /** Runs the guardian started after a kill: kill → alerts → run started, the part of the RTO that is detection. */
  detection: Detection | null;
  steps: DemoStep[];
  /** First alarm (the failure) or start → writes accepted in the target, as the workflow measured it. */
  rtoMs: number | null;
  /** Same interval as the application saw it: trigger → first transfer the target committed. */
  clientRtoMs: number | null;
  /** Writes the old primary acknowledged that the new primary does not have: the RPO in transactions. */
  lostWrites: number;
  /** Writes the old primary acknowledged (the denominator of lostWrites). */
  writesAcked: number;
  /** Unplanned runs: the replication evidence the workflow recorded at promotion. */
  rpo: RunRecord['rpo'] | null;
  approvals: RunRecord['approvals'];
  /** Every region's database once the run ended, asked directly: the standbys must follow the writer. */
  regionsAfter: DemoRegion[];
  /** The stack's banking application, when the config has one (stack.app). */
  app: DemoAppFollow | null;
  error?: string;
  uiUrl: string;
}

/** The banking application (src/demo/app.ts) once a run that moves the writer has ended. */
export interface DemoAppFollow {
  /** The region it writes to now. */
  primary: string;
  /** The Idempotency-Key the run's tell-app step told it with; null when this run did not tell it. */
  toldWith: string | null;
  /** Its last committed write, and the region whose server committed it. */
  lastWrite: { id: string; region: string } | null;
  /** That write is in the writer's database (asked there). */
  inWriter: boolean;
}

export function formatAppFollow(app: DemoAppFollow, writer: string): string {
  const told = app.toldWith ? `told by the run (Idempotency-Key ${app.toldWith})` : 'not told by this run';
  const last = app.lastWrite
    ? `its last write ${app.lastWrite.id} is ${app.inWriter ? '' : 'NOT '}in ${writer}'s database`
    : 'no write committed yet';
  return `application: writes to ${app.primary}, ${told}; ${last}`;
}

/** A region killed with nobody starting anything: when, and how long until the guardian's run started. */
export interface Detection {
  killedAt: string;
  runStartedAt: string;
  /** Kill → the guardian's run started: probes failing, the alert's `for:`, Alertmanager, the intake, debounce and quorum. */
  detectedMs: number;
  /** Kill → writes accepted in the target, by the run's own clock (its end of verify): detection included. */
  rtoFromKillMs: number | null;
}

export function detectionOf(rec: RunRecord, killedAt: number): Detection {
  const started = Date.parse(rec.startedAt);
  const verify = rec.steps.find((s) => s.action === 'app.verifyWrites' && s.status === 'done');
  return {
    killedAt: new Date(killedAt).toISOString(),
    runStartedAt: rec.startedAt,
    detectedMs: started - killedAt,
    rtoFromKillMs: verify?.endedAt ? Date.parse(verify.endedAt) - killedAt : null,
  };
}

export function toDemoRun(
  rec: RunRecord,
  facts: {
    uiUrl: string;
    lostWrites: number;
    writesAcked: number;
    clientRtoMs: number | undefined;
    regionsAfter?: DemoRegion[];
    killedAt?: number;
    app?: DemoAppFollow | null;
  },
): DemoRun {
  return {
    workflowId: rec.workflowId,
    runId: rec.runId,
    mode: rec.mode,
    source: rec.source ?? null,
    target: rec.target,
    status: rec.status,
    requestedBy: rec.requestedBy,
    trigger: rec.trigger,
    detection: facts.killedAt !== undefined ? detectionOf(rec, facts.killedAt) : null,
    steps: rec.steps.map((s) => ({
      id: s.id,
      title: s.title,
      status: s.status,
      region: s.region ?? null,
      startedAt: s.startedAt ?? null,
      endedAt: s.endedAt ?? null,
      ...(s.detail ? { detail: s.detail } : {}),
      ...(s.error ? { error: s.error } : {}),
    })),
    rtoMs: rec.rtoMs ?? null,
    clientRtoMs: facts.clientRtoMs ?? null,
    lostWrites: facts.lostWrites,
    writesAcked: facts.writesAcked,
    rpo: rec.rpo ?? null,
    approvals: rec.approvals,
    regionsAfter: facts.regionsAfter ?? [],
    app: facts.app ?? null,
    ...(rec.error ? { error: rec.error } : {}),
    uiUrl: facts.uiUrl,
  };
}

export function formatDemoRun(rec: RunRecord, run: DemoRun): string {
  const lines = [formatRecord(rec, run.uiUrl), ''];
  lines.push(`lost writes: ${run.lostWrites} of ${run.writesAcked} acknowledged by ${run.source ?? '?'}`);
  const client =
    run.clientRtoMs === null
      ? 'no write accepted yet'
      : `${run.clientRtoMs} ms until the first transfer committed in ${run.target}`;
  lines.push(`RTO: ${run.rtoMs ?? '?'} ms (workflow, to verified writes); ${client} (application)`);
  if (run.detection)
    lines.push(
      `detection: the guardian started the run ${run.detection.detectedMs} ms after the kill (${run.trigger}); the RTO above includes it`,
    );
  if (run.regionsAfter.length) lines.push(`databases now: ${describeRegions(run.regionsAfter)}`);
  if (run.app)
    lines.push(formatAppFollow(run.app, run.status === 'succeeded' ? run.target : (run.source ?? run.target)));
  return lines.join('\n');
}

/** A drain or undrain of a region that is not the writer: the records before and after, and the databases. */
export interface DemoDrain {
  workflowId: string;
  runId: string;
  kind: 'drain' | 'undrain';
  region: string;
  status: RunRecord['status'];
  /** The writer the run found and left alone. */
  writer: string | null;
  requestedBy: string;
  trigger: string;
  /** Drains the guardian started after the kill: kill → run started. */
  detection: Detection | null;
  steps: DemoStep[];
  trafficBefore: Record<string, number | string>;
  trafficAfter: Record<string, number | string>;
  regionsAfter: DemoRegion[];
  error?: string;
  uiUrl: string;
}

export function toDemoDrain(
  rec: RunRecord,
  facts: { uiUrl: string; regionsAfter: DemoRegion[]; killedAt?: number },
): DemoDrain {
  return {
    workflowId: rec.workflowId,
    runId: rec.runId,
    kind: rec.kind === 'undrain' ? 'undrain' : 'drain',
    region: rec.target,
    status: rec.status,
    writer: rec.drain?.writer ?? null,
    requestedBy: rec.requestedBy,
    trigger: rec.trigger,
    detection: facts.killedAt !== undefined ? detectionOf(rec, facts.killedAt) : null,
    steps: stepsOf(rec),
    trafficBefore: weightsOf(rec.drain?.before),
    trafficAfter: weightsOf(rec.drain?.after),
    regionsAfter: facts.regionsAfter,
    ...(rec.error ? { error: rec.error } : {}),
    uiUrl: facts.uiUrl,
  };
}

export function formatDemoDrain(rec: RunRecord, d: DemoDrain): string {
  return [
    formatRecord(rec, d.uiUrl),
    '',
    `traffic: ${JSON.stringify(d.trafficBefore)} → ${JSON.stringify(d.trafficAfter)}`,
    `started by ${d.requestedBy} (${d.trigger})${d.detection ? `, ${d.detection.detectedMs} ms after the kill` : ''}`,
    `databases now: ${describeRegions(d.regionsAfter)}`,
  ].join('\n');
}

/** A reconciliation in the demo: the run's own counts, and what the application can check. */
export interface DemoReconciliation {
  workflowId: string;
  runId: string;
  status: RunRecord['status'];
  oldRegion: string;
  newRegion: string;
  steps: DemoStep[];
  /** Transactions per class (only-old = lost, only-new, identical, same-id-different-payload, replicated). */
  transactions: Record<TxnClass, number>;
  /** Mutable rows per class. */
  rows: Record<RowClass, number>;
  transactionsReapplied: number;
  entriesReapplied: number;
  stateMoves: number;
  duplicatesDropped: number;
  casesOpened: number;
  casesOpen: number;
  casesByKind: Record<string, number>;
  /** Cases the demo's on-call decided so that failback could run. */
  casesResolved: { id: string; kind: string; action: string; by: string }[];
  verified: boolean;
  /** Writes the old primary acknowledged that the new one was missing before reconciliation… */
  missingBefore: number;
  /** …and after it, neither present nor held in a case (must be 0). */
  missingAfter: number;
  error?: string;
  uiUrl: string;
}

/** The failback in the demo: the run, and its RPO as the application saw it (must be zero). */
export interface DemoFailback {
  workflowId: string;
  runId: string;
  status: RunRecord['status'];
  source: string | null;
  target: string;
  steps: DemoStep[];
  /** lostWrites: writes the source acknowledged during the failback that the target lacks. */
  rpo: { lostWrites: number; writesAcked: number; zeroLoss: boolean };
  rtoMs: number | null;
  /** Traffic weights before the failover (what failback restores) and after the failback. */
  trafficBefore: Record<string, number | string>;
  trafficAfter: Record<string, number | string>;
  override: { by: string; reason: string } | null;
  regionsAfter: DemoRegion[];
  app: DemoAppFollow | null;
  error?: string;
  uiUrl: string;
}

function stepsOf(rec: RunRecord): DemoStep[] {
  return toDemoRun(rec, { uiUrl: '', lostWrites: 0, writesAcked: 0, clientRtoMs: undefined }).steps;
}

export function toDemoReconciliation(
  rec: RunRecord,
  facts: {
    uiUrl: string;
    missingBefore: number;
    missingAfter: number;
    casesResolved: DemoReconciliation['casesResolved'];
  },
): DemoReconciliation {
  const rep = rec.reconciliation?.report;
  const apply = rec.reconciliation?.apply;
  return {
    workflowId: rec.workflowId,
    runId: rec.runId,
    status: rec.status,
    oldRegion: rec.source ?? '',
    newRegion: rec.target,
    steps: stepsOf(rec),
    transactions: rep?.txn ?? {
      'only-old': 0,
      'only-new': 0,
      identical: 0,
      'same-id-different-payload': 0,
      replicated: 0,
    },
    rows: rep?.rows ?? {
      'state-forward': 0,
      'update-update': 0,
      'update-delete': 0,
      'unique-key-collision': 0,
      'conflicting-state': 0,
      'lost-insert': 0,
      'identical-row': 0,
    },
    transactionsReapplied: rep?.applied.transactions ?? apply?.transactionsApplied ?? 0,
    entriesReapplied: rep?.applied.entries ?? apply?.entriesApplied ?? 0,
    stateMoves: rep?.applied.stateMoves ?? 0,
    duplicatesDropped: rep?.applied.duplicatesDropped ?? 0,
    casesOpened: rep?.cases.opened ?? 0,
    casesOpen: rep?.cases.open ?? 0,
    casesByKind: (rep?.cases.byKind ?? {}) as Record<string, number>,
    casesResolved: facts.casesResolved,
    verified: rep?.verify?.ok === true,
    missingBefore: facts.missingBefore,
    missingAfter: facts.missingAfter,
    ...(rec.error ? { error: rec.error } : {}),
    uiUrl: facts.uiUrl,
  };
}

const weightsOf = (t: TrafficState | undefined): Record<string, number | string> =>
  Object.fromEntries(
    (t?.records ?? []).map((r) =>
      r.location !== undefined ? [r.location, r.region] : [r.region, r.weight ?? r.failover ?? r.routingControl ?? ''],
    ),
  );

export function toDemoFailback(
  rec: RunRecord,
  facts: {
    uiUrl: string;
    lostWrites: number;
    writesAcked: number;
    trafficBefore?: TrafficState;
    trafficAfter?: TrafficState;
    regionsAfter: DemoRegion[];
    app?: DemoAppFollow | null;
  },
): DemoFailback {
  return {
    workflowId: rec.workflowId,
    runId: rec.runId,
    status: rec.status,
    source: rec.source ?? null,
    target: rec.target,
    steps: stepsOf(rec),
    rpo: { lostWrites: facts.lostWrites, writesAcked: facts.writesAcked, zeroLoss: rec.rpo?.zeroLoss === true },
    rtoMs: rec.rtoMs ?? null,
    trafficBefore: weightsOf(facts.trafficBefore),
    trafficAfter: weightsOf(facts.trafficAfter),
    override: rec.failback?.override ?? null,
    regionsAfter: facts.regionsAfter,
    app: facts.app ?? null,
    ...(rec.error ? { error: rec.error } : {}),
    uiUrl: facts.uiUrl,
  };
}

export function formatDemoReconciliation(rec: RunRecord, r: DemoReconciliation): string {
  const lines = [formatRecord(rec, r.uiUrl), ''];
  if (rec.reconciliation?.report) lines.push(formatReconcileReport(rec.reconciliation.report), '');
  for (const c of r.casesResolved) lines.push(`case ${c.id} (${c.kind}) resolved: ${c.action} by ${c.by}`);
  lines.push(
    `lost writes: ${r.missingBefore} missing in ${r.newRegion} before reconciliation, ${r.missingAfter} after (neither present nor held in a case)`,
  );
  return lines.join('\n');
}

export function formatDemoFailback(rec: RunRecord, f: DemoFailback): string {
  const lines = [formatRecord(rec, f.uiUrl), formatFailbackRun(rec), ''];
  lines.push(
    `RPO of the failback: ${f.rpo.lostWrites} of ${f.rpo.writesAcked} writes ${f.source ?? '?'} acknowledged during it are missing in ${f.target}${f.rpo.zeroLoss ? ' (fenced, lag confirmed zero)' : ''}`,
  );
  lines.push(`traffic: ${JSON.stringify(f.trafficAfter)} (before the failover: ${JSON.stringify(f.trafficBefore)})`);
  if (f.regionsAfter.length) lines.push(`databases now: ${describeRegions(f.regionsAfter)}`);
  if (f.app) lines.push(formatAppFollow(f.app, f.status === 'succeeded' ? f.target : (f.source ?? f.target)));
  return lines.join('\n');
}
