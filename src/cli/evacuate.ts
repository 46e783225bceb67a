// `regionshift evacuate --region R [--service S …]`: move every service out of a region (failover
// where its writer is there, drain where it only serves traffic), a few at a time in priority
// order, and print one report. Exit: 0 all moved, 1 one failed, 2 bad input (no service uses the
// region), 3 refused (nothing failed, but one was refused: a run in progress, no target).
import { parseArgs } from 'node:util';
import { builtinRunbookPath, loadRunbook } from '../lib/runbooks';
import { connect, InputError } from '../lib/runs/client';
import { awaitEvacuation, buildEvacuateInput, startEvacuation } from '../lib/runs/evacuate';
import type { EvacuationReport } from '../../workflows/evacuate';
import { requester } from './identity';
import { loadConfig } from '../lib/config/load';
import { EXIT, guard } from './exit';

const USAGE =
  'usage: regionshift evacuate --region R [--service S]… [--mode planned|unplanned] [--by NAME] [--json] [--config FILE]';

export function formatEvacuation(r: EvacuationReport): string {
  const lines = [`evacuate ${r.region} (${r.mode}, at most ${r.maxConcurrent} at once): ${r.status.toUpperCase()}`];
  for (const e of r.services) {
    const took = e.startedAt && e.endedAt ? ` ${Date.parse(e.endedAt) - Date.parse(e.startedAt)} ms` : '';
    const facts = [
      e.rtoMs !== undefined ? `RTO ${e.rtoMs} ms` : '',
      e.rpo ? (e.rpo.zeroLoss ? 'RPO 0' : `RPO ${e.rpo.estimateSeconds ?? 'unknown'} s`) : '',
    ]
      .filter(Boolean)
      .join(', ');
    lines.push(
      `  ${e.status.padEnd(9)} ${e.service.padEnd(14)} ${e.action}${e.target && e.action === 'failover' ? ` → ${e.target}` : ''}${took}${facts ? `  ${facts}` : ''}`,
    );
    lines.push(`            ${e.reason}`);
    if (e.error) lines.push(`            error: ${e.error}`);
    if (e.runId) lines.push(`            run ${e.workflowId} ${e.runId}`);
  }
  return lines.join('\n');
}

export function evacuateExitCode(r: EvacuationReport): number {
  if (r.services.some((e) => e.status === 'failed')) return EXIT.failed;
  if (r.services.some((e) => e.status === 'refused')) return EXIT.refused;
  return EXIT.ok;
}

export function evacuateCommand(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  return guard(json, async () => {
    const { values } = parseArgs({
      args: argv,
      options: {
        region: { type: 'string' },
        service: { type: 'string', multiple: true },
        mode: { type: 'string', default: 'planned' },
        by: { type: 'string' },
        trigger: { type: 'string', default: 'cli' },
        config: { type: 'string' },
        json: { type: 'boolean', default: false },
      },
      strict: true,
    });
    if (!values.region) throw new InputError(`--region is required\n${USAGE}`);
    if (values.mode !== 'planned' && values.mode !== 'unplanned')
      throw new InputError(`--mode is planned or unplanned, not "${values.mode}"`);
    const cfg = loadConfig(values.config);
    const input = buildEvacuateInput(cfg, {
      region: values.region,
      services: values.service,
      mode: values.mode,
      requestedBy: requester(values.by),
      trigger: values.trigger,
      runbooks: {
        failover: loadRunbook(builtinRunbookPath('failover')),
        drain: loadRunbook(builtinRunbookPath('drain')),
      },
    });
    const client = await connect(cfg);
    const started = await startEvacuation(client, input);
    if (!json)
      console.log(
        `started ${started.workflowId} (run ${started.runId}): ${input.services.map((s) => s.service).join(', ')}`,
      );
    // Each service's progress as it changes; the report follows at the end.
    const seen = new Map<string, string>();
    const timer = json
      ? undefined
      : setInterval(() => {
          client.workflow
            .getHandle(started.workflowId, started.runId)
            .query<EvacuationReport>('evacuation')
            .then(
              (r) => {
                for (const e of r.services) {
                  const key = `${e.status}|${e.action}`;
                  if (e.status === 'pending' || seen.get(e.service) === key) continue;
                  seen.set(e.service, key);
                  console.log(
                    `  ${e.service}: ${e.status}${e.status === 'probing' ? '' : ` (${e.action}${e.action === 'failover' && e.target ? ` → ${e.target}` : ''})`}`,
                  );
                }
              },
              () => undefined,
            );
        }, 500);
    const report = await awaitEvacuation(client, started.workflowId, started.runId).finally(() => clearInterval(timer));
    console.log(json ? JSON.stringify(report) : formatEvacuation(report));
    return evacuateExitCode(report);
  });
}
