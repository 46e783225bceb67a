import { CodecConfigError } from '../lib/codec/keys';
import { ConfigError } from '../lib/config/load';
import { CredentialsError } from '../lib/config/temporal-credentials';
import { InputError, RefusedError } from '../lib/runs/client';
import { SigningError } from '../lib/sign';

/** Exit codes every command uses, so scripts can tell a refusal from a failure. */
export const EXIT = {
  ok: 0,
  /** The operation ran and failed (a step failed, a component did not come up). */
  failed: 1,
  /** The input was wrong (unknown service, bad flag, invalid file): nothing was done. */
  badInput: 2,
  /** The request was valid but refused (a run is already in progress, not allowed to approve). */
  refused: 3,
} as const;

/** Maps the errors a person can act on to one line and an exit code; anything else is a bug. */
export async function guard(json: boolean, fn: () => Promise<number>): Promise<number> {
  try {
    return await fn();
  } catch (err) {
    // A key ssh-keygen cannot sign with (wrong passphrase, not a private key) is the caller's to fix.
    const code =
      err instanceof RefusedError
        ? EXIT.refused
        : err instanceof SigningError
          ? EXIT.badInput
          : err instanceof InputError ||
              err instanceof ConfigError ||
              err instanceof CredentialsError ||
              err instanceof CodecConfigError ||
              (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')
            ? EXIT.badInput
            : EXIT.failed;
    const kind = code === EXIT.refused ? 'refused' : code === EXIT.badInput ? 'bad input' : 'failed';
    const message = (err as Error).message;
    if (json) console.log(JSON.stringify({ error: { kind, message } }));
    else console.error(`${kind}: ${message}`);
    return code;
  }
}
