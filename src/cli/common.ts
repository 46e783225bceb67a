import { homedir, hostname, userInfo } from 'node:os';
import { join } from 'node:path';
import { SigningError, SSH_KEY_ENV, sshKeySigner, type DecisionSigner } from '../approvals/sign';
import { ConfigError, configPath, loadConfig } from '../config/load';
import type { Config } from '../config/schema';
import { CodecConfigError } from '../codec/keys';
import { InputError, RefusedError } from '../runs/client';
import { EXIT } from './exit';

/** Who is asking, for the audit record: --by, else REGIONSHIFT_USER, else user@host. */
export function requester(by: string | undefined): string {
  return by ?? process.env.REGIONSHIFT_USER ?? `${userInfo().username}@${hostname()}`;
}

/** The person's signer for a decision: --key, else REGIONSHIFT_SSH_KEY (docs/approvals.md). */
export function signerOf(key: string | undefined, what: string): DecisionSigner {
  const path = key ?? process.env[SSH_KEY_ENV];
  if (!path) throw new InputError(`${what} is signed with your SSH key: pass --key ~/.ssh/id_ed25519 (or set ${SSH_KEY_ENV}); its public key must be yours in the config's approvers (docs/approvals.md)`);
  try {
    return sshKeySigner(path.startsWith('~/') ? join(homedir(), path.slice(2)) : path);
  } catch (err) {
    if (err instanceof SigningError) throw new InputError(err.message);
    throw err;
  }
}

export function config(file: string | undefined): Config {
  return loadConfig(file ?? configPath());
}

/** Maps the errors a person can act on to one line and an exit code; anything else is a bug. */
export async function guard(json: boolean, fn: () => Promise<number>): Promise<number> {
  try {
    return await fn();
  } catch (err) {
    // A key ssh-keygen cannot sign with (wrong passphrase, not a private key) is the caller's to fix.
    const code = err instanceof RefusedError ? EXIT.refused
      : err instanceof SigningError ? EXIT.badInput
      : err instanceof InputError || err instanceof ConfigError || err instanceof CodecConfigError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') ? EXIT.badInput
      : EXIT.failed;
    const kind = code === EXIT.refused ? 'refused' : code === EXIT.badInput ? 'bad input' : 'failed';
    const message = (err as Error).message;
    if (json) console.log(JSON.stringify({ error: { kind, message } }));
    else console.error(`${kind}: ${message}`);
    return code;
  }
}
