// The demo and the bench play the on-call approver, so they sign as them: with the key their
// config lists for that name (sshKeysFile), made on first use. A real approver signs with their own
// key (docs/approvals.md).
import { ensureKeyPair, sshKeySigner, type DecisionSigner } from '../lib/sign';
import type { Service } from '../lib/config/schema';

export function standInSigner(service: Service, name: string): DecisionSigner {
  const entry = service.policy.approvers.find((a) => a.name === name);
  if (!entry?.sshKeysFile?.endsWith('.pub')) {
    throw new Error(
      `approving as ${name} needs, in ${service.name}'s policy.approvers, { name: ${name}, sshKeysFile: <path>.pub } (as in regionshift.yaml)`,
    );
  }
  const key = ensureKeyPair(entry.sshKeysFile.slice(0, -'.pub'.length), `${name} (regionshift stand-in approver)`);
  return sshKeySigner(key.privateKey);
}
