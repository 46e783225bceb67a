// The monitoring programs the local stack runs, from Debian's packages: found on PATH, or
// installed with apt-get when missing and we are root (as ensurePgBin does for PostgreSQL).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { PrerequisiteError } from '../../lib/postgres/node';
import { runStreaming } from '../run';

export interface MonitoringBins {
  prometheus: string;
  promtool: string;
  alertmanager: string;
  amtool: string;
  blackbox: string;
  postgresExporter: string;
}

/** Program → the Debian package that ships it. */
const PROGRAMS: Record<keyof MonitoringBins, { file: string; pkg: string }> = {
  prometheus: { file: 'prometheus', pkg: 'prometheus' },
  // promtool comes with prometheus: it checks rule files before anything starts.
  promtool: { file: 'promtool', pkg: 'prometheus' },
  alertmanager: { file: 'prometheus-alertmanager', pkg: 'prometheus-alertmanager' },
  amtool: { file: 'amtool', pkg: 'prometheus-alertmanager' },
  blackbox: { file: 'prometheus-blackbox-exporter', pkg: 'prometheus-blackbox-exporter' },
  postgresExporter: { file: 'prometheus-postgres-exporter', pkg: 'prometheus-postgres-exporter' },
};

function which(file: string): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v ${file}`], { encoding: 'utf8' });
  const path = r.status === 0 ? r.stdout.trim() : '';
  return path || undefined;
}

function find(): { found: Partial<MonitoringBins>; missing: string[] } {
  const found: Partial<MonitoringBins> = {};
  const missing = new Set<string>();
  for (const [key, p] of Object.entries(PROGRAMS) as Array<[keyof MonitoringBins, { file: string; pkg: string }]>) {
    const path = which(p.file);
    if (path) found[key] = path;
    else missing.add(p.pkg);
  }
  return { found, missing: [...missing] };
}

function missingMessage(pkgs: string[], why?: string): string {
  return (
    `monitoring programs not found (${pkgs.join(', ')})${why ? ` (${why})` : ''}: install them with ` +
    `\`apt-get install ${pkgs.join(' ')}\`, or set stack.monitoring.enabled: false in the config (nothing then fails over by itself)`
  );
}

/** The monitoring programs; installs the missing Debian packages when we are root. */
export async function ensureMonitoringBins(opts: { onProgress?(line: string): void } = {}): Promise<MonitoringBins> {
  const first = find();
  if (first.missing.length === 0) return first.found as MonitoringBins;
  if (process.getuid?.() !== 0 || !existsSync('/usr/bin/apt-get'))
    throw new PrerequisiteError(missingMessage(first.missing, 'not root, so not installed'));
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const onLine = (line: string) => opts.onProgress?.(`  apt: ${line}`);
  opts.onProgress?.(`${first.missing.join(', ')} not found; installing with apt-get (a minute or two)…`);
  try {
    await runStreaming('apt-get', ['update'], { env, onLine, idleNoticeMs: 15_000 });
    // No recommends: the prometheus package would pull in node-exporter and its timers.
    await runStreaming('apt-get', ['install', '-y', '--no-install-recommends', ...first.missing], {
      env,
      onLine,
      idleNoticeMs: 15_000,
    });
  } catch (err) {
    throw new PrerequisiteError(missingMessage(first.missing, `apt-get failed: ${(err as Error).message}`));
  }
  const after = find();
  if (after.missing.length)
    throw new PrerequisiteError(missingMessage(after.missing, 'still missing after apt-get install'));
  return after.found as MonitoringBins;
}
