// The Slack bot as Slack sees it: a real Bolt app receiving correctly signed slash commands and
// block_actions over HTTP, its Web API client pointed at a local recorder, running real
// failovers (Temporal dev server, PostgreSQL pair, moto). The messages it posts and updates are
// asserted by content; wrong and old signatures get 401 and change nothing. Readiness: status
// shows the last evaluation, and a failing one is said in the channel once per transition.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runWorkflowId } from '../src/contract/runbook/ids';
import { loadRunbook } from '../src/lib/runbooks';
import type { RunRecord } from '../src/contract/runbook/types';
import { awaitRecord, startRun } from '../src/lib/runs/client';
import { ACTION, STEP_ACTION } from '../src/slack/blocks';
import { createSlackBot, type SlackBot } from '../src/slack/bot';
import { startRigs } from './support/rigs';
import { createFailoverEnv, SERVICE, type FailoverEnv } from './support/failover-env';
import { finalAnswer, slackSignature, startSlackApi, type Message, type SlackApi } from './support/slack-api';
import { waitFor } from './support/wait';
import { SLACK_DECISION_KEY } from './support/signing';
import { start, stop } from '../src/lib/postgres/node';
import { latestReadiness } from '../src/lib/readiness';
import { formatReadiness } from '../src/present/readiness';
import { READINESS_EVENT_TYPE } from '../src/slack/readiness';

const WEST = 'us-west-2';
const EAST = 'us-east-1';
const SECRET = 'test-signing-secret';
const RUNS = 'C0RUNS01';
const ALICE = 'UALICE01'; // requests runs; listed as an approver, yet may not approve her own
const CAROL = 'UCAROL01';
const ERIN = 'UERIN001'; // approver through the user group
const MALLORY = 'UMALLORY'; // nobody
const ONCALL = 'SONCALL01';

let fe: FailoverEnv;
let slack: SlackApi;
let bot: SlackBot;
let botUrl: string;

beforeAll(async () => {
  [fe, slack] = await startRigs([createFailoverEnv({ cooldown: '5m' }), startSlackApi()]);
  slack.usergroups.set(ONCALL, [ERIN, 'UOTHER01']);
  (fe.config.services[0] as { triggers?: unknown }).triggers = {
    approval: { planned: { policy: 'approve', timeout: '60s' }, unplanned: { policy: 'approve' } },
    approvers: { planned: [ALICE, CAROL, ONCALL], unplanned: [CAROL, ONCALL] },
    twoApprovers: { unplanned: true },
  };
  (fe.config as { triggers?: unknown }).triggers = {
    slack: { channel: RUNS, port: 0, pollInterval: '300ms', readinessPollInterval: '300ms', apiUrl: slack.apiUrl },
  };
  bot = createSlackBot({
    config: fe.config,
    temporal: fe.client,
    secrets: { botToken: 'xoxb-test', signingSecret: SECRET, decisionKey: SLACK_DECISION_KEY },
    log: () => undefined,
  });
  const { port } = await bot.start();
  botUrl = `http://127.0.0.1:${port}/slack/events`;
});

afterAll(async () => {
  await bot?.stop();
  await Promise.allSettled([fe?.teardown(), slack?.close()]);
});

async function send(
  body: string,
  headers: Record<string, string>,
  url = botUrl,
): Promise<{ status: number; text: string }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body,
  });
  const raw = await res.text();
  let text = raw;
  try {
    text = String((JSON.parse(raw) as { text?: string }).text ?? raw);
  } catch {
    // not JSON (an empty ack, or a 401)
  }
  return { status: res.status, text };
}

function slashBody(user: string, text: string, responseUrl = slack.responseUrl()): string {
  return new URLSearchParams({
    token: 'legacy',
    team_id: 'T0TEST',
    team_domain: 'test',
    channel_id: 'C0OPS001',
    channel_name: 'ops',
    user_id: user,
    user_name: user.toLowerCase(),
    command: '/regionshift',
    text,
    response_url: responseUrl,
    trigger_id: '1.2.3',
    api_app_id: 'A0TEST',
  }).toString();
}

