// Cases: what reconciliation put in front of a person, kept in regionshift.reconcile_cases on the
// primary. Listing works on any node (standbys have the replicated table); resolving books the
// chosen proposal (a compensating entry, a re-applied transaction, a state move: never an
// overwrite or a delete) in one transaction with the same invariant checks as apply, and records
// who decided what. Resolving twice the same way is a no-op; differently, a refusal.
import { ApplicationFailure } from '@temporalio/common';
import type { Config } from '../../src/lib/config/schema';
import type { CaseResolveInput, CaseResolveResult, CasesListInput, ReconcileCase } from '../../src/contract/reconcile';
import { bookTxns, checkInvariants, moveStates } from './book';
import { rcConfig, rcNode, ReconcileFailure, requireWritablePrimary, withNode } from './db';
import { CASE_COLUMNS, caseOf, ensureStore, readCases, storeExists } from './store';

export function createCases(config: Config, region: string) {
  async function reconcileCasesList(input: CasesListInput): Promise<ReconcileCase[]> {
    const n = rcNode(config, input.service, region);
    return withNode(
      n,
      'listing-cases',
      async (c) => {
        if (!(await storeExists(c))) return [];
        const where = ['service = $1'];
        const params: unknown[] = [input.service];
        const status = input.status ?? 'open';
        if (status !== 'all') {
          params.push(status);
          where.push(`status = $${params.length}`);
        }
        if (input.reconciliationId) {
          params.push(input.reconciliationId);
          where.push(`reconciliation_id = $${params.length}`);
        }
        return readCases(c, where.join(' AND '), params);
      },
      30_000,
    );
  }

  async function reconcileCasesResolve(input: CaseResolveInput): Promise<CaseResolveResult> {
    const cfg = rcConfig(config, input.service);
    const n = rcNode(config, input.service, region);
    const refuse = (message: string): never => {
      throw ApplicationFailure.nonRetryable(message, ReconcileFailure.CaseRefused);
    };
    return withNode(
      n,
      'resolving-case',
      async (c) => {
        await requireWritablePrimary(c, n, 'resolving a case');
        await ensureStore(c);
        await c.query('BEGIN');
        try {
          const row = (
            await c.query(
              `SELECT ${CASE_COLUMNS} FROM regionshift.reconcile_cases WHERE id = $1 AND service = $2 FOR UPDATE`,
              [input.caseId, input.service],
            )
          ).rows[0];
          if (!row)
            throw ApplicationFailure.nonRetryable(
              `no case ${input.caseId} for ${input.service}; list them with: regionshift cases list --service ${input.service}`,
              ReconcileFailure.CaseNotFound,
            );
          const current = caseOf(row);
          if (current.status === 'resolved') {
            await c.query('ROLLBACK');
            if (current.resolution === input.action)
              return {
                case: current,
                changed: false,
                detail: `already resolved (${current.resolution}) by ${current.resolvedBy} at ${current.resolvedAt}`,
              };
            return refuse(
              `case ${current.id} was already resolved with ${current.resolution} by ${current.resolvedBy} at ${current.resolvedAt}; a decision is not taken back (book a new correcting transaction instead)`,
            );
          }
          const offered = ['reject', ...Object.keys(current.proposals)].sort();
          let outcome: Record<string, unknown> = { booked: 0, entries: 0, stateMoves: 0 };
          let detail = `${input.action} by ${input.by}: nothing booked (the new region's version stands)`;
          if (input.action !== 'reject') {
            const p = current.proposals[input.action];
            if (!p) refuse(`case ${current.id} (${current.kind}) offers ${offered.join(', ')}, not ${input.action}`);
            const proposal = p!;
            const run = (
              await c.query<{ old_region: string }>('SELECT old_region FROM regionshift.reconcile_runs WHERE id = $1', [
                current.reconciliationId,
              ])
            ).rows[0];
            const booked = await bookTxns(c, cfg, region, proposal.transactions, {
              reconciliationId: current.reconciliationId,
              sourceRegion: run?.old_region ?? '?',
              how: `case ${current.id}: ${input.action} by ${input.by}`,
              caseId: current.id,
            });
            let moved = 0;
            try {
              moved = await moveStates(c, cfg, proposal.stateMoves);
            } catch (err) {
              if (err instanceof ApplicationFailure && err.type === ReconcileFailure.Stale)
                refuse(
                  `case ${current.id}: ${err.message}; look at the row again and decide anew (reject, then book a correcting transaction)`,
                );
              throw err;
            }
            const ids = proposal.transactions.map((t) => String(t.journal[cfg.journal.id]));
            try {
              await checkInvariants(c, cfg, {
                txnIds: ids,
                expectedEntries: proposal.transactions.reduce((s, t) => s + t.entries.length, 0),
                debited: [...booked.deltas].filter(([, d]) => d < 0).map(([a]) => a),
                allowNegative: proposal.allowNegative,
              });
            } catch (err) {
              if (err instanceof ApplicationFailure)
                refuse(`case ${current.id}: ${input.action} refused: ${err.message}`);
              throw err;
            }
            outcome = {
              booked: booked.journalInserted.length,
              entries: booked.entriesInserted,
              stateMoves: moved,
              transactions: ids,
            };
            detail = `${input.action} by ${input.by}: ${proposal.description} (${booked.journalInserted.length} transaction(s), ${booked.entriesInserted} entries, ${moved} state move(s) booked)`;
          }
          const updated = (
            await c.query(
              `UPDATE regionshift.reconcile_cases SET status = 'resolved', resolution = $2, resolved_by = $3, resolved_at = now(), note = $4, outcome = $5
            WHERE id = $1 RETURNING ${CASE_COLUMNS}`,
              [current.id, input.action, input.by, input.note ?? null, JSON.stringify(outcome)],
            )
          ).rows[0];
          await c.query(
            `UPDATE regionshift.reconcile_runs SET audit = audit || jsonb_build_array(jsonb_build_object('runId', 'case', 'by', $2::text, 'at', now(), 'what', $3::text)) WHERE id = $1`,
            [
              current.reconciliationId,
              input.by,
              `case ${current.id} ${detail}${input.signed ? ` (signed: ${input.signed})` : ''}`,
            ],
          );
          await c.query('COMMIT');
          return { case: caseOf(updated), changed: true, detail };
        } catch (err) {
          await c.query('ROLLBACK').catch(() => undefined);
          throw err;
        }
      },
      60_000,
    );
  }

  return { reconcileCasesList, reconcileCasesResolve };
}
