import { parseArgs } from 'node:util';
import { connect, InputError, isRunId, runRecord, workflowIdOf, workflowOfRun } from '../lib/runs/client';
import { loadConfig } from '../lib/config/load';
import { EXIT, guard } from './exit';
import { formatRecord, runUiUrl } from '../present/run';
import { formatAttachedAlarms, formatGuardian, guardianView } from '../present/guardian';
import { recordedReadiness } from '../lib/readiness';
import { formatReadiness, freshReadinessHint, readinessPredates } from '../present/readiness';

export function statusCommand(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  return guard(json, async () => {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { config: { type: 'string' }, json: { type: 'boolean', default: false }, 'run-id': { type: 'string' } },
      allowPositionals: true,
      strict: true,
    });
    const cfg = loadConfig(values.config);
    const refs = positionals.length ? positionals : cfg.services.map((s) => s.name);
    if (refs.length > 1 && values['run-id']) throw new InputError('--run-id needs exactly one service');
    const client = await connect(cfg);
    const out: unknown[] = [];
    for (const ref of refs) {
      // A run's id, as `failover` prints it, is found among the services' runs.
      const byRun = isRunId(ref);
      const runId = byRun ? ref : values['run-id'];
      const workflowId = byRun ? await workflowOfRun(client, cfg, ref) : workflowIdOf(cfg, ref);
      // The service's guardian: debounce, cooldown (a held-back automatic failover shows here).
      const service = cfg.services.find((s) => workflowIdOf(cfg, s.name) === workflowId)?.name;
      const guardian = service ? await guardianView(client, service) : undefined;
      // Whether it could fail over now, as the readiness schedule last found (regionshift readiness).
      const readiness = service ? await recordedReadiness(client, service) : undefined;
      const extra = { ...(guardian ? { guardian } : {}), ...(readiness ? { readiness } : {}) };
      const readinessText = (stale: boolean) =>
        readiness
          ? `\nreadiness${stale ? ` (${freshReadinessHint(readiness.service)})` : ''}: ${formatReadiness(readiness)}`
          : '';
      const guardianText = guardian ? `\n${formatGuardian(guardian)}` : '';
      try {
        const rec = await runRecord(client, workflowId, runId);
        const stale = readiness !== undefined && readinessPredates(readiness, rec);
        const uiUrl = runUiUrl(cfg.temporal.uiUrl, cfg.temporal.namespace, rec.workflowId, rec.runId);
        if (json) out.push({ ...rec, uiUrl, ...extra, ...(readiness ? { readinessStale: stale } : {}) });
        else
          console.log(
            `${formatRecord(rec, uiUrl)}${rec.alarms?.length ? `\n${formatAttachedAlarms(rec.alarms)}` : ''}${guardianText}${readinessText(stale)}\n`,
          );
      } catch (err) {
        if ((err as Error).name !== 'WorkflowNotFoundError') throw err;
        if (json) out.push({ workflowId, status: 'none', ...extra });
        else console.log(`${ref}: no runs yet${guardianText}${readinessText(false)}\n`);
      }
    }
    if (json) console.log(JSON.stringify({ runs: out }));
    return EXIT.ok;
  });
}