/** The final answer: a slow `status` answers in two parts (finalAnswer). */
async function slash(user: string, text: string): Promise<{ status: number; text: string }> {
  const responseUrl = slack.responseUrl();
  const body = slashBody(user, text, responseUrl);
  return finalAnswer(slack, responseUrl, await send(body, slackSignature(SECRET, body)));
}

async function click(user: string, actionId: string, message: Message, url = botUrl): Promise<number> {
  const button = (message.blocks as { type: string; elements?: { action_id: string; value: string }[] }[])
    .find((b) => b.type === 'actions')!
    .elements!.find((e) => e.action_id === actionId)!;
  const payload = {
    type: 'block_actions',
    user: { id: user, username: user.toLowerCase(), name: user.toLowerCase(), team_id: 'T0TEST' },
    api_app_id: 'A0TEST',
    token: 'legacy',
    container: { type: 'message', message_ts: message.ts, channel_id: RUNS, is_ephemeral: false },
    trigger_id: '1.2.3',
    team: { id: 'T0TEST', domain: 'test' },
    channel: { id: RUNS, name: 'runs' },
    message: { ts: message.ts, text: message.text },
    response_url: slack.responseUrl(),
    actions: [
      {
        action_id: actionId,
        block_id: 'approval:approval',
        text: { type: 'plain_text', text: actionId },
        value: button.value,
        type: 'button',
        action_ts: '1700000000.1',
      },
    ],
  };
  const body = new URLSearchParams({ payload: JSON.stringify(payload) }).toString();
  return (await send(body, slackSignature(SECRET, body), url)).status;
}

const runMessages = (): Message[] => slack.messages.filter((m) => m.channel === RUNS && !m.thread_ts);
const thread = (m: Message): string[] => slack.messages.filter((x) => x.thread_ts === m.ts).map((x) => x.text);
const blockText = (m: Message): string => JSON.stringify(m.blocks);
const ephemeralTo = (user: string): string[] =>
  slack
    .callsOf('chat.postEphemeral')
    .filter((c) => c.args.user === user)
    .map((c) => String(c.args.text));

async function messageOf(runId: string, until: (m: Message) => boolean, what: string): Promise<Message> {
  return waitFor(
    what,
    async () => {
      const m = slack.messages.find((x) => !x.thread_ts && x.metadata?.event_payload.run_id === runId);
      return m && until(m) ? m : undefined;
    },
    30_000,
    100,
  );
}

async function progress(): Promise<RunRecord> {
  return fe.client.workflow.getHandle(runWorkflowId(SERVICE)).query<RunRecord>('progress');
}

describe('requests Slack did not sign', () => {
  it('a wrong signature and a correctly signed but six-minute-old request get 401 and no action', async () => {
    const before = slack.calls.length;
    const body = slashBody(ALICE, `failover ${SERVICE} to ${EAST}`);
    expect((await send(body, slackSignature('not-the-secret', body))).status).toBe(401);
    expect((await send(body, slackSignature(SECRET, body, Math.floor(Date.now() / 1000) - 360))).status).toBe(401);
    expect((await send(body, {})).status).toBe(401);
    await new Promise((r) => setTimeout(r, 700)); // two follower ticks
    expect(slack.calls.slice(before).filter((c) => !['conversations.history', 'auth.test'].includes(c.method))).toEqual(
      [],
    ); // auth.test: Bolt checks its token at start
    await expect(fe.client.workflow.getHandle(runWorkflowId(SERVICE)).describe()).rejects.toThrow(/not found/);
  });
});

