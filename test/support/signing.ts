// Signed decisions in tests: approvers with real SSH keys (made by ssh-keygen in a temporary
// folder, once per test process and name) and the key the Slack bot shares with the workers.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDecisionActivities, type DecisionActivities } from '../../activities/approvals';
import { createGuardianNoticeActivities, type GuardianNoticeActivities } from '../../activities/guardian';
import { ensureKeyPair, slackBotSigner, sshKeySigner, type DecisionSigner } from '../../src/lib/sign';
import type { Approver, Config } from '../../src/lib/config/schema';

/** The key the tests' control workers and Slack bots share. */
export const SLACK_DECISION_KEY = randomBytes(32).toString('hex');

let dir: string | undefined;
function keysDir(): string {
  if (!dir) {
    const made = mkdtempSync(join(tmpdir(), 'regionshift-keys-'));
    process.on('exit', () => rmSync(made, { recursive: true, force: true }));
    dir = made;
  }
  return dir;
}

/** `name`'s key pair; another `variant` is a second key for the same name (one not in the config, say). */
export function sshKey(name: string, variant = 'main'): { privateKey: string; publicKey: string } {
  return ensureKeyPair(join(keysDir(), `${name}.${variant}`), `${name}@test`);
}

/** Config entries for approvers, each with their own key. */
export function approverEntries(...names: string[]): Approver[] {
  return names.map((name) => ({ name, sshKeys: [sshKey(name).publicKey] }));
}

/** Signs as `name` with their key (or another of theirs). */
export function signerFor(name: string, variant = 'main'): DecisionSigner {
  return sshKeySigner(sshKey(name, variant).privateKey);
}

/** Signs as the Slack bot; another key plays a bot the workers do not trust. */
export function botSigner(key = SLACK_DECISION_KEY): DecisionSigner {
  return slackBotSigner(key);
}

/** The control worker's activities (as workers/region.ts registers them): decisions verified against `config`, with the tests' Slack key. */
export function decisionActivities(config: Config): DecisionActivities & GuardianNoticeActivities {
  return {
    ...createDecisionActivities(config, { slackDecisionKey: SLACK_DECISION_KEY }),
    ...createGuardianNoticeActivities(),
  };
}
