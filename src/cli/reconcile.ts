// `regionshift reconcile --service S` and `regionshift failback --service S [--override-reason TEXT]`:
// both follow the service's latest unplanned failover (found in Temporal); see runbooks/reconcile.yaml
// and runbooks/failback.yaml.
import { parseArgs } from 'node:util';
import { loadServiceRunbook } from '../lib/runbooks';
import { connect, InputError } from '../lib/runs/client';
import { buildFollowUpInput } from '../lib/runs/reconcile';
import { requester } from './identity';
import { guard } from './exit';
import { loadConfig } from '../lib/config/load';
import { formatFailbackRun, formatReconcileRun } from './reconcile-report';
import { startAndFollow } from './run-follow';

const USAGE = {
  reconcile:
    'usage: regionshift reconcile --service S [--by NAME] [--runbook FILE] [--join] [--no-wait] [--json] [--config FILE]',
  failback:
    'usage: regionshift failback --service S [--override-reason TEXT] [--by NAME] [--runbook FILE] [--join] [--no-wait] [--json] [--config FILE]',
};

export function followUpCommand(argv: string[], kind: 'reconcile' | 'failback'): Promise<number> {
  const json = argv.includes('--json');
  return guard(json, async () => {
    const { values } = parseArgs({
      args: argv,
      options: {
        service: { type: 'string' },
        by: { type: 'string' },
        trigger: { type: 'string', default: 'cli' },
        runbook: { type: 'string' },
        join: { type: 'boolean', default: false },
        'no-wait': { type: 'boolean', default: false },
        config: { type: 'string' },
        json: { type: 'boolean', default: false },
        ...(kind === 'failback' ? { 'override-reason': { type: 'string' as const } } : {}),
      },
      strict: true,
    });
    if (!values.service) throw new InputError(`--service is required\n${USAGE[kind]}`);
    const cfg = loadConfig(values.config);
    const runbook = await loadServiceRunbook(cfg, values.service, kind, values.runbook);
    const client = await connect(cfg);
    const overrideReason = (values as { 'override-reason'?: string })['override-reason'];
    const input = await buildFollowUpInput(client, cfg, runbook, {
      service: values.service,
      requestedBy: requester(values.by),
      trigger: values.trigger,
      ...(overrideReason !== undefined ? { overrideReason } : {}),
    });
    if (!json)
      console.log(
        `${kind} of ${input.service} after failover ${input.handoff!.failoverRunId} (${input.handoff!.oldPrimary} → ${input.handoff!.newPrimary})`,
      );
    return startAndFollow(client, cfg, input, {
      json,
      noWait: values['no-wait'],
      join: values.join,
      extra: kind === 'reconcile' ? formatReconcileRun : formatFailbackRun,
    });
  });
}
