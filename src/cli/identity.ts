// Who is asking, and their signature on a decision: both end up in the run's audit record.
import { homedir, hostname, userInfo } from 'node:os';
import { join } from 'node:path';
import { SigningError, SSH_KEY_ENV, sshKeySigner, type DecisionSigner } from '../lib/sign';
import { InputError } from '../lib/runs/client';

/** Who is asking, for the audit record: --by, else REGIONSHIFT_USER, else user@host. */
export function requester(by: string | undefined): string {
  return by ?? process.env.REGIONSHIFT_USER ?? `${userInfo().username}@${hostname()}`;
}

/** The person's signer for a decision: --key, else REGIONSHIFT_SSH_KEY (docs/approvals.md). */
export function signerOf(key: string | undefined, what: string): DecisionSigner {
  const path = key ?? process.env[SSH_KEY_ENV];
  if (!path)
    throw new InputError(
      `${what} is signed with your SSH key: pass --key ~/.ssh/id_ed25519 (or set ${SSH_KEY_ENV}); its public key must be yours in the config's approvers (docs/approvals.md)`,
    );
  try {
    return sshKeySigner(path.startsWith('~/') ? join(homedir(), path.slice(2)) : path);
  } catch (err) {
    if (err instanceof SigningError) throw new InputError(err.message);
    throw err;
  }
}
