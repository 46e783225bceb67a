// reconcile.report: the reconciliation's audit record, assembled from what the new primary holds
// (every pass's classification and apply, verify, the cases as they stand now) and stored back
// with it. failback.checkCases reads the same record: failback may only rewind the old primary
// once reconciliation has read it, and only with no case open (or an override it records).
import { ApplicationFailure } from '@temporalio/common';
import type { Config } from '../../src/lib/config/schema';
import type {
  ApplyResult,
  CaseKind,
  ClassifyResult,
  FailbackCheckInput,
  FailbackCheckResult,
  ReconcileReport,
  ReportInput,
  VerifyResult,
} from '../../src/contract/reconcile';
import { rcNode, ReconcileFailure, withNode } from './db';
import { emptyRowCounts, emptyTxnCounts } from './rules';
import { appendAudit, readCases, storeExists, summaryOf } from './store';

interface RunRow {
  id: string;
  old_region: string;
  new_region: string;
  failover: { workflowId: string; runId: string } | null;
  pass: number;
  applied_pass: number;
  counts: Record<string, ClassifyResult>;
  applied: Record<string, ApplyResult>;
  verify: VerifyResult | null;
  audit: ReconcileReport['audit'];
  classified_at: Date | null;
  verified_at: Date | null;
}

export function createReport(config: Config, region: string) {
  async function reconcileReport(input: ReportInput): Promise<ReconcileReport> {
    const n = rcNode(config, input.service, region);
    return withNode(n, 'reporting', async (c) => {
      const run = (
        await c.query<RunRow>('SELECT * FROM regionshift.reconcile_runs WHERE id = $1', [input.reconciliationId])
      ).rows[0];
      if (!run)
        throw ApplicationFailure.nonRetryable(
          `no reconciliation ${input.reconciliationId} in ${n.where}`,
          ReconcileFailure.Stale,
        );
      const txn = emptyTxnCounts();
      const rows = emptyRowCounts();
      for (const p of Object.values(run.counts)) {
        for (const [k, v] of Object.entries(p.txn)) txn[k as keyof typeof txn] += v;
        for (const [k, v] of Object.entries(p.rows)) rows[k as keyof typeof rows] += v;
      }
      const applied = { transactions: 0, entries: 0, stateMoves: 0, duplicatesDropped: 0 };
      for (const a of Object.values(run.applied)) {
        applied.transactions += a.transactionsApplied;
        applied.entries += a.entriesApplied;
        applied.stateMoves += a.stateMoves;
        applied.duplicatesDropped += a.duplicatesDropped;
      }
      const cases = await readCases(c, 'reconciliation_id = $1', [input.reconciliationId]);
      const byKind: Partial<Record<CaseKind, number>> = {};
      for (const k of cases) byKind[k.kind] = (byKind[k.kind] ?? 0) + 1;
      const latest = run.counts[String(run.applied_pass || run.pass)];
      const report: ReconcileReport = {
        reconciliationId: run.id,
        oldRegion: run.old_region,
        newRegion: run.new_region,
        ...(run.failover ? { failover: run.failover } : {}),
        ...(latest
          ? {
              divergence: {
                ...latest.divergence,
                windowFrom: run.counts['1']?.divergence.windowFrom ?? latest.divergence.windowFrom,
              },
            }
          : {}),
        passes: run.applied_pass,
        txn,
        rows,
        applied,
        cases: {
          opened: cases.length,
          open: cases.filter((k) => k.status === 'open').length,
          byKind,
          list: cases.slice(0, 100).map(summaryOf),
        },
        ...(run.verify
          ? {
              verify: {
                ok: run.verify.ok,
                differences: run.verify.tables.reduce((s, t) => s + t.differences, 0),
                balanceMismatches: run.verify.balanceMismatches.length,
                ms: run.verify.ms,
                ...(run.verify.escalatedCase ? { escalatedCase: run.verify.escalatedCase } : {}),
              },
            }
          : {}),
        // Left running rather than deleted here: while cases are open a person may want to
        // query the old side beyond what the cases show (rows of tables the config does not
        // name, the state around a conflict), and deleting a database is a decision for the
        // person who closes the incident, not for a retry loop. Nothing is lost by deleting it:
        // the snapshot copy it was restored from stays, and a reconcile run restores it again.
        ...(input.oldSide
          ? {
              oldSide: {
                region: input.oldSide.region,
                cluster: input.oldSide.cluster,
                instance: input.oldSide.instance,
                snapshot: input.oldSide.snapshot,
                deleteCommands: input.oldSide.deleteCommands,
              },
            }
          : {}),
        audit: run.audit,
      };
      await appendAudit(c, run.id, {
        runId: input.runId,
        by: input.requestedBy,
        what: `report: ${report.cases.open} case(s) open`,
      });
      await c.query('UPDATE regionshift.reconcile_runs SET report = $2 WHERE id = $1', [
        run.id,
        JSON.stringify(report),
      ]);
      report.audit = (
        await c.query<{ audit: ReconcileReport['audit'] }>(
          'SELECT audit FROM regionshift.reconcile_runs WHERE id = $1',
          [run.id],
        )
      ).rows[0]!.audit;
      return report;
    });
  }

  async function failbackCheck(input: FailbackCheckInput): Promise<FailbackCheckResult> {
    const n = rcNode(config, input.service, region);
    return withNode(
      n,
      'checking-cases',
      async (c) => {
        const none: FailbackCheckResult = {
          reconciled: false,
          oldSideRead: false,
          verified: false,
          openCases: [],
          overridden: [],
          detail: '',
        };
        if (!(await storeExists(c))) return { ...none, detail: `no reconciliation has run against ${n.where}` };
        const run = (
          await c.query<RunRow>('SELECT * FROM regionshift.reconcile_runs WHERE id = $1', [input.reconciliationId])
        ).rows[0];
        // Every open case of the service counts: a case from an older failover is still money nobody has decided about.
        const open = (await readCases(c, "service = $1 AND status = 'open'", [input.service])).map(summaryOf);
        if (!run)
          return {
            ...none,
            openCases: open,
            detail: `reconciliation ${input.reconciliationId} has not run: the old primary's divergent writes have not been read`,
          };
        const verified = run.verified_at !== null;
        return {
          reconciled: run.applied_pass >= 1,
          oldSideRead: run.classified_at !== null,
          verified,
          openCases: open,
          overridden: [],
          detail: `reconciliation ${run.id}: ${run.applied_pass} pass(es) applied, ${verified ? 'verified' : 'not verified'}, ${open.length} case(s) open`,
        };
      },
      30_000,
    );
  }

  return { reconcileReport, failbackCheck };
}
