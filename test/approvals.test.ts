// Signed decisions (docs/approvals.md) on a real Temporal dev server, with real SSH keys made by
// ssh-keygen and verified by the control worker's verifyDecision activity: every refusal (unsigned,
// signed for another run, a key not listed, not an approver in the worker's config, the same
// person or key twice for a two-approver rule, a stale signature, a bad Slack bot key), the
// accepted pair, abort and case decisions, the CLI, and the config refusals.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WorkflowUpdateFailedError } from '@temporalio/client';
import { stringify } from 'yaml';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { signDecision } from '../src/lib/sign';
import { loadConfig } from '../src/lib/config/load';
import { runWorkflowId } from '../src/contract/runbook/ids';
import type { ApproveInput, RunInput, RunRecord } from '../src/contract/runbook/types';
import { abortRun, approveRun, awaitRecord, buildRunInput, RefusedError, startRun } from '../src/lib/runs/client';
import { resolveCase } from '../src/lib/runs/reconcile';
import { problemsOf } from './support/config-problems';
import { runbookFromText } from './support/failover-env';
import { approverEntries, botSigner, signerFor, sshKey } from './support/signing';
import { createTemporalEnv, paperConfig, type TemporalEnv } from './support/temporal-env';
import { waitFor } from './support/wait';

const SERVICE = 'ledger';
const WEST = 'us-west-2';
const EAST = 'us-east-1';
const GATE = runbookFromText('kind: failover\nsteps:\n  - {id: approval, approval: {reason: a person must approve}}\n');
const ID = runWorkflowId(SERVICE);

let te: TemporalEnv;

beforeAll(async () => {
  te = await createTemporalEnv((address) =>
    paperConfig(address, [
      {
        name: SERVICE,
        regions: [WEST, EAST],
        policy: {
          approvalTimeout: '60s',
          // erin and frank share one key: two names, one signer.
          approvers: [
            ...approverEntries('carol', 'dave'),
            { name: 'erin', sshKeys: [sshKey('shared').publicKey] },
            { name: 'frank', sshKeys: [sshKey('shared').publicKey] },
          ],
        },
        triggers: { approvers: { unplanned: ['UCAROL01', 'SONCALL01'] } },
      },
    ]),
  );
});

afterEach(async () => {
  // Each test ends its own run; one left waiting must not hold the next (single flight).
  await te.client.workflow
    .getHandle(ID)
    .terminate('test over')
    .catch(() => undefined);
});

afterAll(async () => {
  await te?.teardown();
});

async function progress(): Promise<RunRecord> {
  return te.client.workflow.getHandle(ID).query<RunRecord>('progress');
}

/** A run of ledger waiting at its approval gate, needing `quorum` approvers out of `approvers`. */
async function gatedRun(
  quorum = 2,
  approvers = ['carol', 'dave', 'erin', 'frank', 'zed', 'UCAROL01', 'SONCALL01'],
): Promise<{ workflowId: string; runId: string }> {
  const input: RunInput = buildRunInput(te.config, GATE, {
    service: SERVICE,
    target: EAST,
    mode: 'unplanned',
    dryRun: false,
    requestedBy: 'alice',
    trigger: 'test',
  });
  input.approval = { required: true, timeout: '60s', onTimeout: 'reject', approvers, quorum };
  const started = await startRun(te.client, input);
  await waitFor('the approval gate', async () => ((await progress()).pendingApproval ? true : undefined));
  return started;
}

/** The run's reason for refusing an update sent straight to it (as a client other than ours would). */
async function refusalOf(update: Promise<unknown>): Promise<string> {
  const err = await update.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(WorkflowUpdateFailedError);
  return ((err as WorkflowUpdateFailedError).cause as Error).message;
}

function fingerprint(name: string, variant = 'main'): string {
  const r = spawnSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', `${sshKey(name, variant).privateKey}.pub`], {
    encoding: 'utf8',
  });
  return /(SHA256:\S+)/.exec(r.stdout)![1]!;
}

