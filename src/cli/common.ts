import { hostname, userInfo } from 'node:os';
import { ConfigError, configPath, loadConfig } from '../config/load';
import type { Config } from '../config/schema';
import { CodecConfigError } from '../codec/keys';
import { InputError, RefusedError } from '../runs/client';
import { EXIT } from './exit';

/** Who is asking, for the audit record: --by, else REGIONSHIFT_USER, else user@host. */
export function requester(by: string | undefined): string {
  return by ?? process.env.REGIONSHIFT_USER ?? `${userInfo().username}@${hostname()}`;
}

export function config(file: string | undefined): Config {
  return loadConfig(file ?? configPath());
}

/** Maps the errors a person can act on to one line and an exit code; anything else is a bug. */
export async function guard(json: boolean, fn: () => Promise<number>): Promise<number> {
  try {
    return await fn();
  } catch (err) {
    const code = err instanceof RefusedError ? EXIT.refused
      : err instanceof InputError || err instanceof ConfigError || err instanceof CodecConfigError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') ? EXIT.badInput
      : EXIT.failed;
    const kind = code === EXIT.refused ? 'refused' : code === EXIT.badInput ? 'bad input' : 'failed';
    const message = (err as Error).message;
    if (json) console.log(JSON.stringify({ error: { kind, message } }));
    else console.error(`${kind}: ${message}`);
    return code;
  }
}
