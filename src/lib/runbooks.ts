import { join } from 'node:path';
import { REPO_ROOT } from './paths';
import { loadYamlFile } from './config/load';
import type { Config, Service } from './config/schema';
import { loadPlugins, pluginSpecs, type PluginRegistry } from './plugins';
import { isCustomAction } from '../contract/runbook/catalog';
import { ACTION_PARAMS } from '../contract/runbook/params';
import { runbookSchema } from '../contract/runbook/schema';
import type { RunbookDoc } from '../contract/runbook/types';

const NO_PLUGINS: PluginRegistry = new Map();

/**
 * Loads and validates a runbook; the result is passed whole as workflow input. Each step's
 * parameters come out with their defaults filled in, and each plugin step's placement and
 * compensation are written into the result: workflow code cannot load a plugin.
 */
export function loadRunbook(file: string, opts: { plugins?: PluginRegistry } = {}): RunbookDoc {
  const plugins = opts.plugins ?? NO_PLUGINS;
  const loaded = loadYamlFile(file, runbookSchema(plugins));
  const steps = loaded.value.steps.map((step) => {
    if (!step.action) return step;
    const schema = isCustomAction(step.action) ? plugins.get(step.action)?.params : ACTION_PARAMS[step.action];
    return schema ? { ...step, params: schema.parse(step.params ?? {}) as Record<string, unknown> } : step;
  });
  const custom = steps.flatMap((s) => (s.action && isCustomAction(s.action) ? [s.action] : []));
  return {
    ...loaded.value,
    steps,
    hash: loaded.hash,
    file: loaded.file,
    ...(custom.length ? { plugins: pluginSpecs(plugins, custom) } : {}),
  };
}

export function builtinRunbookPath(kind: string): string {
  return join(REPO_ROOT, 'runbooks', `${kind}.yaml`);
}

/** The service's own runbook of that kind (config `runbooks:`), else the built-in one. */
export function runbookPathFor(service: Pick<Service, 'runbooks'> | undefined, kind: string): string {
  return service?.runbooks?.[kind as keyof NonNullable<Service['runbooks']>] ?? builtinRunbookPath(kind);
}

/**
 * The runbook a CLI or bot run of `kind` for `service` uses: `file` when given, else the service's
 * own (config `runbooks:`), else the built-in one; loaded with the config's plugins.
 */
export async function loadServiceRunbook(
  config: Pick<Config, 'plugins' | 'services'>,
  service: string,
  kind: string,
  file?: string,
): Promise<RunbookDoc> {
  const plugins = config.plugins.length ? await loadPlugins(config.plugins) : NO_PLUGINS;
  return loadRunbook(
    file ??
      runbookPathFor(
        config.services.find((s) => s.name === service),
        kind,
      ),
    { plugins },
  );
}