describe('approvals are signed, and verified by a worker against its own config', () => {
  it('an unsigned approval is refused, however well it names an approver', async () => {
    const run = await gatedRun();
    const err = await approveRun(te.client, run.workflowId, { by: 'carol', decision: 'approve' }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(RefusedError);
    expect((err as Error).message).toBe(
      'the approval by carol is not signed: sign it with your SSH key (regionshift approve ledger --by carol --key ~/.ssh/id_ed25519), or decide from Slack',
    );
    expect((await progress()).pendingApproval?.approvedBy).toBeUndefined();
  });

  it('a signature made for another run (or step) is refused: it cannot be replayed', async () => {
    const run = await gatedRun();
    const a: ApproveInput = { by: 'carol', decision: 'approve', reason: 'go' };
    const otherRun = await signDecision(signerFor('carol'), {
      kind: 'approve',
      workflowId: run.workflowId,
      runId: 'an-earlier-run',
      subject: 'approval',
      by: 'carol',
      groups: [],
      reason: 'go',
    });
    const otherStep = await signDecision(signerFor('carol'), {
      kind: 'approve',
      workflowId: run.workflowId,
      runId: run.runId,
      subject: 'promote',
      by: 'carol',
      groups: [],
      reason: 'go',
    });
    for (const signature of [otherRun, otherStep]) {
      expect(
        await refusalOf(te.client.workflow.getHandle(ID).executeUpdate('approve', { args: [{ ...a, signature }] })),
      ).toMatch(
        /^the approval of regionshift-ledger: the SSH signature does not verify for carol \(.+\): it was made with a key not listed for carol, for another decision, or altered$/,
      );
    }
    expect((await progress()).approvals).toEqual([]);
  });

  it("a key not listed for the approver is refused; so is a name the worker's config does not list, whatever the run's input says", async () => {
    const run = await gatedRun();
    await expect(
      approveRun(
        te.client,
        run.workflowId,
        { by: 'carol', decision: 'approve' },
        signerFor('carol', 'laptop-not-in-config'),
      ),
    ).rejects.toThrow(/the SSH signature does not verify for carol/);
    await expect(
      approveRun(te.client, run.workflowId, { by: 'dave', decision: 'approve' }, signerFor('carol')),
    ).rejects.toThrow(/the SSH signature does not verify for dave/);
    // zed is in the run's input (its starter put him there), not in the worker's config.
    await expect(
      approveRun(te.client, run.workflowId, { by: 'zed', decision: 'approve' }, signerFor('zed')),
    ).rejects.toThrow(
      'zed is not an approver of ledger (approvers with SSH keys: carol, dave, erin, frank); add them to policy.approvers with their public key',
    );
    // And the run's own list still applies: mallory is in neither.
    await expect(
      approveRun(te.client, run.workflowId, { by: 'mallory', decision: 'approve' }, signerFor('mallory')),
    ).rejects.toThrow(/mallory may not approve runs of ledger; approvers: carol, dave/);
    expect((await progress()).pendingApproval?.approvedBy).toBeUndefined();
  });

  it('a signature older than ten minutes is refused', async () => {
    const run = await gatedRun();
    const old = await signDecision(
      signerFor('carol'),
      {
        kind: 'approve',
        workflowId: run.workflowId,
        runId: run.runId,
        subject: 'approval',
        by: 'carol',
        groups: [],
        reason: '',
      },
      new Date(Date.now() - 11 * 60_000),
    );
    expect(
      await refusalOf(
        te.client.workflow
          .getHandle(ID)
          .executeUpdate('approve', { args: [{ by: 'carol', decision: 'approve', signature: old }] }),
      ),
    ).toMatch(
      /^the approval of regionshift-ledger: the signature was made at .+, more than 10 minutes ago; sign again$/,
    );
  });

  it('two approvers: the same person twice is refused, and so is the same key under another name; a valid pair is accepted and recorded', async () => {
    const run = await gatedRun(2);
    await expect(
      approveRun(te.client, run.workflowId, { by: 'erin', decision: 'approve' }, signerFor('shared')),
    ).resolves.toBe('approval 1 of 2 by erin; waiting for another approver');
    await expect(
      approveRun(te.client, run.workflowId, { by: 'erin', decision: 'approve' }, signerFor('shared')),
    ).rejects.toThrow('erin has already approved; a second, different approver is needed');
    await expect(
      approveRun(te.client, run.workflowId, { by: 'frank', decision: 'approve' }, signerFor('shared')),
    ).rejects.toThrow(
      `frank (ssh key ${fingerprint('shared')}) has already approved this step under another name; a second approver with their own key is needed`,
    );
    await te.client.workflow.getHandle(ID).terminate('next pair');

    const pair = await gatedRun(2);
    await expect(
      approveRun(
        te.client,
        pair.workflowId,
        { by: 'carol', decision: 'approve', reason: 'checked' },
        signerFor('carol'),
      ),
    ).resolves.toBe('approval 1 of 2 by carol; waiting for another approver');
    await expect(
      approveRun(te.client, pair.workflowId, { by: 'dave', decision: 'approve' }, signerFor('dave')),
    ).resolves.toBe('approved by dave');
    const rec = await awaitRecord(te.client, pair.workflowId, pair.runId);
    expect(rec.status).toBe('succeeded');
    expect(rec.approvals).toEqual([
      expect.objectContaining({
        stepId: 'approval',
        by: 'carol',
        decision: 'approve',
        reason: 'checked',
        signed: `carol (ssh key ${fingerprint('carol')})`,
      }),
      expect.objectContaining({
        stepId: 'approval',
        by: 'dave',
        decision: 'approve',
        signed: `dave (ssh key ${fingerprint('dave')})`,
      }),
    ]);
  });

  it('the Slack bot signs for a Slack approver; a decision signed with a key the workers do not share is refused', async () => {
    const run = await gatedRun(1);
    await expect(
      approveRun(
        te.client,
        run.workflowId,
        { by: 'UCAROL01', decision: 'approve' },
        botSigner('a-key-the-workers-do-not-have-0123456789abcdef'),
      ),
    ).rejects.toThrow(
      "the approval of regionshift-ledger by UCAROL01 carries a Slack bot signature that does not verify: the bot's REGIONSHIFT_SLACK_DECISION_KEY differs from the workers', or the decision was altered",
    );
    // A group the bot did not sign for cannot be added on the way: the groups are in the signed text.
    const signed = await signDecision(botSigner(), {
      kind: 'approve',
      workflowId: run.workflowId,
      runId: run.runId,
      subject: 'approval',
      by: 'UERIN001',
      groups: [],
      reason: '',
    });
    expect(
      await refusalOf(
        te.client.workflow.getHandle(ID).executeUpdate('approve', {
          args: [{ by: 'UERIN001', decision: 'approve', groups: ['SONCALL01'], signature: signed }],
        }),
      ),
    ).toContain('by UERIN001 carries a Slack bot signature that does not verify');
    await expect(
      approveRun(
        te.client,
        run.workflowId,
        { by: 'UERIN001', decision: 'approve', groups: ['SONCALL01'] },
        botSigner(),
      ),
    ).resolves.toBe('approved by UERIN001');
    const rec = await awaitRecord(te.client, run.workflowId, run.runId);
    expect(rec.approvals).toEqual([
      expect.objectContaining({ by: 'UERIN001', signed: 'UERIN001 (via Slack, signed by the bot)' }),
    ]);
  });

  it('a rejection is signed like an approval', async () => {
    const run = await gatedRun(2);
    await expect(
      approveRun(te.client, run.workflowId, { by: 'dave', decision: 'reject', reason: 'not now' }),
    ).rejects.toThrow(/the rejection by dave is not signed/);
    await expect(
      approveRun(te.client, run.workflowId, { by: 'dave', decision: 'reject', reason: 'not now' }, signerFor('dave')),
    ).resolves.toBe('rejected by dave');
    const rec = await awaitRecord(te.client, run.workflowId, run.runId);
    expect(rec.status).toBe('failed');
    expect(rec.error).toBe('rejected by dave: not now');
    expect(rec.approvals).toEqual([
      expect.objectContaining({ by: 'dave', decision: 'reject', signed: `dave (ssh key ${fingerprint('dave')})` }),
    ]);
  });
});

describe('abort and case decisions are signed too', () => {
  it('an unsigned abort, or one with a key not listed, is refused; a signed one aborts and is recorded', async () => {
    const run = await gatedRun();
    await expect(abortRun(te.client, run.workflowId, { by: 'carol', reason: 'wrong region' })).rejects.toThrow(
      'the abort by carol is not signed: sign it with your SSH key (regionshift abort ledger --reason … --by carol --key ~/.ssh/id_ed25519), or decide from Slack',
    );
    await expect(
      abortRun(
        te.client,
        run.workflowId,
        { by: 'carol', reason: 'wrong region' },
        signerFor('carol', 'laptop-not-in-config'),
      ),
    ).rejects.toThrow(/the abort of regionshift-ledger: the SSH signature does not verify for carol/);
    expect((await progress()).status).toBe('running');
    await expect(
      abortRun(te.client, run.workflowId, { by: 'carol', reason: 'wrong region' }, signerFor('carol')),
    ).resolves.toBe('abort requested by carol: compensating');
    const rec = await awaitRecord(te.client, run.workflowId, run.runId);
    expect(rec.status).toBe('aborted');
    expect(rec.error).toBe('aborted by carol: wrong region');
    expect(rec.abort).toMatchObject({
      by: 'carol',
      reason: 'wrong region',
      signed: `carol (ssh key ${fingerprint('carol')})`,
    });
  });

  it('a case decision is verified before any database is asked: unsigned and wrongly signed are refused, a signed one goes on to the primary', async () => {
    const req = {
      service: SERVICE,
      caseId: 'od-1',
      by: 'carol',
      action: 'compensate' as const,
      note: 'recover from the customer',
    };
    await expect(resolveCase(te.client, te.config, req)).rejects.toThrow(
      'the decision on case od-1 by carol is not signed: sign it with your SSH key (regionshift cases resolve od-1 --by carol --key ~/.ssh/id_ed25519 …), or decide from Slack',
    );
    await expect(resolveCase(te.client, te.config, req, signerFor('dave'))).rejects.toThrow(
      /the decision on case od-1 \(compensate\): the SSH signature does not verify for carol/,
    );
    // Verified, it goes on to find the primary; this paper service has no database, which the refusal says.
    const err = await resolveCase(te.client, te.config, req, signerFor('carol')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RefusedError);
    expect((err as Error).message).toMatch(/^ledger has no writable primary right now/);
  });
});

describe('the CLI signs with --key', () => {
  const cli = join(__dirname, '..', 'bin', 'regionshift.js');
  let configFile: string;

  beforeAll(() => {
    configFile = join(mkdtempSync(join(tmpdir(), 'regionshift-approvals-')), 'regionshift.yaml');
    writeFileSync(configFile, stringify(te.config));
  });

  function cliRun(
    args: string[],
    env: NodeJS.ProcessEnv = {},
  ): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const child = spawn('node', [cli, ...args, '--config', configFile], {
      env: { ...process.env, TEMPORAL_ADDRESS: te.config.temporal.address, REGIONSHIFT_SSH_KEY: '', ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
  }

  it("approve without a key is bad input; with the wrong key refused; with carol's and dave's keys the run goes on", async () => {
    const run = await gatedRun(2);
    const none = await cliRun(['approve', SERVICE, '--by', 'carol']);
    expect(none.code).toBe(2);
    expect(none.stderr).toContain(
      'bad input: an approval is signed with your SSH key: pass --key ~/.ssh/id_ed25519 (or set REGIONSHIFT_SSH_KEY)',
    );
    const wrong = await cliRun(['approve', SERVICE, '--by', 'carol', '--key', sshKey('dave').privateKey]);
    expect(wrong.code).toBe(3);
    expect(wrong.stderr).toMatch(
      /^refused: the approval of regionshift-ledger: the SSH signature does not verify for carol/,
    );
    const first = await cliRun(['approve', SERVICE, '--by', 'carol', '--key', sshKey('carol').privateKey]);
    expect(first.stdout.trim()).toBe('regionshift-ledger: approval 1 of 2 by carol; waiting for another approver');
    expect(first.code).toBe(0);
    // The key may come from the environment.
    const second = await cliRun(['approve', SERVICE, '--by', 'dave', '--json'], {
      REGIONSHIFT_SSH_KEY: sshKey('dave').privateKey,
    });
    expect(JSON.parse(second.stdout)).toEqual({ workflowId: ID, verdict: 'approved by dave' });
    expect((await awaitRecord(te.client, run.workflowId, run.runId)).status).toBe('succeeded');
  });

  it('abort --key aborts', async () => {
    const run = await gatedRun();
    const r = await cliRun([
      'abort',
      SERVICE,
      '--by',
      'dave',
      '--reason',
      'drill over',
      '--key',
      sshKey('dave').privateKey,
    ]);
    expect(r.stdout.trim()).toBe('regionshift-ledger: abort requested by dave: compensating');
    expect(r.code).toBe(0);
    expect(await awaitRecord(te.client, run.workflowId, run.runId)).toMatchObject({
      status: 'aborted',
      abort: { by: 'dave', signed: `dave (ssh key ${fingerprint('dave')})` },
    });
  });
});

describe('config: approvers are people with keys, and a required approval needs some', () => {
  const dir = mkdtempSync(join(tmpdir(), 'regionshift-approvers-'));
  const write = (name: string, policy: string): string => {
    const file = join(dir, name);
    writeFileSync(
      file,
      `temporal: { address: 127.0.0.1:7233 }
services:
  - name: ledger
    regions: [us-west-2, us-east-1]
    database:
      provider: postgres-streaming
      regions:
        us-west-2: { host: 127.0.0.1, port: 5432, dataDir: pg/w }
        us-east-1: { host: 127.0.0.1, port: 5433, dataDir: pg/e }
    traffic:
      provider: route53
      hostedZone: regionshift.test.
      recordName: ledger.regionshift.test.
      endpoints: { us-west-2: db.w.regionshift.test., us-east-1: db.e.regionshift.test. }
    policy:
${policy}
`,
    );
    return file;
  };

  it('refuses an unplanned approval nobody may give, naming where', () => {
    const file = write('none.yaml', '      approval: { planned: none, unplanned: required }\n      approvers: []');
    expect(problemsOf(() => loadConfig(file))).toEqual([
      `${file}: services[0] (ledger).policy.approvers: unplanned runs require approval (policy.approval.unplanned: required) but nobody may give it: list approvers with their SSH keys (approvers: [{ name: carol, sshKeys: ["ssh-ed25519 AAAA…"] }]), or Slack approvers in triggers.approvers.unplanned, or set policy.approval.unplanned: none (docs/approvals.md)`,
    ]);
    // Slack approvers are someone too; and a service that needs no approval needs no approvers.
    expect(
      loadConfig(write('slack.yaml', '      approvers: []\n    triggers: { approvers: { unplanned: [UCAROL01] } }'))
        .services[0]!.policy.approvers,
    ).toEqual([]);
    expect(
      loadConfig(write('auto.yaml', '      approval: { planned: none, unplanned: none }')).services[0]!.policy.approval
        .unplanned,
    ).toBe('none');
  });

  it('refuses a bare approver name and a key that is not one, saying what to write', () => {
    const file = write(
      'bare.yaml',
      `      approvers: [carol, { name: dave, sshKeys: ["${sshKey('dave').publicKey}"] }, { name: erin, sshKeys: ["not a key"] }, { name: frank }]`,
    );
    const problems = problemsOf(() => loadConfig(file));
    expect(problems).toEqual([
      expect.stringMatching(
        /^.*bare\.yaml:\d+: .*policy\.approvers\[0\].*: "carol" is a bare name: approvers sign their decisions now\. Write \{ name: carol, sshKeys: \["ssh-ed25519 AAAA…"\] \} with the public key of their SSH key \(docs\/approvals\.md\)$/,
      ),
      expect.stringMatching(
        /policy\.approvers\[2\] \(erin\)\.sshKeys\[0\]: not an SSH public key: paste a line like "ssh-ed25519 AAAA… you@host"/,
      ),
      expect.stringMatching(
        /policy\.approvers\[3\] \(frank\): an approver needs the SSH public keys that sign for them: sshKeys: \["ssh-ed25519 AAAA…"\] or sshKeysFile: <path>$/,
      ),
    ]);
  });

  it("an sshKeysFile is taken from the config file's folder", () => {
    const cfg = loadConfig(write('file.yaml', '      approvers: [{ name: carol, sshKeysFile: keys/carol.pub }]'));
    expect(cfg.services[0]!.policy.approvers[0]!.sshKeysFile).toBe(join(dir, 'keys', 'carol.pub'));
  });
});
