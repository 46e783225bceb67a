import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseDocument } from 'yaml';
import { configPath, loadConfig } from '../lib/config/load';
import type { Config } from '../lib/config/schema';
import { loadPlugins, type PluginRegistry } from '../lib/plugins';
import { isCustomAction } from '../contract/runbook/catalog';
import { loadRunbook } from '../lib/runbooks';
import { InputError } from '../lib/runs/client';
import { EXIT, guard } from './exit';

/**
 * `validate <file>`: a runbook (has `steps`) or a service config (has `services`). A runbook's
 * plugin steps are checked against the plugins of the config (--config, REGIONSHIFT_CONFIG or
 * ./regionshift.yaml); a config's own runbooks (services[].runbooks) are checked with it.
 */
export function validateCommand(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  return guard(json, async () => {
    const { values, positionals } = parseArgs({
      args: argv,
      options: { json: { type: 'boolean', default: false }, config: { type: 'string' } },
      allowPositionals: true,
      strict: true,
    });
    if (positionals.length === 0)
      throw new InputError('usage: regionshift validate <file> [<file> …] [--config regionshift.yaml]');
    const report = (file: string, what: string, hash: string): void => {
      if (json) console.log(JSON.stringify({ file, kind: what, valid: true, sha256: hash }));
      else console.log(`${file}: valid ${what} (sha256 ${hash.slice(0, 12)})`);
    };
    let plugins: PluginRegistry | undefined;
    const pluginsOf = async (): Promise<PluginRegistry> => {
      if (plugins) return plugins;
      const file = values.config ?? configPath();
      // Without a config a runbook can still be checked; a plugin step in it is then reported as unknown.
      const cfg: Pick<Config, 'plugins'> = values.config || existsSync(file) ? loadConfig(file) : { plugins: [] };
      return (plugins = await loadPlugins(cfg.plugins));
    };
    for (const file of positionals) {
      let probe: unknown;
      try {
        probe = parseDocument(readFileSync(file, 'utf8')).toJS();
      } catch {
        probe = undefined; // unreadable or not YAML: the loader below says which, precisely
      }
      if (typeof probe === 'object' && probe !== null && 'steps' in probe) {
        // The config is read only when a plugin step needs it: a runbook alone validates anywhere.
        const steps = (probe as { steps: unknown }).steps;
        const custom =
          Array.isArray(steps) &&
          steps.some(
            (s) =>
              typeof (s as { action?: unknown })?.action === 'string' &&
              isCustomAction((s as { action: string }).action),
          );
        report(file, 'runbook', loadRunbook(file, custom ? { plugins: await pluginsOf() } : {}).hash);
        continue;
      }
      // loadConfig also says what only a whole config can (approvers for required approvals).
      const cfg = loadConfig(file);
      const own = await loadPlugins(cfg.plugins);
      for (const svc of cfg.services) {
        for (const rb of Object.values(svc.runbooks ?? {}))
          report(rb, `runbook of ${svc.name}`, loadRunbook(rb, { plugins: own }).hash);
      }
      report(file, 'service config', fileHash(file));
    }
    return EXIT.ok;
  });
}

function fileHash(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}
