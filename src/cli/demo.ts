// `regionshift demo [--json] [--config FILE]`: the whole story on the local stack in one command
// (see src/demo/scenario.ts). Human output is for someone watching; --json prints exactly one
// JSON object on stdout, progress going to stderr.
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { configPath, loadConfig } from '../config/load';
import { stateDir } from '../paths';
import { fenceOnReturnWorkflowId } from '../runbook/ids';
import { runDemo, DEMO_SERVICE, type DemoResult } from '../demo/scenario';
import { guard } from './common';
import { EXIT } from './exit';

const USAGE = `usage: regionshift demo [--json] [--config FILE]

Brings the local stack up (rebuilding the ledger pair if an earlier demo left it changed), runs a
write load on the ledger, a planned failover us-west-2 → us-east-1, then kills us-east-1 and runs
an unplanned failover back to us-west-2, approving as the on-call. Reports steps, RTO and lost
writes per run. Exit 0 when both runs succeeded and the planned one lost no write.`;

function closing(result: DemoResult, home: string, away: string): string {
  return [
    '',
    `The stack is still running: ${home} is the primary, ${away} is down (database and worker killed).`,
    ...[
      ['Temporal UI', result.temporalUi],
      [`regionshift status ${DEMO_SERVICE}`, 'the last run: steps, approvals, timings'],
      ['regionshift stack status', 'every component of the stack'],
      ['regionshift stack down', 'stop it all'],
    ].map(([what, why]) => `  ${what!.padEnd(28)}${why}`),
    `${fenceOnReturnWorkflowId(DEMO_SERVICE, away)} keeps trying to fence ${away} until it answers again`,
    `(\`regionshift stack up\` brings it back, and it is fenced at once). \`regionshift demo\` starts over from a clean pair.`,
  ].join('\n');
}

export function demoCommand(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  return guard(json, async () => {
    const { values } = parseArgs({
      args: argv,
      options: { json: { type: 'boolean', default: false }, config: { type: 'string' }, help: { type: 'boolean', short: 'h', default: false } },
      strict: true,
    });
    if (values.help) {
      console.log(USAGE);
      return EXIT.ok;
    }
    const configFile = resolve(values.config ?? configPath());
    const config = loadConfig(configFile);
    const say = json ? (line: string) => console.error(line) : (line: string) => console.log(line);
    const result = await runDemo({
      ctx: { config, configFile, home: stateDir() },
      say,
      ...(json ? {} : { report: (text: string) => console.log(text) }),
    });
    if (json) {
      console.log(JSON.stringify(result));
    } else {
      const [planned, unplanned] = result.runs;
      const svc = config.services.find((s) => s.name === DEMO_SERVICE)!;
      if (unplanned) console.log(closing(result, svc.regions[0]!, svc.regions[1]!));
      console.log(`\n${result.ok ? 'demo OK' : 'demo FAILED'}: ${result.runs.map((r) => `${r.mode} ${r.status}, lost ${r.lostWrites} of ${r.writesAcked}, RTO ${r.rtoMs ?? '?'} ms`).join('; ')}`);
      if (planned && planned.lostWrites > 0) console.log(`the planned failover lost ${planned.lostWrites} acknowledged writes: that is a bug, not a demo effect`);
    }
    return result.ok ? EXIT.ok : EXIT.failed;
  });
}