describe('the slash command', () => {
  it('answers help, bad commands and bad input with usage, never a stack trace; failback and reconcile with no unplanned failover are refused', async () => {
    const help = await slash(ALICE, 'help');
    expect(help).toMatchObject({ status: 200 });
    expect(help.text).toContain('`/regionshift failover <service> to <region> [unplanned]`');
    const bad = await slash(ALICE, 'frobnicate now');
    expect(bad.text).toContain('unknown command `frobnicate`');
    expect(bad.text).toContain('`/regionshift status [service]`');
    const region = await slash(ALICE, `failover ${SERVICE} to mars-west-9`);
    expect(region.text).toContain('unknown region "mars-west-9" for ledger; its regions: us-west-2, us-east-1');
    expect(region.text).toContain('`/regionshift help`');
    const service = await slash(ALICE, 'failover payments to us-east-1');
    expect(service.text).toContain('unknown service "payments"');
    const grammar = await slash(ALICE, `failover ${SERVICE} ${EAST}`);
    expect(grammar.text).toContain('`failover` needs a service and a target');
    for (const r of [bad, region, service, grammar]) expect(r.text).not.toMatch(/\n\s+at /);
    // (test/slack-cases.test.ts runs them after a real unplanned failover.)
    const failback = await slash(ALICE, `failback ${SERVICE}`);
    expect(failback.text).toBe(
      'Refused: ledger has no unplanned failover to fail back from: the latest runs show none since the last planned one (regionshift status ledger)',
    );
    expect((await slash(ALICE, `reconcile ${SERVICE}`)).text).toBe(
      'Refused: ledger has no unplanned failover to reconcile: the latest runs show none since the last planned one (regionshift status ledger)',
    );
    expect((await slash(ALICE, 'status')).text).toContain('*ledger*: no runs yet');
  });

  it('status slower than the bot waits (here: a bot that does not wait) says at once that it is reading, and the status follows through response_url', async () => {
    const impatient = createSlackBot({
      config: fe.config,
      temporal: fe.client,
      secrets: { botToken: 'xoxb-test', signingSecret: SECRET, decisionKey: SLACK_DECISION_KEY },
      log: () => undefined,
      statusAckMs: 0,
    });
    const url = `http://127.0.0.1:${(await impatient.start()).port}/slack/events`;
    try {
      const responseUrl = slack.responseUrl();
      const body = slashBody(CAROL, `status ${SERVICE}`, responseUrl);
      const first = await send(body, slackSignature(SECRET, body), url);
      expect(first).toEqual({ status: 200, text: 'Reading the status of ledger…' });
      const final = await finalAnswer(slack, responseUrl, first);
      expect(final.text).toBe('*ledger*: no runs yet\nreadiness: not evaluated yet (`regionshift readiness`)');
      const path = new URL(responseUrl).pathname;
      expect(slack.responses.filter((r) => r.path === path).map((r) => r.body.response_type)).toEqual(['ephemeral']);
      // What a bot that waits answers in one part (or two, under load) is the same text.
      expect((await slash(CAROL, `status ${SERVICE}`)).text).toBe(final.text);
      // Bad input is answered at once, in one part.
      const bad = slashBody(CAROL, 'status payments');
      const unknown = await send(bad, slackSignature(SECRET, bad), url);
      expect(unknown.text).toMatch(/^unknown service "payments"/);
      expect(unknown.text).toContain('`/regionshift status [service]`');
    } finally {
      await impatient.stop();
    }
  });
});

