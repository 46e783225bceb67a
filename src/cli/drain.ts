// `regionshift drain --service S --region R` and `regionshift undrain --service S --region R`:
// take a region that is not the writer out of service and put it back (runbooks/drain.yaml,
// runbooks/undrain.yaml). Exit codes as every command: a drain of the writer or of the last
// region serving traffic is refused (3) by the run's preflight, with nothing changed.
import { parseArgs } from 'node:util';
import { loadServiceRunbook } from '../lib/runbooks';
import { connect, InputError } from '../lib/runs/client';
import { buildDrainInput, buildUndrainInput } from '../lib/runs/drain';
import type { RunRecord } from '../contract/runbook/types';
import { describeRecords } from '../contract/traffic/plan';
import { requester } from './identity';
import { guard } from './exit';
import { loadConfig } from '../lib/config/load';
import { startAndFollow } from './run-follow';

const USAGE = {
  drain:
    'usage: regionshift drain --service S --region R [--dry-run] [--by NAME] [--runbook FILE] [--no-wait] [--json] [--config FILE]',
  undrain:
    'usage: regionshift undrain --service S --region R [--by NAME] [--runbook FILE] [--no-wait] [--json] [--config FILE]',
};

/** The before and after lines under the run's record. */
export function formatDrainRun(rec: RunRecord): string {
  const d = rec.drain;
  if (!d) return '';
  const lines = [`${rec.kind} ${d.region}${d.writer ? ` (writer ${d.writer})` : ''}, Route 53 via ${d.via}`];
  if (d.before) lines.push(`  before: ${describeRecords(d.before.records)}`);
  if (d.after) lines.push(`  after:  ${describeRecords(d.after.records)}`);
  if (d.undoes) lines.push(`  undid drain ${d.undoes.runId}`);
  return lines.join('\n');
}

export function drainCommand(argv: string[], kind: 'drain' | 'undrain'): Promise<number> {
  const json = argv.includes('--json');
  return guard(json, async () => {
    const { values } = parseArgs({
      args: argv,
      options: {
        service: { type: 'string' },
        region: { type: 'string' },
        'dry-run': { type: 'boolean', default: false },
        by: { type: 'string' },
        trigger: { type: 'string', default: 'cli' },
        runbook: { type: 'string' },
        'no-wait': { type: 'boolean', default: false },
        config: { type: 'string' },
        json: { type: 'boolean', default: false },
      },
      strict: true,
    });
    if (!values.service || !values.region) throw new InputError(`--service and --region are required\n${USAGE[kind]}`);
    if (kind === 'undrain' && values['dry-run'])
      throw new InputError(`undrain has no --dry-run: it restores what the drain recorded\n${USAGE.undrain}`);
    const cfg = loadConfig(values.config);
    const runbook = await loadServiceRunbook(cfg, values.service, kind, values.runbook);
    const req = {
      service: values.service,
      region: values.region,
      requestedBy: requester(values.by),
      trigger: values.trigger,
      dryRun: values['dry-run'],
    };
    // Bad input (an unknown service or region) is reported before connecting to anything.
    const input = buildDrainInput(cfg, runbook, req);
    const client = await connect(cfg);
    const started = kind === 'undrain' ? await buildUndrainInput(client, cfg, runbook, req) : input;
    return startAndFollow(client, cfg, started, { json, noWait: values['no-wait'], extra: formatDrainRun });
  });
}
