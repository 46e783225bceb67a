import { join } from 'node:path';
import { REPO_ROOT } from '../paths';
import { loadYamlFile } from '../config/load';
import { Runbook } from './schema';
import type { RunbookDoc } from './types';

/** Loads and validates a runbook; the result is passed whole as workflow input. */
export function loadRunbook(file: string): RunbookDoc {
  const loaded = loadYamlFile(file, Runbook);
  return { ...loaded.value, hash: loaded.hash, file: loaded.file };
}

export function builtinRunbookPath(kind: string): string {
  return join(REPO_ROOT, 'runbooks', `${kind}.yaml`);
}