describe('a run from Slack', () => {
  let message: Message;
  let runId: string;

  it('failover: one message in the channel with the steps and the Approve / Reject buttons, a thread of events', async () => {
    const started = await slash(ALICE, `failover ${SERVICE} to ${EAST}`);
    expect(started.text).toContain(
      'Started `regionshift-ledger`: failover of ledger to us-east-1 (planned), requested by <@UALICE01>; approval: needs approval within 60s',
    );
    const rec = await waitFor('the approval gate', async () => (await progress()).pendingApproval && progress());
    runId = rec.runId;
    expect(rec).toMatchObject({ requestedBy: ALICE, trigger: `slack:${ALICE}`, mode: 'planned' });
    message = await messageOf(runId, (m) => blockText(m).includes(ACTION.approve), 'the run message with buttons');
    expect(message.text).toBe('failover ledger: us-west-2 → us-east-1 (planned) RUNNING');
    const text = blockText(message);
    expect(text).toContain('✅ `preflight`');
    expect(text).toContain('⏳ `approval`');
    expect(text).toContain('⚪ `fence`');
    expect(text).toContain('requested by <@UALICE01> · trigger `slack:UALICE01`');
    expect(text).toMatch(
      /lag: \d+ bytes \(source [0-9A-F]+\/[0-9A-F]+, target replayed [0-9A-F]+\/[0-9A-F]+\) at preflight/,
    );
    expect(text).toContain(`/namespaces/default/workflows/regionshift-ledger/${runId}/history|Temporal UI>`);
    expect(text).toContain('Waiting for approval:* policy asks a person to approve this failover');
    await waitFor('thread events', async () => thread(message).some((t) => t.startsWith('⏳ waiting for approval')));
    expect(thread(message)[0]).toBe(
      '▶️ failover of ledger to us-east-1 (planned) started by <@UALICE01>, trigger `slack:UALICE01`',
    );
  });

  it("a stranger's click is answered privately and changes nothing; the requester is refused by the workflow", async () => {
    expect(await click(MALLORY, ACTION.approve, message)).toBe(200);
    await waitFor('the answer to mallory', async () => ephemeralTo(MALLORY).length > 0);
    expect(ephemeralTo(MALLORY)[0]).toBe(
      'You may not approve planned runs of ledger: approvers are <@UALICE01>, <@UCAROL01>, <!subteam^SONCALL01>. Nothing was changed.',
    );
    expect(await click(ALICE, ACTION.approve, message)).toBe(200);
    await waitFor('the answer to alice', async () => ephemeralTo(ALICE).length > 0);
    expect(ephemeralTo(ALICE)[0]).toBe(
      'Refused: <@UALICE01> requested this run and cannot approve it. Nothing was changed.',
    );
    const rec = await progress();
    expect(rec.pendingApproval).toBeDefined();
    expect(rec.approvals).toEqual([]);
    expect(runMessages()).toHaveLength(1);
  });

  it("an approver (through a user group) approves: the button answers with the workflow's verdict, the message follows the run to the end", async () => {
    expect(await click(ERIN, ACTION.approve, message)).toBe(200);
    await waitFor('the answer to erin', async () => ephemeralTo(ERIN).length > 0);
    expect(ephemeralTo(ERIN)[0]).toBe('👍 approved by <@UERIN001>');
    const rec = await awaitRecord(fe.client, runWorkflowId(SERVICE), runId);
    expect(rec.status).toBe('succeeded');
    expect(rec.approvals).toEqual([
      expect.objectContaining({ by: ERIN, decision: 'approve', signed: `${ERIN} (via Slack, signed by the bot)` }),
    ]);
    const done = await messageOf(runId, (m) => m.text.endsWith('SUCCEEDED'), 'the final message');
    expect(done.ts).toBe(message.ts); // updated in place
    expect(done.updates).toBeGreaterThan(0);
    const text = blockText(done);
    for (const step of [
      'preflight',
      'approval',
      'fence',
      'confirm-lag',
      'promote',
      'shift-traffic',
      'verify',
      'rejoin',
    ])
      expect(text).toContain(`✅ \`${step}\``);
    expect(text).toMatch(
      /lag: target replayed [0-9A-F]+\/[0-9A-F]+; \d+ bytes behind at the fence, caught up in \d+ ms/,
    );
    expect(text).toContain('RPO 0 (fenced, lag confirmed)');
    expect(text).not.toContain(ACTION.approve);
    await waitFor('the end in the thread', async () => thread(done).some((t) => t.startsWith('🏁 run succeeded')));
    const events = thread(done);
    expect(events).toContain('👍 approved by <@UERIN001> at `approval`: from Slack');
    expect(events.filter((t) => t.startsWith('✅ `promote` [us-east-1]'))).toHaveLength(1);
    expect(runMessages()).toHaveLength(1);
  });

  it('abort: strangers may not, the requester may; the message ends ABORTED', async () => {
    expect((await slash(ALICE, `failover ${SERVICE} to ${WEST}`)).text).toContain('Started `regionshift-ledger`');
    const rec = await waitFor('the approval gate', async () => (await progress()).pendingApproval && progress());
    await messageOf(rec.runId, (m) => blockText(m).includes(ACTION.approve), 'the second run message');
    expect((await slash(MALLORY, `abort ${SERVICE} not my call`)).text).toBe(
      'You may not abort planned runs of ledger: only its requester or <@UALICE01>, <@UCAROL01>, <!subteam^SONCALL01>. Nothing was changed.',
    );
    expect((await progress()).status).toBe('running');
    expect((await slash(ALICE, `abort ${SERVICE} wrong change window`)).text).toBe(
      '`regionshift-ledger`: abort requested by <@UALICE01>: compensating',
    );
    expect(await awaitRecord(fe.client, runWorkflowId(SERVICE), rec.runId)).toMatchObject({
      status: 'aborted',
      error: 'aborted by UALICE01: wrong change window',
    });
    const m = await messageOf(rec.runId, (x) => x.text.endsWith('ABORTED'), 'the aborted message');
    expect(blockText(m)).toContain('*error:* aborted by <@UALICE01>: wrong change window');
    await waitFor('the abort in the thread', async () =>
      thread(m).includes('🛑 abort requested by <@UALICE01>: wrong change window'),
    );
    expect(runMessages()).toHaveLength(2);
    expect((await slash(CAROL, `status ${SERVICE}`)).text).toContain(
      '*failover ledger: us-east-1 → us-west-2 (planned) ABORTED*',
    );
  });

  it('unplanned runs need two distinct approvers: a bot the workers do not trust is refused, the first approval is counted, the same person twice is refused', async () => {
    expect((await slash(ALICE, `failover ${SERVICE} to ${WEST} unplanned`)).text).toContain(
      'approval: needs approval within 30s, 2 distinct approvers',
    );
    const rec = await waitFor('the approval gate', async () => (await progress()).pendingApproval && progress());
    const m = await messageOf(rec.runId, (x) => blockText(x).includes(ACTION.approve), 'the unplanned run message');
    expect(blockText(m)).toContain('needs 2 approvers');
    expect(await click(ALICE, ACTION.approve, m)).toBe(200);
    await waitFor('the answer to alice', async () => ephemeralTo(ALICE).length > 1);
    expect(ephemeralTo(ALICE).at(-1)).toBe(
      'You may not approve unplanned runs of ledger: approvers are <@UCAROL01>, <!subteam^SONCALL01>. Nothing was changed.',
    );
    // A bot whose decision key the workers do not share (Slack trusts it, the workers do not): refused, nothing counted.
    const rogue = createSlackBot({
      config: fe.config,
      temporal: fe.client,
      secrets: {
        botToken: 'xoxb-test',
        signingSecret: SECRET,
        decisionKey: 'not-the-key-the-workers-share-0123456789',
      },
      log: () => undefined,
    });
    // Only its receiver: its follower would post run messages of its own.
    const server = (await rogue.app.start({ port: 0, host: '127.0.0.1' })) as unknown as Server;
    try {
      const rogueUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/slack/events`;
      const seen = ephemeralTo(CAROL).length;
      expect(await click(CAROL, ACTION.approve, m, rogueUrl)).toBe(200);
      await waitFor('the answer to carol from the rogue bot', async () => ephemeralTo(CAROL).length > seen);
      expect(ephemeralTo(CAROL).at(-1)).toBe(
        "Refused: the approval of regionshift-ledger by <@UCAROL01> carries a Slack bot signature that does not verify: the bot's REGIONSHIFT_SLACK_DECISION_KEY differs from the workers', or the decision was altered. Nothing was changed.",
      );
      expect((await progress()).pendingApproval?.approvedBy).toBeUndefined();
    } finally {
      await rogue.app.stop();
    }
    const before = ephemeralTo(CAROL).length;
    expect(await click(CAROL, ACTION.approve, m)).toBe(200);
    await waitFor('the answer to carol', async () => ephemeralTo(CAROL).length > before);
    expect(ephemeralTo(CAROL).at(-1)).toBe('👍 approval 1 of 2 by <@UCAROL01>; waiting for another approver');
    expect(await click(CAROL, ACTION.approve, m)).toBe(200);
    await waitFor('the second answer to carol', async () => ephemeralTo(CAROL).length > before + 1);
    expect(ephemeralTo(CAROL).at(-1)).toBe(
      'Refused: <@UCAROL01> has already approved; a second, different approver is needed. Nothing was changed.',
    );
    await messageOf(
      rec.runId,
      (x) => blockText(x).includes('approved so far by <@UCAROL01> (1 of 2)'),
      'the message counting approvals',
    );
    expect((await slash(CAROL, `abort ${SERVICE} second approver is asleep`)).text).toBe(
      '`regionshift-ledger`: abort requested by <@UCAROL01>: compensating',
    );
    expect(await awaitRecord(fe.client, runWorkflowId(SERVICE), rec.runId)).toMatchObject({
      status: 'aborted',
      mode: 'unplanned',
    });
  });

  it('plan answers through response_url with the plan; a restarted bot finds its messages again and posts nothing twice', async () => {
    const ack = await slash(CAROL, `plan ${SERVICE} to ${WEST}`);
    expect(ack.text).toBe('Planning ledger → us-west-2 (planned)… the plan follows here.');
    const plan = await waitFor('the plan', async () =>
      slack.responses.find((r) => String(r.body.text).includes('plan:')),
    );
    expect(String(plan.body.text)).toContain('failover ledger: us-east-1 → us-west-2 (dry run) SUCCEEDED');
    expect(String(plan.body.text)).toContain('[region.us-east-1]');
    expect(plan.body.response_type).toBe('ephemeral');

    await bot.stop();
    const posts = slack.callsOf('chat.postMessage').length;
    bot = createSlackBot({
      config: fe.config,
      temporal: fe.client,
      secrets: { botToken: 'xoxb-test', signingSecret: SECRET, decisionKey: SLACK_DECISION_KEY },
      log: () => undefined,
    });
    // Clicks after this one go to the restarted bot.
    botUrl = `http://127.0.0.1:${(await bot.start()).port}/slack/events`;
    await waitFor(
      'the new bot reading the channel back',
      async () => slack.callsOf('conversations.replies').length >= 2,
    );
    await new Promise((r) => setTimeout(r, 1000));
    expect(slack.callsOf('chat.postMessage').length).toBe(posts);
    expect(runMessages()).toHaveLength(3); // dry runs get no run message
  });
});

describe('readiness in Slack', () => {
  const readinessNow = () => latestReadiness(fe.client, fe.config, fe.config.services[0]!, { now: true });
  const alerts = (): Message[] =>
    slack.messages.filter((m) => m.channel === RUNS && m.metadata?.event_type === READINESS_EVENT_TYPE);

  it('status shows the last evaluation; a failing one is said in the channel once (a restarted bot too), and so is the recovery', async () => {
    const ok = await readinessNow();
    expect(ok.status, formatReadiness(ok)).toBe('pass');
    const writer = ok.checks.find((c) => c.check === 'writer')!.region!;
    const standby = writer === WEST ? EAST : WEST;
    const shown = (await slash(CAROL, `status ${SERVICE}`)).text;
    expect(shown).toContain(
      `readiness: ✅ *PASS* (evaluated ${ok.at}) · failover targets now: ${standby}\nto ${standby}: ✅ pass (planned dry run)`,
    );
    // Evaluated after the service's last run: nothing says it is from before it.
    expect(shown).not.toContain('from before this run ended');
    await waitFor('the bot to read the passing evaluation', async () => bot.readiness.seen.get(SERVICE) === ok.at);
    expect(alerts()).toEqual([]); // ready, and never said otherwise: nothing to say

    await stop(fe.pg.bin, fe.nodes[standby]!, 'fast');
    try {
      const down = await readinessNow();
      expect(down.status, formatReadiness(down)).toBe('fail');
      const alert = await waitFor('the failing alert', async () => alerts()[0]);
      expect(alert.text).toContain(
        `🚨 *ledger* is not ready to fail over (evaluated ${down.at}):\n• 🚨 region [${standby}]: ${standby}'s database is unreachable: `,
      );
      expect(alert.text).toContain(
        `• 🚨 preflight [${standby}]: a planned failover to ${standby} would be refused: target ${standby} is unreachable: `,
      );
      expect(alert.text.split('\n').at(-1)).toBe(
        'Details: `/regionshift status ledger` or `regionshift readiness --service ledger`',
      );
      const status = (await slash(CAROL, `status ${SERVICE}`)).text;
      expect(status).toContain(
        `readiness: 🚨 *FAIL* (evaluated ${down.at}) · no failover target now\n🚨 region [${standby}]: `,
      );

      // Evaluated again and still failing: no second message, from this bot or a restarted one.
      const again = await readinessNow();
      expect(again.status).toBe('fail');
      await bot.stop();
      bot = createSlackBot({
        config: fe.config,
        temporal: fe.client,
        secrets: { botToken: 'xoxb-test', signingSecret: SECRET, decisionKey: SLACK_DECISION_KEY },
        log: () => undefined,
      });
      botUrl = `http://127.0.0.1:${(await bot.start()).port}/slack/events`;
      await waitFor(
        'the restarted bot to read the second failing evaluation',
        async () => bot.readiness.seen.get(SERVICE) === again.at,
      );
      expect(alerts()).toHaveLength(1);
    } finally {
      await start(fe.pg.bin, fe.nodes[standby]!);
    }
    const up = await waitFor(
      'the restarted standby to pass',
      async () => {
        const e = await readinessNow();
        return e.status === 'pass' ? e : undefined;
      },
      30_000,
      500,
    );
    await waitFor('the recovery message', async () => alerts().length === 2);
    expect(alerts()[1]!.text).toBe(
      `✅ *ledger* is ready to fail over again (evaluated ${up.at}): failover targets ${standby}`,
    );
  });
});

// The Retry / Skip / Compensate buttons of a step that failed with onFailure: ask: clicked in a
// correctly signed block_actions payload, the bot checks the clicker, signs the decision, the run
// reacts, and the run's message is updated in place. The failing step is an http.call to a real
// local server (node:http) whose answer the test changes: the cause of the failure, fixed.
describe('step decisions from Slack (onFailure: ask)', () => {
  let app: Server;
  let appUrl: string;
  let answer = { status: 503, body: 'app still starting' };

  beforeAll(async () => {
    app = createServer((req, res) => {
      req.resume();
      req.on('end', () => res.writeHead(answer.status, { 'content-type': 'text/plain' }).end(answer.body));
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    appUrl = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise((r) => app?.close(r));
  });

  // A test that fails half-way leaves its run waiting for a decision; the next one needs the service free.
  afterEach(async () => {
    await fe.client.workflow
      .getHandle(runWorkflowId(SERVICE))
      .terminate('test over')
      .catch(() => undefined);
  });

  // Loaded from a file as the CLI loads runbooks: the step's params get their defaults there.
  const asking = (path: string) => {
    const file = join(mkdtempSync(join(tmpdir(), 'regionshift-slack-ask-')), 'failover.yaml');
    writeFileSync(
      file,
      [
        'kind: failover',
        'steps:',
        '  - {id: preflight, action: preflight}',
        `  - {id: tell-app, action: http.call, placement: control, onFailure: ask, params: {url: "${appUrl}${path}", body: {primary: "{{target}}"}, retries: 0}}`,
      ].join('\n'),
    );
    return loadRunbook(file);
  };

  async function waitingMessage(runId: string): Promise<Message> {
    return messageOf(runId, (m) => blockText(m).includes(STEP_ACTION.retry), 'the run message with the step buttons');
  }

  it("Retry: a stranger is answered privately and nothing changes; an approver's click retries the fixed step, the run finishes, the message loses its buttons", async () => {
    answer = { status: 503, body: 'app still starting' };
    const started = await startRun(fe.client, fe.input({ target: WEST, requestedBy: 'test' }, asking('/ready')));
    await waitFor(
      'the step to wait for a decision',
      async () => (await progress()).pendingDecision?.stepId === 'tell-app',
    );
    const message = await waitingMessage(started.runId);
    expect(blockText(message)).toContain(
      `Step \`tell-app\` failed and waits for a person:* POST ${appUrl}/ready answered 503: app still starting`,
    );

    expect(await click(MALLORY, STEP_ACTION.retry, message)).toBe(200);
    await waitFor('the answer to mallory', async () => ephemeralTo(MALLORY).at(-1)?.includes('retry'));
    expect(ephemeralTo(MALLORY).at(-1)).toBe(
      'You may not retry steps of planned runs of ledger: approvers are <@UALICE01>, <@UCAROL01>, <!subteam^SONCALL01>. Nothing was changed.',
    );
    expect((await progress()).pendingDecision?.stepId).toBe('tell-app');

    answer = { status: 200, body: 'ready' };
    const seen = ephemeralTo(CAROL).length;
    expect(await click(CAROL, STEP_ACTION.retry, message)).toBe(200);
    await waitFor('the answer to carol', async () => ephemeralTo(CAROL).length > seen);
    expect(ephemeralTo(CAROL).at(-1)).toBe('retrying step tell-app (by <@UCAROL01>)');
    const rec = await awaitRecord(fe.client, started.workflowId, started.runId);
    expect(rec.status).toBe('succeeded');
    expect(rec.operator).toEqual([
      expect.objectContaining({
        action: 'retry',
        stepId: 'tell-app',
        by: CAROL,
        reason: 'retry from Slack',
        signed: `${CAROL} (via Slack, signed by the bot)`,
      }),
    ]);
    expect(rec.steps.find((s) => s.id === 'tell-app')).toMatchObject({ status: 'done', detail: 'POST → 200: ready' });
    const done = await messageOf(started.runId, (m) => m.text.endsWith('SUCCEEDED'), 'the final message');
    expect(done.ts).toBe(message.ts); // updated in place
    expect(blockText(done)).not.toContain(STEP_ACTION.retry);
    expect(blockText(done)).toContain('✅ `tell-app`');
    expect(blockText(done)).toContain('retry tell-app by <@UCAROL01>: \\"retry from Slack\\"');
  });

  it("Compensate: the run stops and undoes what it did, the decision in the run's record and in its message", async () => {
    answer = { status: 500, body: 'read-only' };
    const started = await startRun(fe.client, fe.input({ target: WEST, requestedBy: 'test' }, asking('/announce')));
    await waitFor(
      'the step to wait for a decision',
      async () => (await progress()).pendingDecision?.stepId === 'tell-app',
    );
    const message = await waitingMessage(started.runId);
    const seen = ephemeralTo(ERIN).length;
    expect(await click(ERIN, STEP_ACTION.compensate, message)).toBe(200);
    await waitFor('the answer to erin', async () => ephemeralTo(ERIN).length > seen);
    const rec = await awaitRecord(fe.client, started.workflowId, started.runId);
    expect(rec.status).toBe('failed');
    expect(rec.error).toBe(
      `step tell-app failed (POST ${appUrl}/announce answered 500: read-only); ${ERIN} chose to compensate: compensate from Slack`,
    );
    expect(rec.operator!.map((o) => [o.action, o.stepId, o.by])).toEqual([['compensate', 'tell-app', ERIN]]);
    const ended = await messageOf(started.runId, (m) => m.text.endsWith('FAILED'), 'the failed message');
    expect(ended.ts).toBe(message.ts);
    expect(blockText(ended)).not.toContain(STEP_ACTION.compensate);
    expect(blockText(ended)).toContain('compensate tell-app by <@UERIN001>');
  });
});
