// Verifying a signed decision (approve, reject, abort, case) before a workflow accepts it:
// workflow code cannot use node:crypto or run ssh-keygen, so the run asks this activity, which
// runs on the control task queue's workers. Who may sign, and with which keys, comes from this
// worker's own config and environment; from the decision only the claimed signer and the
// signature itself.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import type { Config, Service } from '../src/lib/config/schema';
import { serviceTriggersOf } from '../src/lib/config/triggers';
import {
  canonicalMessage,
  DECISION_REFUSED,
  SIGNATURE_MAX_AGE_MS,
  SIGNATURE_MAX_SKEW_MS,
  SLACK_DECISION_KEY_ENV,
  SSH_NAMESPACE,
  type DecisionClaim,
  type DecisionSignature,
  type VerifiedDecision,
} from '../src/contract/approvals';
import type { Mode } from '../src/contract/runbook/types';
import type { ApproversReport } from '../src/contract/readiness';

export interface VerifyDecisionInput {
  service: string;
  /** Whose Slack approvers apply (they are configured per mode). */
  mode: Mode;
  claim: DecisionClaim;
  signature?: DecisionSignature;
  /** An abort may also come from the run's requester (as the bot allows it); from the run's input, not the decision's. */
  requester?: string;
}

export interface DecisionActivities {
  verifyDecision(input: VerifyDecisionInput): Promise<VerifiedDecision>;
  /** Who this worker could verify a decision from now (the readiness evaluation's approvers check). */
  checkApprovers(input: { service: string }): Promise<ApproversReport>;
}

export interface DecisionActivityOptions {
  /** The key shared with the Slack bot; default: the REGIONSHIFT_SLACK_DECISION_KEY environment variable. */
  slackDecisionKey?: string;
  now?: () => number;
}

function refuse(message: string): never {
  throw ApplicationFailure.create({ type: DECISION_REFUSED, message, nonRetryable: true });
}

/** The allowed_signers lines of one approver (ssh-keygen(1), ALLOWED SIGNERS), scoped to our namespace. */
function allowedSignerLines(a: Service['policy']['approvers'][number]): string[] {
  const keys = [...a.sshKeys];
  if (a.sshKeysFile) {
    let text: string;
    try {
      text = readFileSync(a.sshKeysFile, 'utf8');
    } catch (err) {
      refuse(
        `this worker cannot read ${a.name}'s sshKeysFile ${a.sshKeysFile} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); fix the path in the config of the control workers`,
      );
    }
    keys.push(
      ...text
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => l && !l.startsWith('#')),
    );
  }
  return keys.map((k) => `${a.name} namespaces="${SSH_NAMESPACE}" ${k.split(/\s+/).slice(0, 2).join(' ')}`);
}

function sshVerify(
  allowedSigners: string,
  identity: string,
  signature: string,
  message: string,
): Promise<{ ok: boolean; out: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'regionshift-verify-'));
  const allowed = join(dir, 'allowed_signers');
  const sig = join(dir, 'decision.sig');
  writeFileSync(allowed, allowedSigners);
  writeFileSync(sig, signature);
  return new Promise<{ ok: boolean; out: string }>((resolve, reject) => {
    const child = spawn('ssh-keygen', ['-Y', 'verify', '-f', allowed, '-I', identity, '-n', SSH_NAMESPACE, '-s', sig], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', (e) =>
      reject(new Error(`cannot run ssh-keygen on this worker (${e.message}): install openssh-client`)),
    );
    child.on('close', (code) => resolve({ ok: code === 0, out: out.trim() }));
    child.stdin.end(message);
  }).finally(() => rmSync(dir, { recursive: true, force: true }));
}

