import { parseArgs } from 'node:util';
import { parseDocument } from 'yaml';
import { readFileSync } from 'node:fs';
import { loadConfig, loadYamlFile } from '../config/load';
import { Config } from '../config/schema';
import { Runbook } from '../runbook/schema';
import { InputError } from '../runs/client';
import { guard } from './common';
import { EXIT } from './exit';

/** `validate <file>`: a runbook (has `steps`) or a service config (has `services`). */
export function validateCommand(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  return guard(json, async () => {
    const { positionals } = parseArgs({ args: argv, options: { json: { type: 'boolean', default: false } }, allowPositionals: true, strict: true });
    if (positionals.length === 0) throw new InputError('usage: regionshift validate <file> [<file> …]');
    for (const file of positionals) {
      let probe: unknown;
      try {
        probe = parseDocument(readFileSync(file, 'utf8')).toJS();
      } catch {
        probe = undefined; // unreadable or not YAML: the loader below says which, precisely
      }
      const isRunbook = typeof probe === 'object' && probe !== null && 'steps' in probe;
      const loaded = isRunbook ? loadYamlFile(file, Runbook) : loadYamlFile(file, Config);
      if (!isRunbook) loadConfig(file); // and what only a whole config can say (approvers for required approvals)
      const what = isRunbook ? 'runbook' : 'service config';
      if (json) console.log(JSON.stringify({ file, kind: what, valid: true, sha256: loaded.hash }));
      else console.log(`${file}: valid ${what} (sha256 ${loaded.hash.slice(0, 12)})`);
    }
    return EXIT.ok;
  });
}
