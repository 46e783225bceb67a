// `regionshift demo [--json] [--config FILE]`: the whole story on the local stack in one command
// (see src/demo/scenario.ts). Human output is for someone watching; --json prints exactly one
// JSON object on stdout, progress going to stderr.
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { configPath, loadConfig } from '../lib/config/load';
import { stateDir } from '../lib/paths';
import { runDemo, DEMO_SERVICE, type DemoResult } from '../demo/scenario';
import { EXIT, guard } from './exit';

const USAGE = `usage: regionshift demo [--json] [--config FILE]

Brings the local stack up (rebuilding the ledger's databases if an earlier demo left them changed)
and runs a write load on the ledger (regionshift.yaml: us-west-2 writes, us-east-1, eu-west-1 and
ap-southeast-1 stream from it, traffic 40/30/20/10) through: a planned failover us-west-2 →
us-east-1 and back; the loss of ap-southeast-1, which is not the writer: its traffic drained to the
others, then undrained once it is back; the loss of us-west-2 and an unplanned failover to
us-east-1, approved as the on-call; us-west-2's return (read-only on its own timeline);
reconciliation of the writes it acknowledged that never replicated; failback to us-west-2 with
the traffic as it was before; and us-east-1, which those records leave without traffic (the
planned failover back moved its share away), undrained to its configured share. After each run
every database is asked whom it follows, and the stack's banking application (stack.app), told
by each run's tell-app step, where it writes. Reports steps, RTO and lost writes per failover,
the records before and after each drain, counts per class and cases per reconciliation, and the
failback's RPO. Exit 0 when every run succeeded, no planned run lost a write, every standby
follows the writer after each run, reconciliation left no acknowledged write unaccounted for, the
failback lost none, and the application's writes follow the writer.

The demo only kills and revives regions: the stack's probes, Prometheus, Alertmanager and the
intake tell the guardian, which starts the drain, the undrain and the unplanned failover itself
(regionshift.yaml: services[].triggers); the demo approves them as the on-call, and the unplanned
RTO counts from the kill, detection included.`;

function closing(result: DemoResult, home: string, others: string[]): string {
  const back = result.failback?.status === 'succeeded';
  return [
    '',
    back
      ? `The stack is still running: ${home} is the primary again, ${others.join(', ')} streaming from it, ${result.backInService?.status === 'succeeded' ? 'every region at its configured share of the traffic' : 'the traffic as it was before it failed'}.`
      : `The stack is still running; the last run did not finish the story (see above).`,
    ...[
      ['Temporal UI', result.temporalUi],
      [`regionshift status ${DEMO_SERVICE}`, 'the last run: steps, approvals, timings'],
      [`regionshift cases list --all`, 'the reconciliation cases and who decided them'],
      ['regionshift stack status', 'every component of the stack'],
      ['regionshift stack down', 'stop it all'],
    ].map(([what, why]) => `  ${what!.padEnd(34)}${why}`),
    `\`regionshift demo\` runs again from here (a clean pair is rebuilt when needed).`,
  ].join('\n');
}

export function demoCommand(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  return guard(json, async () => {
    const { values } = parseArgs({
      args: argv,
      options: {
        json: { type: 'boolean', default: false },
        config: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
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
      const svc = config.services.find((s) => s.name === DEMO_SERVICE)!;
      console.log(closing(result, svc.regions[0]!, svc.regions.slice(1)));
      const parts = result.runs.map(
        (r) =>
          `${r.mode} ${r.source ?? '?'}→${r.target} ${r.status}, lost ${r.lostWrites} of ${r.writesAcked}, RTO ${r.rtoMs ?? '?'} ms${r.detection ? ` (from the kill; detected in ${r.detection.detectedMs} ms, started by ${r.requestedBy})` : ''}${r.app ? `, app writes to ${r.app.primary}` : ''}`,
      );
      for (const d of result.drains)
        parts.push(`${d.kind} ${d.region} ${d.status} (by ${d.requestedBy}: ${d.trigger})`);
      for (const rc of result.reconciliations)
        parts.push(
          `reconcile ${rc.status}: lost ${rc.transactions['only-old']}, re-applied ${rc.transactionsReapplied} (${rc.entriesReapplied} entries), ${rc.casesOpened} cases, unaccounted ${rc.missingAfter}`,
        );
      if (result.failback)
        parts.push(
          `failback ${result.failback.status}: RPO ${result.failback.rpo.lostWrites} of ${result.failback.rpo.writesAcked} writes`,
        );
      if (result.backInService) parts.push(`undrain ${result.backInService.region} ${result.backInService.status}`);
      console.log(`\n${result.ok ? 'demo OK' : 'demo FAILED'}: ${parts.join('; ')}`);
      for (const r of result.runs)
        if (r.mode === 'planned' && r.lostWrites > 0)
          console.log(
            `the planned failover ${r.source} → ${r.target} lost ${r.lostWrites} acknowledged writes: that is a bug, not a demo effect`,
          );
    }
    return result.ok ? EXIT.ok : EXIT.failed;
  });
}
