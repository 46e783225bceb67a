// Loads the plugin modules a config names and indexes their steps by `custom.<name>`.
import { existsSync } from 'node:fs';
import { isAbsolute, join, relative } from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { CUSTOM_PREFIX, type PluginStepSpec } from '../contract/runbook/catalog';
import { REPO_ROOT } from './paths';
import type { PluginModule, PluginStepInput, StepPlugin } from '../contract/plugin';

export type PluginRegistry = ReadonlyMap<string, StepPlugin>;

/**
 * A module in this repository written in TypeScript runs from its compiled copy under dist/ when
 * regionshift itself runs compiled (the CLI, the workers); under vitest or tsx the .ts loads as is.
 */
function runnable(module: string): string {
  if (!isAbsolute(module) || !__filename.endsWith('.js')) return module;
  const rel = relative(REPO_ROOT, module);
  if (rel.startsWith('..') || rel.startsWith('dist')) return module;
  const compiled = join(REPO_ROOT, 'dist', rel).replace(/\.ts$/, '.js');
  return existsSync(compiled) || existsSync(`${compiled}.js`) ? compiled : module;
}

export async function loadPlugins(plugins: readonly { module: string }[]): Promise<PluginRegistry> {
  const registry = new Map<string, StepPlugin>();
  for (const { module } of plugins) {
    let mod: Partial<PluginModule>;
    try {
      mod = (await import(runnable(module))) as Partial<PluginModule>;
    } catch (err) {
      throw new Error(`plugin ${module} cannot be loaded: ${(err as Error).message.split('\n')[0]}`);
    }
    if (!Array.isArray(mod.steps)) throw new Error(`plugin ${module} exports no \`steps\` array (docs/plugins.md)`);
    for (const step of mod.steps) {
      if (!/^[a-z][a-z0-9-]*$/.test(step.name ?? ''))
        throw new Error(
          `plugin ${module}: step name ${JSON.stringify(step.name)} must be lowercase letters, digits and dashes`,
        );
      const name = `${CUSTOM_PREFIX}${step.name}`;
      if (registry.has(name)) throw new Error(`plugin ${module}: ${name} is already provided by another plugin`);
      if (typeof step.params?.safeParse !== 'function')
        throw new Error(`plugin ${module}: ${name} has no zod schema in \`params\``);
      registry.set(name, step);
    }
  }
  return registry;
}

/** What a run needs to know of each plugin step its runbook uses (RunbookDoc.plugins). */
export function pluginSpecs(registry: PluginRegistry, names: Iterable<string>): Record<string, PluginStepSpec> {
  const out: Record<string, PluginStepSpec> = {};
  for (const name of names) {
    const p = registry.get(name);
    if (!p) continue;
    out[name] = {
      placement: p.placement,
      summary: p.summary,
      compensates: typeof p.compensate === 'function',
      ...(p.irreversible ? { irreversible: p.irreversible } : {}),
    };
  }
  return out;
}

/**
 * The activities a region's worker registers for the plugins: `custom.<name>` and, when the step
 * can be undone, `custom.<name>.compensate`. Parameters are checked again here: a run's input
 * may not have come through load time (another client, an older config).
 */
export function pluginActivities(
  registry: PluginRegistry,
): Record<string, (input: PluginStepInput) => Promise<{ detail: string }>> {
  const acts: Record<string, (input: PluginStepInput) => Promise<{ detail: string }>> = {};
  for (const [name, step] of registry) {
    const checked = (input: PluginStepInput): unknown => {
      const r = step.params.safeParse(input.params);
      if (!r.success) {
        const problems = r.error.issues.map((i) => `params.${i.path.join('.')}: ${i.message}`).join('; ');
        throw ApplicationFailure.nonRetryable(`step ${input.ctx.stepId} (${name}): ${problems}`, 'BadParams');
      }
      return r.data;
    };
    acts[name] = (input) => step.run(input.ctx, checked(input));
    const undo = step.compensate;
    if (undo) acts[`${name}.compensate`] = (input) => undo.call(step, input.ctx, checked(input));
  }
  return acts;
}
