import { parseArgs } from 'node:util';
import { connect, InputError, runRecord, workflowIdOf } from '../runs/client';
import { config, guard } from './common';
import { EXIT } from './exit';
import { formatRecord, runUiUrl } from './report';
import { formatAttachedAlarms, formatGuardian, guardianView } from '../intake/report';

export function statusCommand(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  return guard(json, async () => {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { config: { type: 'string' }, json: { type: 'boolean', default: false }, 'run-id': { type: 'string' } },
      allowPositionals: true,
      strict: true,
    });
    const cfg = config(values.config);
    const refs = positionals.length ? positionals : cfg.services.map((s) => s.name);
    if (refs.length > 1 && values['run-id']) throw new InputError('--run-id needs exactly one service');
    const client = await connect(cfg);
    const out: unknown[] = [];
    for (const ref of refs) {
      const workflowId = workflowIdOf(cfg, ref);
      // The service's guardian: debounce, cooldown (a held-back automatic failover shows here).
      const service = cfg.services.find((s) => workflowIdOf(cfg, s.name) === workflowId)?.name;
      const guardian = service ? await guardianView(client, service) : undefined;
      try {
        const rec = await runRecord(client, workflowId, values['run-id']);
        const uiUrl = runUiUrl(cfg.temporal.uiUrl, cfg.temporal.namespace, rec.workflowId, rec.runId);
        if (json) out.push({ ...rec, uiUrl, ...(guardian ? { guardian } : {}) });
        else console.log(`${formatRecord(rec, uiUrl)}${rec.alarms?.length ? `\n${formatAttachedAlarms(rec.alarms)}` : ''}${guardian ? `\n${formatGuardian(guardian)}` : ''}\n`);
      } catch (err) {
        if ((err as Error).name !== 'WorkflowNotFoundError') throw err;
        if (json) out.push({ workflowId, status: 'none', ...(guardian ? { guardian } : {}) });
        else console.log(`${ref}: no runs yet${guardian ? `\n${formatGuardian(guardian)}` : ''}\n`);
      }
    }
    if (json) console.log(JSON.stringify({ runs: out }));
    return EXIT.ok;
  });
}
