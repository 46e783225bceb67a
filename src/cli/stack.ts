// `regionshift stack up | down | status [--json] [--config <file>]`: the embedded local stack.
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, configPath, loadConfig } from '../lib/config/load';
import { PrerequisiteError } from '../lib/postgres/node';
import { stateDir } from '../lib/paths';
import {
  StackBusyError,
  stackDown,
  stackStatus,
  stackUp,
  type ComponentStatus,
  type StackContext,
} from '../stack/stack';
import { EXIT } from './exit';

const USAGE = `usage: regionshift stack <up|down|status> [--json] [--config <file>]

  up      start Temporal (with its Web UI), moto, PostgreSQL, the region workers, the
          codec server and the monitoring (Prometheus, Alertmanager, the exporters and
          the alarm intake; stack.monitoring) in the background; starts only what is not running
  down    stop what \`up\` started
  status  every component with its address and health

  --config <file>  service config (default: $REGIONSHIFT_CONFIG or ./regionshift.yaml)
  --json           machine-readable output
State (pids, logs, Temporal's SQLite file, the payload key) is kept in $REGIONSHIFT_HOME or .regionshift/state.`;

function context(file: string | undefined): StackContext {
  const configFile = resolve(file ?? configPath());
  return { config: loadConfig(configFile), configFile, home: stateDir() };
}

const INLINE_DETAIL = 70;

function longDetail(c: ComponentStatus): boolean {
  return (c.detail ?? '').length > INLINE_DETAIL;
}

function describe(c: ComponentStatus): string {
  const parts: string[] = [];
  if (c.role === 'primary') {
    parts.push(c.replicas && c.replicas.length ? `primary, replicas: ${c.replicas.join(', ')}` : 'primary');
  } else if (c.role === 'standby') {
    parts.push(c.streaming ? `standby, streaming from ${c.upstream ?? '?'}` : 'standby, NOT streaming');
  }
  if (c.action) parts.push(c.action);
  // A long detail (a failure with its log) would wreck the table: it goes under it.
  if (c.detail) parts.push(longDetail(c) ? 'see below' : c.detail);
  return parts.join('; ');
}

function table(components: ComponentStatus[]): string {
  const rows = components.map((c) => [
    c.name,
    c.address ?? '-',
    c.health,
    c.pid === null ? '' : `pid ${c.pid}`,
    describe(c),
  ]);
  const widths = [0, 1, 2, 3].map((i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((cell, i) => (i < 4 ? cell.padEnd(widths[i] ?? 0) : cell))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** One line per down component (all of them, or only those whose detail did not fit the table). */
function failures(components: ComponentStatus[], onlyLong = false): string[] {
  return components
    .filter((c) => c.health === 'down' && (!onlyLong || longDetail(c)))
    .map(
      (c) =>
        `${c.name} is down: ${c.detail ?? 'not running'}${c.log && !(c.detail ?? '').includes(c.log) ? ` (log: ${c.log})` : ''}`,
    );
}

/** Long details of components that are not down (warnings), which the table points to. */
function warnings(components: ComponentStatus[]): string[] {
  return components.filter((c) => c.health !== 'down' && longDetail(c)).map((c) => `${c.name}: ${c.detail}`);
}

/** A replicated control plane (temporal:<region> clusters) runs no Web UI. */
function replicated(components: ComponentStatus[]): boolean {
  return components.some((c) => c.name.startsWith('temporal:'));
}

async function up(file: string | undefined, json: boolean): Promise<number> {
  const ctx = context(file);
  const result = await stackUp({ ...ctx, onProgress: json ? undefined : (line) => console.log(line) });
  if (json) {
    console.log(
      JSON.stringify({ components: result.components, temporalUi: result.temporalUi, ok: result.ok }, null, 2),
    );
    return result.ok ? EXIT.ok : EXIT.failed;
  }
  if (result.nothingStarted) console.log('all components already running; nothing started');
  console.log(table(result.components));
  for (const line of warnings(result.components)) console.log(line);
  for (const line of failures(result.components)) console.error(line);
  if (!replicated(result.components)) console.log(`Temporal UI: ${result.temporalUi}`);
  if (!result.ok)
    console.error('some components failed; fix the cause shown above and run `regionshift stack up` again');
  return result.ok ? EXIT.ok : EXIT.failed;
}

async function status(file: string | undefined, json: boolean): Promise<number> {
  const s = await stackStatus(context(file));
  const healthy = s.components.every((c) => c.health !== 'down');
  if (json) {
    console.log(JSON.stringify(s, null, 2));
  } else {
    console.log(table(s.components));
    for (const line of [...warnings(s.components), ...failures(s.components, true)]) console.log(line);
    if (!replicated(s.components)) console.log(`Temporal UI: ${s.temporalUi}`);
    if (!healthy) console.log('start what is down with: regionshift stack up');
  }
  return healthy ? EXIT.ok : EXIT.failed;
}

async function down(json: boolean): Promise<number> {
  const result = await stackDown({ home: stateDir() });
  const failed = result.stopped.filter((s) => s.outcome === 'failed');
  if (json) {
    console.log(JSON.stringify(result, null, 2));
  } else if (result.stopped.length === 0) {
    console.log(`nothing to stop (no stack recorded in ${stateDir()})`);
  } else {
    for (const s of result.stopped) {
      const pid = s.pid === null || s.outcome === 'not running' ? '' : ` (pid ${s.pid})`;
      const outcome = s.outcome === 'not running' ? 'was not running' : s.outcome;
      console.log(`${s.name}${pid}: ${outcome}${s.detail ? ` — ${s.detail}` : ''}`);
    }
  }
  return failed.length ? EXIT.failed : EXIT.ok;
}

export async function stackCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        json: { type: 'boolean', default: false },
        config: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    console.error(`regionshift stack: ${(err as Error).message}\n\n${USAGE}`);
    return EXIT.badInput;
  }
  const { values, positionals } = parsed;
  const [sub, ...extra] = positionals;
  if (values.help) {
    console.log(USAGE);
    return EXIT.ok;
  }
  if (!sub || extra.length > 0 || !['up', 'down', 'status'].includes(sub)) {
    console.error(
      `regionshift stack: ${sub ? `unexpected "${[sub, ...extra].join(' ')}"` : 'missing subcommand'}\n\n${USAGE}`,
    );
    return EXIT.badInput;
  }
  const json = values.json ?? false;
  try {
    if (sub === 'up') return await up(values.config, json);
    if (sub === 'status') return await status(values.config, json);
    return await down(json);
  } catch (err) {
    if (err instanceof ConfigError || err instanceof PrerequisiteError) {
      console.error(`regionshift stack ${sub}: ${err.message}`);
      return EXIT.badInput;
    }
    if (err instanceof StackBusyError) {
      console.error(`regionshift stack ${sub}: ${err.message}`);
      return EXIT.refused;
    }
    throw err;
  }
}