export function createDecisionActivities(config: Config, options: DecisionActivityOptions = {}): DecisionActivities {
  const now = options.now ?? Date.now;
  const slackKey = (): string | undefined => options.slackDecisionKey ?? process.env[SLACK_DECISION_KEY_ENV];

  async function verifyDecision(input: VerifyDecisionInput): Promise<VerifiedDecision> {
    const { claim, signature: sig } = input;
    const [caseId, action] = claim.subject.split(' ');
    const what =
      claim.kind === 'case'
        ? `the decision on case ${caseId} (${action})`
        : claim.kind === 'approve' || claim.kind === 'reject'
          ? `the ${claim.kind === 'approve' ? 'approval' : 'rejection'} of ${claim.workflowId}`
          : `the ${claim.kind} of ${claim.workflowId}`;
    const service =
      config.services.find((s) => s.name === input.service) ??
      refuse(`this worker's config has no service ${input.service}: ${what} cannot be verified`);
    if (!sig?.value)
      refuse(
        `${what} by ${claim.by} is not signed: sign it with your SSH key (regionshift ${claim.kind === 'case' ? 'cases resolve' : claim.kind === 'reject' ? 'approve --reject' : claim.kind} … --by ${claim.by} --key ~/.ssh/id_ed25519), or decide from Slack`,
      );
    const at = Date.parse(sig.at);
    if (Number.isNaN(at)) refuse(`${what}: the signature's time "${sig.at}" is not a time`);
    if (now() - at > SIGNATURE_MAX_AGE_MS)
      refuse(
        `${what}: the signature was made at ${sig.at}, more than ${SIGNATURE_MAX_AGE_MS / 60_000} minutes ago; sign again`,
      );
    if (at - now() > SIGNATURE_MAX_SKEW_MS)
      refuse(`${what}: the signature is dated ${sig.at}, in the future; check the signer's clock`);
    const message = canonicalMessage(claim, sig);

    if (sig.scheme === 'slack-bot') {
      const key = slackKey();
      if (!key)
        refuse(
          `${what} was signed by the Slack bot, but this worker has no ${SLACK_DECISION_KEY_ENV} to check it with: give the control workers the bot's key`,
        );
      const expected = createHmac('sha256', key).update(message).digest();
      const given = Buffer.from(sig.value, 'hex');
      if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
        refuse(
          `${what} by ${claim.by} carries a Slack bot signature that does not verify: the bot's ${SLACK_DECISION_KEY_ENV} differs from the workers', or the decision was altered`,
        );
      }
      // The bot mapped the Slack user to the approvers; the worker checks that mapping against its own config.
      const allowed = serviceTriggersOf(service).approvers[input.mode] ?? [];
      const listed =
        allowed.includes(claim.by) ||
        claim.groups.some((g) => allowed.includes(g)) ||
        (claim.kind === 'abort' && claim.by === input.requester);
      if (!listed)
        refuse(
          `${claim.by} is not a Slack approver of ${input.mode} runs of ${service.name} in this worker's config (${allowed.join(', ') || 'none listed'})`,
        );
      return {
        by: claim.by,
        scheme: 'slack-bot',
        key: `slack-bot:${claim.by}`,
        signedAs: `${claim.by} (via Slack, signed by the bot)`,
      };
    }

    if (sig.scheme !== 'ssh') refuse(`${what}: unknown signature scheme "${String(sig.scheme)}" (ssh or slack-bot)`);
    const names = service.policy.approvers.map((a) => a.name);
    const approver =
      service.policy.approvers.find((a) => a.name === claim.by) ??
      refuse(
        `${claim.by} is not an approver of ${service.name} (approvers with SSH keys: ${names.join(', ') || 'none'}); add them to policy.approvers with their public key`,
      );
    const lines = allowedSignerLines(approver);
    if (lines.length === 0) refuse(`${claim.by} has no SSH public key in this worker's config`);
    const v = await sshVerify(`${lines.join('\n')}\n`, claim.by, sig.value, message);
    if (!v.ok)
      refuse(
        `${what}: the SSH signature does not verify for ${claim.by} (${v.out.split(/\r?\n/)[0]!.trim() || 'ssh-keygen said no'}): it was made with a key not listed for ${claim.by}, for another decision, or altered`,
      );
    const fingerprint = /(SHA256:[A-Za-z0-9+/=]+)/.exec(v.out)?.[1] ?? 'unknown key';
    return { by: claim.by, scheme: 'ssh', key: fingerprint, signedAs: `${claim.by} (ssh key ${fingerprint})` };
  }

  /** The keys verifyDecision would load, loaded the same way: a file it cannot read now is an approver who cannot approve. */
  async function checkApprovers(input: { service: string }): Promise<ApproversReport> {
    const service = config.services.find((s) => s.name === input.service);
    if (!service)
      throw ApplicationFailure.create({
        message: `this worker's config has no service ${input.service}`,
        nonRetryable: true,
      });
    const ssh = service.policy.approvers.map((a) => {
      try {
        return { name: a.name, keys: allowedSignerLines(a).length };
      } catch (err) {
        return {
          name: a.name,
          keys: 0,
          error: (err as Error).message
            .replace(/^this worker cannot read \S+'s /, 'cannot read ')
            .replace(/; fix the path.*$/, ''),
        };
      }
    });
    const slack = serviceTriggersOf(service).approvers;
    return {
      ssh,
      slack: { planned: slack.planned ?? [], unplanned: slack.unplanned ?? [] },
      slackKey: Boolean(slackKey()),
    };
  }

  return { verifyDecision, checkApprovers };
}
