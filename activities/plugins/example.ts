// The example plugin (docs/plugins.md): `custom.primary-env-file` sets one variable in an env file
// an application reads its primary region from (the file-based cousin of patching
// BANKING_PRIMARY_REGION in a Kubernetes deployment), and puts the old value back when the run is
// compensated. It lives under activities/ because that is what it is: code a region's worker runs.
// Name it in the config with `plugins: [{ module: ./activities/plugins/example.ts }]`.
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { z } from 'zod';
import { defineStep } from '../../src/contract/plugin';

const Params = z.strictObject({
  /** The env file (KEY=value lines); created when missing. */
  path: z.string().regex(/^\//, 'an absolute path'),
  variable: z
    .string()
    .regex(/^[A-Z_][A-Z0-9_]*$/, 'an environment variable name like PRIMARY_REGION')
    .default('PRIMARY_REGION'),
  /** What to write: the run's target region (the new primary) or its source. */
  value: z.enum(['target', 'source']).default('target'),
});

function readVar(path: string, variable: string): string | undefined {
  if (!existsSync(path)) return undefined;
  const line = readFileSync(path, 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${variable}=`));
  return line?.slice(variable.length + 1);
}

/** Replaces the variable's line (or adds it) atomically: an application never reads half a file. */
function writeVar(path: string, variable: string, value: string | undefined): void {
  const lines = existsSync(path)
    ? readFileSync(path, 'utf8')
        .split('\n')
        .filter((l) => l !== '' && !l.startsWith(`${variable}=`))
    : [];
  if (value !== undefined) lines.push(`${variable}=${value}`);
  writeFileSync(`${path}.tmp`, lines.length ? `${lines.join('\n')}\n` : '');
  renameSync(`${path}.tmp`, path);
}

/** Where the value before this run's step is kept, until the run is compensated. */
const savedAt = (path: string, key: string): string => `${path}.before-${key.replace(/[^A-Za-z0-9-]/g, '_')}`;

export const steps = [
  defineStep({
    name: 'primary-env-file',
    summary: 'Tell the application which region is primary (a variable in its env file)',
    placement: 'target',
    params: Params,
    async run(ctx, p) {
      const value = p.value === 'target' ? ctx.target : ctx.source;
      const saved = savedAt(p.path, ctx.idempotencyKey);
      // Saved once per run and step: a retry after a crash must not save the new value as the old one.
      if (!existsSync(saved)) writeFileSync(saved, JSON.stringify({ before: readVar(p.path, p.variable) ?? null }));
      const before = readVar(p.path, p.variable);
      writeVar(p.path, p.variable, value);
      return {
        detail:
          before === value
            ? `${p.variable} was already ${value} in ${p.path}`
            : `${p.variable}=${value} in ${p.path} (was ${before ?? 'unset'})`,
      };
    },
    async compensate(ctx, p) {
      const saved = savedAt(p.path, ctx.idempotencyKey);
      if (!existsSync(saved)) return { detail: `nothing to undo in ${p.path}: this run never changed it` };
      const { before } = JSON.parse(readFileSync(saved, 'utf8')) as { before: string | null };
      writeVar(p.path, p.variable, before ?? undefined);
      rmSync(saved);
      return { detail: `${p.variable} ${before === null ? 'unset again' : `back to ${before}`} in ${p.path}` };
    },
  }),
];
