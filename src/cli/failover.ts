import { parseArgs } from 'node:util';
import { builtinRunbookPath, loadRunbook } from '../runbook/load';
import type { Mode, RunRecord } from '../runbook/types';
import { chooseTargetByPolicy } from '../runs/auto-target';
import { awaitRecord, buildRunInput, connect, InputError, startRun } from '../runs/client';
import { config, guard, requester } from './common';
import { EXIT } from './exit';
import { formatRecord, runUiUrl, stepLine } from './report';

const USAGE = 'usage: regionshift failover --service S --to REGION|auto [--from REGION] [--mode planned|unplanned] [--dry-run] [--join] [--no-wait] [--by NAME] [--json]';

export function failoverCommand(argv: string[], forceDryRun = false): Promise<number> {
  const json = argv.includes('--json');
  return guard(json, async () => {
    const { values } = parseArgs({
      args: argv,
      options: {
        service: { type: 'string' }, to: { type: 'string' }, from: { type: 'string' },
        mode: { type: 'string', default: 'planned' }, 'dry-run': { type: 'boolean', default: false },
        join: { type: 'boolean', default: false }, 'no-wait': { type: 'boolean', default: false },
        by: { type: 'string' }, trigger: { type: 'string', default: 'cli' }, runbook: { type: 'string' },
        config: { type: 'string' }, json: { type: 'boolean', default: false },
      },
      strict: true,
    });
    if (!values.service || !values.to) throw new InputError(`--service and --to are required\n${USAGE}`);
    if (values.mode !== 'planned' && values.mode !== 'unplanned') throw new InputError(`--mode is planned or unplanned, not "${values.mode}"`);
    const cfg = config(values.config);
    const runbook = loadRunbook(values.runbook ?? builtinRunbookPath('failover'));
    let client: Awaited<ReturnType<typeof connect>> | undefined;
    const base = { service: values.service, source: values.from, mode: values.mode as Mode, requestedBy: requester(values.by), trigger: values.trigger };
    // --to auto: the target policy picks (healthy, least lag, residency-allowed) from a dry run's topology.
    const auto = values.to === 'auto' ? await chooseTargetByPolicy((client = await connect(cfg)), cfg, runbook, base) : undefined;
    if (auto && !json) console.log(`target: ${auto.reason}`);
    const input = buildRunInput(cfg, runbook, {
      service: values.service, target: auto?.target ?? values.to, source: values.from, mode: values.mode as Mode,
      dryRun: forceDryRun || values['dry-run'], requestedBy: requester(values.by), trigger: values.trigger,
    });
    client ??= await connect(cfg);
    const run = await startRun(client, input, { join: values.join });
    const uiUrl = runUiUrl(cfg.temporal.uiUrl, cfg.temporal.namespace, run.workflowId, run.runId);
    if (!json) console.log(`${run.started ? 'started' : 'joined'} ${run.workflowId} (run ${run.runId})\n  ${uiUrl}`);
    if (values['no-wait']) {
      if (json) console.log(JSON.stringify({ workflowId: run.workflowId, runId: run.runId, started: run.started, uiUrl }));
      return EXIT.ok;
    }
    const stopFollowing = json ? () => undefined : follow(client, run.workflowId, run.runId);
    const rec = await awaitRecord(client, run.workflowId, run.runId);
    stopFollowing();
    if (json) console.log(JSON.stringify({ ...rec, uiUrl }));
    else console.log(`\n${formatRecord(rec, uiUrl)}`);
    return exitCodeOf(rec);
  });
}

export function exitCodeOf(rec: RunRecord): number {
  if (rec.status === 'succeeded') return EXIT.ok;
  // Preflight or a guard said no before anything changed.
  const changed = rec.steps.some((s) => s.status === 'done' && s.action !== 'preflight') || rec.compensation?.undone.length;
  return rec.status === 'failed' && !changed ? EXIT.refused : EXIT.failed;
}

/** Prints each step as it changes state, from the workflow's progress query. */
function follow(client: Awaited<ReturnType<typeof connect>>, workflowId: string, runId: string): () => void {
  const seen = new Map<string, string>();
  let announcedApproval = false;
  const timer = setInterval(() => {
    client.workflow.getHandle(workflowId, runId).query<RunRecord>('progress').then((rec) => {
      for (const s of rec.steps) {
        const key = `${s.status}|${s.detail ?? ''}|${s.error ?? ''}`;
        if (seen.get(s.id) !== key && s.status !== 'pending') {
          seen.set(s.id, key);
          console.log(stepLine(s));
        }
      }
      if (rec.pendingApproval && !announcedApproval) {
        announcedApproval = true;
        console.log(`  waiting for approval: ${rec.pendingApproval.reason}\n    regionshift approve ${rec.service} --by <you>   (or --reject)`);
      }
    }, () => undefined);
  }, 250);
  return () => clearInterval(timer);
}
