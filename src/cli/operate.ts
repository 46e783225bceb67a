import { parseArgs } from 'node:util';
import type { OperatorAction } from '../contract/runbook/types';
import { connect, InputError, operateRun, workflowIdOf } from '../lib/runs/client';
import { requester, signerOf } from './identity';
import { loadConfig } from '../lib/config/load';
import { EXIT, guard } from './exit';

/**
 * `retry|skip|compensate <run>`: what to do with a failed step that waits for a person
 * (onFailure: ask); `pause|resume <run>`: hold the run between steps. Signed with --key like an
 * approval; the run verifies the signature and records who and why.
 */
export function operateCommand(argv: string[], action: OperatorAction): Promise<number> {
  const json = argv.includes('--json');
  return guard(json, async () => {
    const { values, positionals } = parseArgs({
      args: argv,
      options: {
        by: { type: 'string' },
        key: { type: 'string' },
        reason: { type: 'string' },
        config: { type: 'string' },
        json: { type: 'boolean', default: false },
      },
      allowPositionals: true,
      strict: true,
    });
    if (positionals.length !== 1)
      throw new InputError(`usage: regionshift ${action} <service|run-id> --by NAME --key SSH_KEY --reason TEXT`);
    if (!values.reason) throw new InputError(`${action} needs --reason: it goes into the run's record`);
    const cfg = loadConfig(values.config);
    const workflowId = workflowIdOf(cfg, positionals[0]!);
    const signer = signerOf(values.key, `a ${action}`);
    const client = await connect(cfg);
    const verdict = await operateRun(
      client,
      workflowId,
      { action, by: requester(values.by), reason: values.reason },
      signer,
    );
    if (json) console.log(JSON.stringify({ workflowId, verdict }));
    else console.log(`${workflowId}: ${verdict}`);
    return EXIT.ok;
  });
}
