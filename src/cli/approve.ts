import { parseArgs } from 'node:util';
import { abortRun, approveRun, connect, InputError, workflowIdOf } from '../lib/runs/client';
import { requester, signerOf } from './identity';
import { loadConfig } from '../lib/config/load';
import { EXIT, guard } from './exit';

/** `approve <run> [--reject]` and `abort <run> --reason`: updates signed with --key that the run verifies. */
export function approveCommand(argv: string[], kind: 'approve' | 'abort'): Promise<number> {
  const json = argv.includes('--json');
  return guard(json, async () => {
    const { values, positionals } = parseArgs({
      args: argv,
      options: {
        by: { type: 'string' },
        key: { type: 'string' },
        reason: { type: 'string' },
        reject: { type: 'boolean', default: false },
        config: { type: 'string' },
        json: { type: 'boolean', default: false },
      },
      allowPositionals: true,
      strict: true,
    });
    if (positionals.length !== 1)
      throw new InputError(
        `usage: regionshift ${kind} <service|run-id> --by NAME --key SSH_KEY${kind === 'abort' ? ' --reason TEXT' : ' [--reject] [--reason TEXT]'}`,
      );
    if (kind === 'abort' && !values.reason)
      throw new InputError("abort needs --reason: it goes into the run's audit record");
    const cfg = loadConfig(values.config);
    const workflowId = workflowIdOf(cfg, positionals[0]!);
    const signer = signerOf(values.key, `an ${kind === 'abort' ? 'abort' : 'approval'}`);
    const client = await connect(cfg);
    const by = requester(values.by);
    const verdict =
      kind === 'abort'
        ? await abortRun(client, workflowId, { by, reason: values.reason! }, signer)
        : await approveRun(
            client,
            workflowId,
            { by, decision: values.reject ? 'reject' : 'approve', reason: values.reason },
            signer,
          );
    if (json) console.log(JSON.stringify({ workflowId, verdict }));
    else console.log(`${workflowId}: ${verdict}`);
    return EXIT.ok;
  });
}
