import { parseArgs } from 'node:util';
import { connect, InputError, runRecord, workflowIdOf } from '../runs/client';
import { config, guard } from './common';
import { EXIT } from './exit';
import { formatRecord, runUiUrl } from './report';

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
      try {
        const rec = await runRecord(client, workflowId, values['run-id']);
        const uiUrl = runUiUrl(cfg.temporal.uiUrl, cfg.temporal.namespace, rec.workflowId, rec.runId);
        if (json) out.push({ ...rec, uiUrl });
        else console.log(`${formatRecord(rec, uiUrl)}\n`);
      } catch (err) {
        if ((err as Error).name !== 'WorkflowNotFoundError') throw err;
        if (json) out.push({ workflowId, status: 'none' });
        else console.log(`${ref}: no runs yet\n`);
      }
    }
    if (json) console.log(JSON.stringify({ runs: out }));
    return EXIT.ok;
  });
}
