// Signing decisions, for the CLI (the person's SSH key, through ssh-keygen) and the Slack bot
// (the key it shares with the workers). The workers verify (activities/approvals.ts).
import { createHmac, randomBytes } from 'node:crypto';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import {
  canonicalMessage,
  SSH_NAMESPACE,
  type DecisionClaim,
  type DecisionSignature,
  type SignatureScheme,
} from '../contract/approvals';

export class SigningError extends Error {
  override name = 'SigningError';
}

export interface DecisionSigner {
  scheme: SignatureScheme;
  sign(message: string): Promise<string>;
}

export async function signDecision(
  signer: DecisionSigner,
  claim: DecisionClaim,
  now: Date = new Date(),
): Promise<DecisionSignature> {
  const head = { scheme: signer.scheme, at: now.toISOString(), nonce: randomBytes(16).toString('hex') };
  return { ...head, value: await signer.sign(canonicalMessage(claim, head)) };
}

/** The environment variable the CLI reads the SSH key path from when --key is not given. */
export const SSH_KEY_ENV = 'REGIONSHIFT_SSH_KEY';

/**
 * Signs with `ssh-keygen -Y sign`: the private key file, or its `.pub` when the private key is in
 * ssh-agent. A key with a passphrase and no agent makes ssh-keygen ask on the terminal.
 */
export function sshKeySigner(keyPath: string): DecisionSigner {
  if (!existsSync(keyPath))
    throw new SigningError(`SSH key ${keyPath} does not exist; pass --key ~/.ssh/id_ed25519 (or set ${SSH_KEY_ENV})`);
  return {
    scheme: 'ssh',
    sign: (message) =>
      new Promise((resolve, reject) => {
        const child = spawn('ssh-keygen', ['-Y', 'sign', '-q', '-f', keyPath, '-n', SSH_NAMESPACE], {
          stdio: ['pipe', 'pipe', 'pipe'],
        });
        let out = '';
        let err = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.stderr.on('data', (d: Buffer) => (err += d.toString()));
        child.on('error', (e) =>
          reject(new SigningError(`cannot run ssh-keygen (${e.message}); install openssh-client`)),
        );
        child.on('close', (code) => {
          if (code === 0 && out.includes('BEGIN SSH SIGNATURE')) resolve(out);
          else reject(new SigningError(`ssh-keygen could not sign with ${keyPath}: ${err.trim() || `exit ${code}`}`));
        });
        child.stdin.end(message);
      }),
  };
}

/** The Slack bot's signer: HMAC-SHA256 with the key it shares with the workers. */
export function slackBotSigner(key: string): DecisionSigner {
  if (key.length < 32)
    throw new SigningError('the Slack decision key is too short: use at least 32 characters (openssl rand -hex 32)');
  return { scheme: 'slack-bot', sign: async (message) => createHmac('sha256', key).update(message).digest('hex') };
}

/** An ed25519 key pair at `path` (and `path`.pub), made without a passphrase when missing: for the demo's stand-in approver and tests. */
export function ensureKeyPair(path: string, comment: string): { privateKey: string; publicKey: string } {
  if (!existsSync(path)) {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', path], {
      encoding: 'utf8',
    });
    if (r.status !== 0)
      throw new SigningError(
        `ssh-keygen could not make a key at ${path}: ${(r.stderr || r.error?.message || '').trim()}`,
      );
  }
  return { privateKey: path, publicKey: readFileSync(`${path}.pub`, 'utf8').trim() };
}
