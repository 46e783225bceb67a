import { join, resolve } from 'node:path';

/** The repository (package) root: src/lib/paths.ts sits two levels below it, dist/src/lib/paths.js three. */
export const REPO_ROOT = resolve(__dirname, __dirname.includes(`${'/'}dist${'/'}`) ? '../../..' : '../..');

/** Tools the project installs for itself (Temporal CLI, moto venv), shared by every stack on this checkout. */
export const TOOLS_DIR = join(REPO_ROOT, '.regionshift');

/** Where a stack keeps its state (pids, logs, Temporal's SQLite file): REGIONSHIFT_HOME or .regionshift/state. */
export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.REGIONSHIFT_HOME ?? join(TOOLS_DIR, 'state'));
}
