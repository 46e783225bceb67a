// `regionshift readiness [--service S] [--now] [--json]`: the latest failover-readiness evaluation
// of each service (its Temporal Schedule runs one every readiness.every), or a fresh one with
// --now. Exit: 0 every service ready (pass or warn), 1 one is not, 2 bad input.
import { parseArgs } from 'node:util';
import { connect, InputError } from '../lib/runs/client';
import { latestReadiness } from '../lib/readiness';
import { formatReadiness } from '../present/readiness';
import { loadConfig } from '../lib/config/load';
import { EXIT, guard } from './exit';

const USAGE = 'usage: regionshift readiness [--service S] [--now] [--json] [--config FILE]';

export function readinessCommand(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  return guard(json, async () => {
    const { values } = parseArgs({
      args: argv,
      options: {
        service: { type: 'string' },
        now: { type: 'boolean', default: false },
        config: { type: 'string' },
        json: { type: 'boolean', default: false },
      },
      strict: true,
    });
    const cfg = loadConfig(values.config);
    const services = values.service ? cfg.services.filter((s) => s.name === values.service) : cfg.services;
    if (!services.length)
      throw new InputError(
        `no service "${values.service}" in the config (${cfg.services.map((s) => s.name).join(', ')})\n${USAGE}`,
      );
    const client = await connect(cfg);
    try {
      const evaluations = await Promise.all(services.map((s) => latestReadiness(client, cfg, s, { now: values.now })));
      if (json) console.log(JSON.stringify(evaluations));
      else console.log(evaluations.map(formatReadiness).join('\n'));
      return evaluations.some((e) => e.status === 'fail') ? EXIT.failed : EXIT.ok;
    } finally {
      await client.connection.close().catch(() => undefined);
    }
  });
}
