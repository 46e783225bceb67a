// Starting a run and following it to its end, shared by every command that starts one
// (failover, reconcile, failback): prints each step as it changes (or one JSON object with
// --json), then the run's record, and maps its outcome to an exit code.
import type { Client } from '@temporalio/client';
import type { Config } from '../lib/config/schema';
import type { RunInput, RunRecord } from '../contract/runbook/types';
import { awaitRecord, startRun } from '../lib/runs/client';
import { EXIT } from './exit';
import { formatRecord, runUiUrl, stepLine } from '../present/run';

export interface FollowOptions {
  json: boolean;
  /** Print the run's ids and return at once. */
  noWait?: boolean;
  /** Join a run already in progress instead of being refused. */
  join?: boolean;
  /** More lines after the record (a reconciliation's counts, a failback's traffic). */
  extra?: (rec: RunRecord) => string;
}

export async function startAndFollow(
  client: Client,
  cfg: Config,
  input: RunInput,
  opts: FollowOptions,
): Promise<number> {
  const { json } = opts;
  const run = await startRun(client, input, { join: opts.join });
  const uiUrl = runUiUrl(cfg.temporal.uiUrl, cfg.temporal.namespace, run.workflowId, run.runId);
  if (!json) console.log(`${run.started ? 'started' : 'joined'} ${run.workflowId} (run ${run.runId})\n  ${uiUrl}`);
  if (opts.noWait) {
    if (json)
      console.log(JSON.stringify({ workflowId: run.workflowId, runId: run.runId, started: run.started, uiUrl }));
    return EXIT.ok;
  }
  const stopFollowing = json ? () => undefined : follow(client, run.workflowId, run.runId);
  const rec = await awaitRecord(client, run.workflowId, run.runId);
  stopFollowing();
  if (json) console.log(JSON.stringify({ ...rec, uiUrl }));
  else console.log(`\n${formatRecord(rec, uiUrl)}${opts.extra ? `\n${opts.extra(rec)}` : ''}`);
  return exitCodeOf(rec);
}

export function exitCodeOf(rec: RunRecord): number {
  if (rec.status === 'succeeded') return EXIT.ok;
  // Preflight or a guard said no before anything changed.
  const changed =
    rec.steps.some((s) => s.status === 'done' && s.action !== 'preflight') || rec.compensation?.undone.length;
  return rec.status === 'failed' && !changed ? EXIT.refused : EXIT.failed;
}

/** Prints each step as it changes state, from the workflow's progress query. */
export function follow(client: Client, workflowId: string, runId: string): () => void {
  const seen = new Map<string, string>();
  let announcedApproval = false;
  const timer = setInterval(() => {
    client.workflow
      .getHandle(workflowId, runId)
      .query<RunRecord>('progress')
      .then(
        (rec) => {
          for (const s of rec.steps) {
            const key = `${s.status}|${s.detail ?? ''}|${s.error ?? ''}`;
            if (seen.get(s.id) !== key && s.status !== 'pending') {
              seen.set(s.id, key);
              console.log(stepLine(s));
            }
          }
          if (rec.pendingApproval && !announcedApproval) {
            announcedApproval = true;
            console.log(
              `  waiting for approval: ${rec.pendingApproval.reason}\n    regionshift approve ${rec.service} --by <you> --key <ssh key>   (or --reject)`,
            );
          }
        },
        () => undefined,
      );
  }, 250);
  return () => clearInterval(timer);
}
