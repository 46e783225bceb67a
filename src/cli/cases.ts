// `regionshift cases list --service S [--all] [--json]` and
// `regionshift cases resolve <id> --service S --by NAME --key SSH_KEY --action accept|reject|compensate [--note TEXT]`:
// the cases reconciliation put in front of a person, read from and resolved in the service's
// primary database (through its region's worker, so this needs no database credentials).
import { parseArgs } from 'node:util';
import type { CaseAction } from '../contract/reconcile';
import { connect, InputError } from '../lib/runs/client';
import { listCases, resolveCase } from '../lib/runs/reconcile';
import { requester, signerOf } from './identity';
import { loadConfig } from '../lib/config/load';
import { EXIT, guard } from './exit';
import { formatCase } from './reconcile-report';

const USAGE = `usage: regionshift cases list [--service S] [--all | --resolved] [--id ID] [--json]
       regionshift cases resolve <id> [--service S] --by NAME --key SSH_KEY --action accept|reject|compensate [--note TEXT] [--json]`;

export function casesCommand(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  return guard(json, async () => {
    const [sub, ...rest] = argv;
    const { values, positionals } = parseArgs({
      args: rest,
      options: {
        service: { type: 'string' },
        all: { type: 'boolean', default: false },
        resolved: { type: 'boolean', default: false },
        id: { type: 'string' },
        by: { type: 'string' },
        key: { type: 'string' },
        action: { type: 'string' },
        note: { type: 'string' },
        config: { type: 'string' },
        json: { type: 'boolean', default: false },
      },
      allowPositionals: true,
      strict: true,
    });
    const cfg = loadConfig(values.config);
    const service = values.service ?? (cfg.services.length === 1 ? cfg.services[0]!.name : undefined);
    if (!service)
      throw new InputError(
        `--service is required (the config has ${cfg.services.map((s) => s.name).join(', ')})\n${USAGE}`,
      );
    if (sub === 'list') {
      const client = await connect(cfg);
      const status = values.all ? 'all' : values.resolved ? 'resolved' : 'open';
      const cases = (await listCases(client, cfg, { service, status })).filter((c) => !values.id || c.id === values.id);
      if (json) console.log(JSON.stringify({ service, cases }));
      else if (cases.length === 0)
        console.log(`${service}: no ${status === 'all' ? '' : `${status} `}reconciliation cases`);
      else console.log(cases.map((c) => formatCase(c, Boolean(values.id))).join('\n'));
      return EXIT.ok;
    }
    if (sub === 'resolve') {
      if (positionals.length !== 1) throw new InputError(`name one case\n${USAGE}`);
      if (!values.action) throw new InputError(`--action is required: accept, reject or compensate\n${USAGE}`);
      if (!values.by && !process.env.REGIONSHIFT_USER)
        throw new InputError('--by NAME is required: who decided goes into the case');
      const signer = signerOf(values.key, 'a case decision');
      const client = await connect(cfg);
      const res = await resolveCase(
        client,
        cfg,
        {
          service,
          caseId: positionals[0]!,
          by: requester(values.by),
          action: values.action as CaseAction,
          ...(values.note ? { note: values.note } : {}),
        },
        signer,
      );
      if (json) console.log(JSON.stringify(res));
      else console.log(`${res.case.id}: ${res.detail}`);
      return EXIT.ok;
    }
    throw new InputError(USAGE);
  });
}
