// `regionshift <command>`: dispatch only. Each command lives in a file of its own and returns
// its exit code: 0 success, 1 failed, 2 bad input, 3 refused (see exit.ts).
import { EXIT } from './exit';
import { skipMissingKeysWarning } from '../lib/codec/env';
import { flushClientTracing } from '../lib/runs/client';
import { nearest } from '../contract/nearest';

type Command = (argv: string[]) => Promise<number>;

const commands: Record<string, { summary: string; load: () => Promise<Command> }> = {
  demo: {
    summary:
      'demo [--json]   planned, unplanned failover, reconciliation and failback of the ledger under write load (local stack)',
    load: async () => (await import('./demo')).demoCommand,
  },
  failover: {
    summary: 'failover --service S --to R [--mode planned|unplanned] [--dry-run]',
    load: async () => (await import('./failover')).failoverCommand,
  },
  plan: {
    summary: 'plan --service S --to R [--mode …]   preflight and the rendered plan; changes nothing',
    load: async () => (a) => import('./failover').then((m) => m.failoverCommand(a, true)),
  },
  reconcile: {
    summary: 'reconcile --service S          reconcile diverged writes after an unplanned failover',
    load: async () => (a) => import('./reconcile').then((m) => m.followUpCommand(a, 'reconcile')),
  },
  failback: {
    summary: 'failback --service S [--override-reason TEXT]   old primary back as replica, then switch back',
    load: async () => (a) => import('./reconcile').then((m) => m.followUpCommand(a, 'failback')),
  },
  drain: {
    summary: 'drain --service S --region R      take a region that is not the writer out of service',
    load: async () => (a) => import('./drain').then((m) => m.drainCommand(a, 'drain')),
  },
  undrain: {
    summary:
      'undrain --service S --region R    back into service: the records as its drain found them, or its configured share',
    load: async () => (a) => import('./drain').then((m) => m.drainCommand(a, 'undrain')),
  },
  evacuate: {
    summary: 'evacuate --region R [--service S …]   fail over or drain every service out of a region',
    load: async () => (await import('./evacuate')).evacuateCommand,
  },
  readiness: {
    summary: 'readiness [--service S] [--now]   could each service fail over now: standbys, lag, traffic, targets',
    load: async () => (await import('./readiness')).readinessCommand,
  },
  cases: {
    summary: 'cases list|resolve <id> --by NAME --key KEY --action accept|reject|compensate   reconciliation cases',
    load: async () => (await import('./cases')).casesCommand,
  },
  status: {
    summary: 'status [service|run id]     steps, timings, approvals of the latest run, or of the run named',
    load: async () => (await import('./status')).statusCommand,
  },
  approve: {
    summary: 'approve <service> --by NAME --key KEY [--reject]',
    load: async () => (a) => import('./approve').then((m) => m.approveCommand(a, 'approve')),
  },
  abort: {
    summary: 'abort <service> --by NAME --key KEY --reason TEXT   compensate and stop',
    load: async () => (a) => import('./approve').then((m) => m.approveCommand(a, 'abort')),
  },
  retry: {
    summary: 'retry <service> --by NAME --key KEY --reason TEXT   run a failed step again (onFailure: ask)',
    load: async () => (a) => import('./operate').then((m) => m.operateCommand(a, 'retry')),
  },
  skip: {
    summary: 'skip <service> --by NAME --key KEY --reason TEXT    move on past a failed step',
    load: async () => (a) => import('./operate').then((m) => m.operateCommand(a, 'skip')),
  },
  compensate: {
    summary: 'compensate <service> --by NAME --key KEY --reason TEXT   undo what the run did and stop',
    load: async () => (a) => import('./operate').then((m) => m.operateCommand(a, 'compensate')),
  },
  pause: {
    summary: 'pause <service> --by NAME --key KEY --reason TEXT   hold the run before its next step',
    load: async () => (a) => import('./operate').then((m) => m.operateCommand(a, 'pause')),
  },
  resume: {
    summary: 'resume <service> --by NAME --key KEY --reason TEXT  let a paused run go on',
    load: async () => (a) => import('./operate').then((m) => m.operateCommand(a, 'resume')),
  },
  validate: {
    summary: 'validate <file>              check a runbook or service config',
    load: async () => (await import('./validate')).validateCommand,
  },
  worker: {
    summary: 'worker --region R | --control-only   run a region worker',
    load: async () => (await import('./worker')).workerCommand,
  },
  'control-plane': {
    summary:
      'control-plane status | failover --to R | init   the replicated Temporal control plane (temporal.clusters)',
    load: async () => (await import('./control-plane')).controlPlaneCommand,
  },
  stack: {
    summary: 'stack up | down | status [--json]   the embedded local stack',
    load: async () => (await import('./stack')).stackCommand,
  },
  intake: {
    summary: 'intake [--port N]               alarm intake (SNS, EventBridge, Alertmanager) and health watchers',
    load: async () => (await import('./intake')).intakeCommand,
  },
  'codec-server': {
    summary: 'codec-server [--port N] [--origin URL]   decrypts payloads for the Temporal UI (docs/codec.md)',
    load: async () => (await import('./codec-server')).codecServerCommand,
  },
  app: {
    summary: "app [--port N] [--primary R]    the demo's banking application (stack.app; started by stack up)",
    load: async () => (await import('./app')).appCommand,
  },
  slack: {
    summary: 'slack                           the Slack bot (slash command, approvals, run messages)',
    load: async () => (await import('./slack')).slackCommand,
  },
};

/** Commands that run until stopped and write to Temporal: they warn when payloads go unencrypted. */
const LONG_RUNNING = new Set(['worker', 'intake', 'slack']);

function usage(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  return [
    'usage: regionshift <command> [options]',
    '',
    ...Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === 'help' || name === '--help' || name === '-h') {
    console.log(usage());
    return name ? EXIT.ok : EXIT.badInput;
  }
  const command = commands[name];
  if (!command) {
    const near = nearest(name, Object.keys(commands));
    console.error(`regionshift: unknown command "${name}"${near ? `; did you mean ${near}?` : ''}\n\n${usage()}`);
    return EXIT.badInput;
  }
  if (!LONG_RUNNING.has(name)) skipMissingKeysWarning();
  try {
    return await (
      await command.load()
    )(rest);
  } finally {
    // bin/regionshift.js exits right after: spans the command's client made must leave first.
    await flushClientTracing();
  }
}
