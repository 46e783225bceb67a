// Reconciliation from Slack, on real parts: a real Bolt app receiving signed slash commands and
// block_actions over HTTP, its Web API client pointed at the local recorder, the Temporal dev
// server, a PostgreSQL pair and moto. An unplanned failover leaves a real divergence with
// engineered conflicts (test/support/divergence.ts); `reconcile` from Slack opens cases, which are
// listed with their buttons and decided by clicks, each answered with the system's verdict.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runWorkflowId } from '../src/contract/runbook/ids';
import type { ReconcileCase } from '../src/contract/reconcile';
import { awaitRecord } from '../src/lib/runs/client';
import { listCases } from '../src/lib/runs/reconcile';
import { CASE_ACTION, CASES_EVENT_KEY } from '../src/slack/blocks';
import { createSlackBot, type SlackBot } from '../src/slack/bot';
import { startRigs } from './support/rigs';
import { createFailoverEnv, SERVICE, type FailoverEnv } from './support/failover-env';
import { badBalances, EAST, journalHas, makeDivergence, sql, WEST, type DivergenceRun } from './support/divergence';
import { slackSignature, startSlackApi, type Message, type SlackApi } from './support/slack-api';
import { waitFor } from './support/wait';
import { SLACK_DECISION_KEY } from './support/signing';

const SECRET = 'test-signing-secret';
const RUNS = 'C0RUNS01';
const OPS = 'C0OPS001';
const ALICE = 'UALICE01'; // approves planned runs only: may override a failback, may not decide cases
const CAROL = 'UCAROL01'; // approves unplanned runs: decides cases
const ERIN = 'UERIN001'; // decides cases through the on-call user group
const MALLORY = 'UMALLORY'; // nobody
const ONCALL = 'SONCALL01';

let fe: FailoverEnv;
let d: DivergenceRun;
let slack: SlackApi;
let bot: SlackBot;
let botUrl: string;
let responses = 0;

beforeAll(async () => {
  [fe, slack] = await startRigs([
    createFailoverEnv({ approval: { planned: 'none', unplanned: 'none' }, allowDataLoss: true, rpoBudgetSeconds: 600 }),
    startSlackApi(),
  ]);
  slack.usergroups.set(ONCALL, [ERIN, 'UOTHER01']);
  (fe.config.services[0] as { triggers?: unknown }).triggers = {
    approval: { planned: { policy: 'auto' }, unplanned: { policy: 'auto' } },
    approvers: { planned: [ALICE, CAROL], unplanned: [CAROL, ONCALL] },
  };
  (fe.config as { triggers?: unknown }).triggers = {
    slack: { channel: RUNS, port: 0, pollInterval: '300ms', apiUrl: slack.apiUrl },
  };
  d = await makeDivergence(fe, { engineered: true });
  await d.load.stop();
  bot = createSlackBot({
    config: fe.config,
    temporal: fe.client,
    secrets: { botToken: 'xoxb-test', signingSecret: SECRET, decisionKey: SLACK_DECISION_KEY },
    log: () => undefined,
  });
  const { port } = await bot.start();
  botUrl = `http://127.0.0.1:${port}/slack/events`;
}, 300_000);

afterAll(async () => {
  await bot?.stop();
  await d?.load.stop();
  await Promise.allSettled([fe?.teardown(), slack?.close()]);
});

// --- Slack, as the bot sees it ---------------------------------------------------------------

interface Answer {
  status: number;
  text: string;
  /** Where the bot answers later (response_url). */
  responsePath: string;
}

async function send(body: string): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(botUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...slackSignature(SECRET, body) },
    body,
  });
  const raw = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(raw) as Record<string, unknown>;
  } catch {
    // an empty ack
  }
  return { status: res.status, json };
}

async function slash(user: string, text: string): Promise<Answer> {
  const responsePath = `/response/${++responses}`;
  const body = new URLSearchParams({
    token: 'legacy',
    team_id: 'T0TEST',
    team_domain: 'test',
    channel_id: OPS,
    channel_name: 'ops',
    user_id: user,
    user_name: user.toLowerCase(),
    command: '/regionshift',
    text,
    response_url: `${slack.url}${responsePath}`,
    trigger_id: '1.2.3',
    api_app_id: 'A0TEST',
  }).toString();
  const { status, json } = await send(body);
  return { status, text: String(json.text ?? ''), responsePath };
}

/** What the bot sent to a response_url, in order. */
const sentTo = (path: string): Record<string, unknown>[] =>
  slack.responses.filter((r) => r.path === path).map((r) => r.body);

async function laterAnswer(a: { responsePath: string }, n = 1): Promise<Record<string, unknown>[]> {
  return waitFor(
    `answer ${n} at ${a.responsePath}`,
    async () => sentTo(a.responsePath).length >= n && sentTo(a.responsePath),
    60_000,
  );
}

/** Every text in a Block Kit tree, joined: what a person would read. */
function readable(blocks: unknown): string {
  const out: string[] = [];
  const walk = (x: unknown): void => {
    if (Array.isArray(x)) x.forEach(walk);
    else if (x && typeof x === 'object') {
      const o = x as Record<string, unknown>;
      if (o.type === 'mrkdwn' || o.type === 'plain_text') out.push(String(o.text));
      // Confirm dialogs repeat the proposal; the page is what counts here.
      for (const [k, v] of Object.entries(o)) if (k !== 'confirm') walk(v);
    }
  };
  walk(blocks);
  return out.join('\n');
}

function buttonsOf(blocks: unknown[], caseId: string): { action_id: string; value: string }[] {
  const b = (blocks as { type: string; block_id?: string; elements?: { action_id: string; value: string }[] }[]).find(
    (x) => x.type === 'actions' && x.block_id === `case:${caseId}`,
  );
  return b?.elements ?? [];
}

/** A signed block_actions click on a case button; returns the click's response_url path. */
async function clickCase(
  user: string,
  action: keyof typeof CASE_ACTION,
  blocks: unknown[],
  caseId: string,
  where: { ephemeral: true } | { message: Message },
): Promise<{ status: number; responsePath: string }> {
  const button = buttonsOf(blocks, caseId).find((e) => e.action_id === CASE_ACTION[action]);
  if (!button) throw new Error(`no ${action} button for case ${caseId}`);
  return clickValue(user, CASE_ACTION[action], button.value, `case:${caseId}`, where);
}

async function clickValue(
  user: string,
  actionId: string,
  value: string,
  blockId: string,
  where: { ephemeral: true } | { message: Message },
): Promise<{ status: number; responsePath: string }> {
  const responsePath = `/response/${++responses}`;
  const container =
    'message' in where
      ? { type: 'message', message_ts: where.message.ts, channel_id: where.message.channel, is_ephemeral: false }
      : { type: 'message', message_ts: '1700000001.000200', channel_id: OPS, is_ephemeral: true };
  const payload = {
    type: 'block_actions',
    user: { id: user, username: user.toLowerCase(), name: user.toLowerCase(), team_id: 'T0TEST' },
    api_app_id: 'A0TEST',
    token: 'legacy',
    container,
    trigger_id: '1.2.3',
    team: { id: 'T0TEST', domain: 'test' },
    channel: { id: container.channel_id, name: 'x' },
    ...('message' in where ? { message: { ts: where.message.ts, text: where.message.text } } : {}),
    response_url: `${slack.url}${responsePath}`,
    actions: [
      {
        action_id: actionId,
        block_id: blockId,
        text: { type: 'plain_text', text: actionId },
        value,
        type: 'button',
        action_ts: '1700000000.1',
      },
    ],
  };
  const { status } = await send(new URLSearchParams({ payload: JSON.stringify(payload) }).toString());
  return { status, responsePath };
}

const thread = (m: Message): Message[] => slack.messages.filter((x) => x.thread_ts === m.ts);

async function messageOf(runId: string, until: (m: Message) => boolean, what: string): Promise<Message> {
  return waitFor(
    what,
    async () => {
      const m = slack.messages.find((x) => !x.thread_ts && x.metadata?.event_payload.run_id === runId);
      return m && until(m) ? m : undefined;
    },
    60_000,
  );
}

async function latestRunId(): Promise<string> {
  return (await fe.client.workflow.getHandle(runWorkflowId(SERVICE)).describe()).runId;
}

async function caseRow(
  id: string,
): Promise<{ status: string; resolution: string | null; resolved_by: string | null; note: string | null }> {
  return (
    await sql<{ status: string; resolution: string | null; resolved_by: string | null; note: string | null }>(
      fe,
      EAST,
      'SELECT status, resolution, resolved_by, note FROM regionshift.reconcile_cases WHERE id = $1',
      [id],
    )
  )[0]!;
}

const open = (): Promise<ReconcileCase[]> => listCases(fe.client, fe.config, { service: SERVICE, status: 'open' });

// --- the tests ------------------------------------------------------------------------------

describe('bad input', () => {
  it('is answered with a clear message and usage, never a stack trace; help names the new commands', async () => {
    const help = await slash(ALICE, 'help');
    for (const line of [
      '`/regionshift reconcile <service>`',
      '`/regionshift cases [service [case id]]`',
      '`/regionshift failback <service> [override: <reason>]`',
    ])
      expect(help.text).toContain(line);
    expect(help.text).not.toContain('not available in Slack');

    const answers = {
      reconcile: await slash(ALICE, 'reconcile'),
      reconcileTwo: await slash(ALICE, `reconcile ${SERVICE} ${EAST}`),
      reconcileUnknown: await slash(ALICE, 'reconcile payments'),
      failback: await slash(ALICE, 'failback'),
      failbackNoReason: await slash(ALICE, `failback ${SERVICE} override:`),
      failbackJunk: await slash(ALICE, `failback ${SERVICE} right now`),
      failbackUnknown: await slash(ALICE, 'failback payments'),
      casesUnknown: await slash(CAROL, 'cases payments'),
      casesJunk: await slash(CAROL, `cases ${SERVICE} a b`),
    };
    expect(answers.reconcile.text).toContain('`reconcile` needs exactly one service: `reconcile <service>`');
    expect(answers.reconcileTwo.text).toContain('`reconcile` needs exactly one service');
    expect(answers.reconcileUnknown.text).toContain('unknown service "payments"; known: ledger');
    expect(answers.failback.text).toContain('`failback` needs a service: `failback <service> [override: <reason>]`');
    expect(answers.failbackNoReason.text).toContain('`override:` needs a reason: it is recorded in the run');
    expect(answers.failbackJunk.text).toContain('unexpected `right now`');
    expect(answers.failbackUnknown.text).toContain('unknown service "payments"');
    expect(answers.casesUnknown.text).toContain('unknown service "payments"');
    expect(answers.casesJunk.text).toContain('`cases` takes a service and a case id at most');
    for (const a of Object.values(answers)) {
      expect(a.status).toBe(200);
      expect(a.text).toContain('`/regionshift help`'); // usage follows
      expect(a.text).not.toMatch(/\n\s+at /);
    }
    // Nothing was started by any of them: the latest run is still the unplanned failover.
    expect(await latestRunId()).toBe(d.failover.runId);
  });

  it('before reconciliation: no cases, and an unknown case id is said to be unknown', async () => {
    const none = await slash(CAROL, `cases ${SERVICE}`);
    expect(none.text).toBe('Reading the open reconciliation cases of ledger…');
    expect((await laterAnswer(none))[0]).toMatchObject({
      response_type: 'ephemeral',
      text: 'ledger: no open reconciliation cases.',
    });
    const unknown = await slash(CAROL, `cases ${SERVICE} od-nope`);
    expect(unknown.text).toBe('Looking up case `od-nope` of ledger…');
    expect((await laterAnswer(unknown))[0]!.text).toBe(
      'No case `od-nope` for ledger, open or resolved. The open ones: `/regionshift cases ledger`',
    );
  });
});

describe('reconcile, cases and failback from Slack', () => {
  let cases: ReconcileCase[];
  let reconcileRunId: string;
  let casesAnswer: Record<string, unknown>;
  let threadCases: Message;

  it('reconcile starts the run the CLI starts; its message says what it is (no "(unplanned)") and its thread gets the open cases with buttons', async () => {
    const started = await slash(ALICE, `reconcile ${SERVICE}`);
    expect(started.text).toContain(
      `Started \`regionshift-ledger\`: reconciliation of ledger after failover ${d.failover.runId} (old primary us-west-2 → us-east-1), requested by <@UALICE01>. Follow it in <#${RUNS}>`,
    );
    reconcileRunId = await latestRunId();
    expect(reconcileRunId).not.toBe(d.failover.runId);
    const rec = await awaitRecord(fe.client, runWorkflowId(SERVICE), reconcileRunId);
    expect(rec.status, rec.error).toBe('succeeded');
    expect(rec).toMatchObject({
      kind: 'reconcile',
      requestedBy: ALICE,
      trigger: `slack:${ALICE}`,
      source: WEST,
      target: EAST,
    });
    cases = await open();
    expect(cases.length).toBe(rec.reconciliation!.report!.cases.open);
    expect(cases.map((c) => c.kind)).toEqual(
      expect.arrayContaining(['overdraft', 'high-value', 'unique-key-collision']),
    );

    const m = await messageOf(reconcileRunId, (x) => x.text.endsWith('SUCCEEDED'), 'the reconcile run message');
    expect(m.text).toBe('reconcile ledger: old primary us-west-2 → us-east-1 SUCCEEDED');
    const text = readable(m.blocks);
    expect(text).not.toContain('unplanned');
    for (const step of ['preserve', 'classify', 'apply', 'verify', 'report']) expect(text).toContain(`✅ \`${step}\``);
    const rep = rec.reconciliation!.report!;
    expect(text).toContain(
      `reconciliation \`${rep.reconciliationId}\`: lost ${rep.txn['only-old']}, re-applied ${rep.applied.transactions} transactions (${rep.applied.entries} entries)`,
    );
    expect(text).toContain(`cases: ${cases.length} open of ${rep.cases.opened}`);

    threadCases = await waitFor(
      "the cases in the run's thread",
      async () => thread(m).find((x) => x.metadata?.event_payload.key === CASES_EVENT_KEY),
      30_000,
    );
    expect(thread(m)[0]!.text).toBe(
      '▶️ reconcile of ledger: old primary us-west-2 → us-east-1 started by <@UALICE01>, trigger `slack:UALICE01`',
    );
    expect(threadCases.text).toBe(
      `Cases of reconciliation \`${rep.reconciliationId}\` (ledger): ${cases.length} open of ${cases.length}; decide each with its buttons`,
    );
    const inThread = readable(threadCases.blocks);
    for (const c of cases) {
      expect(inThread).toContain(`${c.kind}* \`${c.id}\` — ${c.summary}`);
      expect(buttonsOf(threadCases.blocks!, c.id).map((b) => b.action_id)).toEqual([
        ...(['accept', 'compensate'] as const).filter((a) => c.proposals[a]).map((a) => CASE_ACTION[a]),
        CASE_ACTION.reject,
      ]);
    }
  });

  it('failback is refused while cases are open, and its message says how to go on from Slack', async () => {
    const started = await slash(ALICE, `failback ${SERVICE}`);
    expect(started.text).toContain(
      `Started \`regionshift-ledger\`: failback of ledger to us-west-2 (the old primary) after failover ${d.failover.runId}, requested by <@UALICE01>; approval: automatic (no approval gate).`,
    );
    const runId = await latestRunId();
    const rec = await awaitRecord(fe.client, runWorkflowId(SERVICE), runId);
    expect(rec.status).toBe('failed');
    expect(rec.steps.filter((s) => s.status === 'done')).toEqual([]);
    const m = await messageOf(runId, (x) => x.text.endsWith('FAILED'), 'the refused failback message');
    expect(m.text).toBe('failback ledger: us-east-1 → us-west-2 (back to the old primary) FAILED');
    const text = readable(m.blocks);
    expect(text).toContain(`❌ \`check-reconciliation\``);
    expect(text).toContain(`failback of ledger refused: ${cases.length} reconciliation case(s) open`);
    expect(text).toContain(
      `${cases.length} reconciliation case(s) open: decide them with \`/regionshift cases ledger\`, or fail back anyway with \`/regionshift failback ledger override: <reason>\``,
    );
    expect(await fe.isWritable(EAST)).toBe(true);
    expect(await open()).toHaveLength(cases.length);
  });

  it('cases lists every open case with both versions, the proposals and the buttons each offers', async () => {
    const ack = await slash(CAROL, `cases ${SERVICE}`);
    expect(ack.text).toBe('Reading the open reconciliation cases of ledger…');
    casesAnswer = (await laterAnswer(ack))[0]!;
    expect(casesAnswer).toMatchObject({
      response_type: 'ephemeral',
      text: `Open reconciliation cases of ledger: ${cases.length}`,
    });
    const blocks = casesAnswer.blocks as unknown[];
    const text = readable(blocks);
    for (const c of cases) {
      expect(text).toContain(`${c.kind}* \`${c.id}\` — ${c.summary}`);
      // (long versions are cut to fit a field; their beginning is enough to know them)
      expect(text).toContain(
        `*old primary's version*\n${c.oldVersion === null ? '_absent_' : `\`\`\`${JSON.stringify(c.oldVersion).slice(0, 200)}`}`,
      );
      expect(text).toContain(
        `*new primary's version*\n${c.newVersion === null ? '_absent_' : `\`\`\`${JSON.stringify(c.newVersion).slice(0, 200)}`}`,
      );
      for (const [a, p] of Object.entries(c.proposals)) expect(text).toContain(`*${a}:* ${p.description}`);
      expect(text).toContain("*reject:* book nothing; the new primary's version stands");
    }
    const od = cases.find((c) => c.kind === 'overdraft')!;
    expect(text).toContain('```{"account":"acct-low","balance":20}```');
    expect(buttonsOf(blocks, od.id).map((b) => b.action_id)).toEqual([
      CASE_ACTION.accept,
      CASE_ACTION.compensate,
      CASE_ACTION.reject,
    ]);
    const hv = cases.find((c) => c.kind === 'high-value')!;
    expect(buttonsOf(blocks, hv.id).map((b) => b.action_id)).toEqual([CASE_ACTION.accept, CASE_ACTION.reject]);
    const col = cases.find((c) => c.kind === 'unique-key-collision')!;
    expect(buttonsOf(blocks, col.id).map((b) => b.action_id)).toEqual([CASE_ACTION.compensate, CASE_ACTION.reject]);
  });

  it('a click by someone who does not decide cases is answered privately and changes nothing', async () => {
    const hv = cases.find((c) => c.kind === 'high-value')!;
    const blocks = casesAnswer.blocks as unknown[];
    for (const who of [MALLORY, ALICE]) {
      const click = await clickCase(who, 'accept', blocks, hv.id, { ephemeral: true });
      expect(click.status).toBe(200);
      const [answer] = await laterAnswer(click);
      expect(answer).toMatchObject({
        response_type: 'ephemeral',
        replace_original: false,
        text: 'You may not decide reconciliation cases of ledger: they are decided by the approvers of its unplanned runs, <@UCAROL01>, <!subteam^SONCALL01>. Nothing was changed.',
      });
      await new Promise((r) => setTimeout(r, 300));
      expect(sentTo(click.responsePath)).toHaveLength(1); // the list was not replaced
    }
    expect(await caseRow(hv.id)).toMatchObject({ status: 'open', resolution: null, resolved_by: null });
    expect((await open()).map((c) => c.id)).toContain(hv.id);
  });

  it("an approver's Accept resolves the case through the system; the list is updated to show who and how", async () => {
    const hv = cases.find((c) => c.kind === 'high-value')!;
    const click = await clickCase(CAROL, 'accept', casesAnswer.blocks as unknown[], hv.id, { ephemeral: true });
    expect(click.status).toBe(200);
    const [replaced, verdict] = await laterAnswer(click, 2);
    expect(replaced).toMatchObject({
      replace_original: true,
      text: `Open reconciliation cases of ledger: ${cases.length - 1}`,
    });
    const text = readable(replaced!.blocks);
    expect(text).toContain(`✅ *high-value* \`${hv.id}\` — ${hv.summary}`);
    expect(text).toMatch(/\*accepted\* by <@UCAROL01> at \d\d:\d\d:\d\dZ — "from Slack"/);
    expect(buttonsOf(replaced!.blocks as unknown[], hv.id)).toEqual([]);
    for (const c of cases.filter((x) => x.id !== hv.id))
      expect(buttonsOf(replaced!.blocks as unknown[], c.id).length).toBeGreaterThan(0);
    expect(verdict).toMatchObject({ response_type: 'ephemeral', replace_original: false });
    expect(verdict!.text).toBe(
      `✅ case \`${hv.id}\`: accept by <@UCAROL01>: ${hv.proposals.accept!.description} (1 transaction(s), 2 entries, 0 state move(s) booked)`,
    );

    expect(await caseRow(hv.id)).toEqual({
      status: 'resolved',
      resolution: 'accept',
      resolved_by: CAROL,
      note: 'from Slack',
    });
    expect((await open()).map((c) => c.id)).not.toContain(hv.id);
    expect((await journalHas(fe, EAST, [d.engineered!.highValue])).get(d.engineered!.highValue)).toBe(2);
    expect(await badBalances(fe, EAST)).toEqual([]);
  });

  it("a second click on a resolved case gets the system's refusal, privately; nothing changes", async () => {
    const hv = cases.find((c) => c.kind === 'high-value')!;
    const reject = await clickCase(CAROL, 'reject', casesAnswer.blocks as unknown[], hv.id, { ephemeral: true });
    const [refused] = await laterAnswer(reject);
    expect(refused).toMatchObject({ response_type: 'ephemeral', replace_original: false });
    expect(refused!.text).toMatch(
      new RegExp(
        `^Refused: case ${hv.id} was already resolved with accept by <@UCAROL01> at .*; a decision is not taken back \\(book a new correcting transaction instead\\)\\. Nothing was changed\\.$`,
      ),
    );
    const again = await clickCase(ERIN, 'accept', casesAnswer.blocks as unknown[], hv.id, { ephemeral: true });
    const [same] = await laterAnswer(again);
    expect(same!.text).toMatch(
      new RegExp(`^Nothing was changed: case \`${hv.id}\` is already resolved \\(accept\\) by <@UCAROL01> at .*\\.$`),
    );
    await new Promise((r) => setTimeout(r, 300));
    expect([...sentTo(reject.responsePath), ...sentTo(again.responsePath)].filter((b) => b.replace_original)).toEqual(
      [],
    );
    expect(await caseRow(hv.id)).toEqual({
      status: 'resolved',
      resolution: 'accept',
      resolved_by: CAROL,
      note: 'from Slack',
    });
    expect((await journalHas(fe, EAST, [d.engineered!.highValue])).get(d.engineered!.highValue)).toBe(2);
  });

  it("Compensate in the run's thread (an approver through the user group) books the compensation and updates that message in place", async () => {
    const od = cases.find((c) => c.kind === 'overdraft')!;
    const click = await clickCase(ERIN, 'compensate', threadCases.blocks!, od.id, { message: threadCases });
    expect(click.status).toBe(200);
    const [verdict] = await laterAnswer(click);
    expect(verdict!.text).toBe(
      `✅ case \`${od.id}\`: compensate by <@UERIN001>: ${od.proposals.compensate!.description} (2 transaction(s), 4 entries, 0 state move(s) booked)`,
    );
    const updated = slack.messages.find((m) => m.ts === threadCases.ts)!;
    expect(updated.updates).toBe(1);
    // The update carries the thread event's metadata, so a restarted bot still knows it posted the cases.
    const update = slack.callsOf('chat.update').find((c) => c.args.ts === threadCases.ts)!;
    expect(update.args.metadata).toEqual({
      event_type: 'regionshift_event',
      event_payload: { run_id: reconcileRunId, key: CASES_EVENT_KEY },
    });
    expect(updated.text).toContain(`${cases.length - 2} open of ${cases.length}`);
    const text = readable(updated.blocks);
    // The thread shows all of the reconciliation's cases: both decided ones, and who decided them.
    expect(text).toContain(`✅ *overdraft* \`${od.id}\``);
    expect(text).toMatch(/\*compensated\* by <@UERIN001> at \d\d:\d\d:\d\dZ/);
    expect(text).toMatch(/\*accepted\* by <@UCAROL01> at \d\d:\d\d:\d\dZ/);
    expect(await caseRow(od.id)).toMatchObject({ status: 'resolved', resolution: 'compensate', resolved_by: ERIN });
    const low = await sql<{ balance: string }>(fe, EAST, `SELECT balance::text FROM accounts WHERE id = 'acct-low'`);
    expect(low[0]!.balance).toBe('0');
    expect(await badBalances(fe, EAST)).toEqual([]);
    expect((await open()).map((c) => c.id)).not.toContain(od.id);
  });

  it('a button naming an unknown case is answered privately with a clear message', async () => {
    const click = await clickValue(
      CAROL,
      CASE_ACTION.reject,
      JSON.stringify({ s: SERVICE, c: 'od-nope', k: 'one' }),
      'case:od-nope',
      { ephemeral: true },
    );
    const [answer] = await laterAnswer(click);
    expect(answer).toMatchObject({ response_type: 'ephemeral', replace_original: false });
    expect(answer!.text).toBe(
      'no case od-nope for ledger; list them with: regionshift cases list --service ledger. Nothing was changed.',
    );
    const forged = await clickValue(CAROL, CASE_ACTION.reject, 'not json', 'case:x', { ephemeral: true });
    expect((await laterAnswer(forged))[0]!.text).toBe('This button does not name a case. Nothing was changed.');
  });

  it("failback with an override: refused to a stranger; an approver's reason is recorded and the failback runs", async () => {
    const before = await latestRunId();
    const stranger = await slash(MALLORY, `failback ${SERVICE} override: yolo`);
    expect(stranger.text).toBe(
      'You may not override the checks of a failback of ledger: only <@UALICE01>, <@UCAROL01>. Nothing was started.',
    );
    expect(await latestRunId()).toBe(before);

    const left = (await open()).length;
    expect(left).toBeGreaterThan(0);
    const reason = 'customers notified; finance decides the rest';
    const started = await slash(ALICE, `failback ${SERVICE} override: ${reason}`);
    expect(started.text).toContain(
      `failback of ledger to us-west-2 (the old primary) after failover ${d.failover.runId}, requested by <@UALICE01>; approval: automatic (no approval gate); override: "${reason}" (recorded in the run)`,
    );
    const runId = await latestRunId();
    const rec = await awaitRecord(fe.client, runWorkflowId(SERVICE), runId);
    expect(rec.status, rec.error).toBe('succeeded');
    expect(rec.failback!.override).toEqual({ by: ALICE, reason });
    expect(rec.steps.find((s) => s.id === 'check-reconciliation')!.detail).toContain(
      `OVERRIDDEN by ${ALICE}: "${reason}" (${left} reconciliation case(s) open`,
    );
    const m = await messageOf(runId, (x) => x.text.endsWith('SUCCEEDED'), 'the failback message');
    expect(m.text).toBe('failback ledger: us-east-1 → us-west-2 (back to the old primary) SUCCEEDED');
    const text = readable(m.blocks);
    expect(text).toContain(`*OVERRIDE* by <@UALICE01>: "${reason}" (overridden: ${left} reconciliation case(s) open`);
    expect(text).not.toContain('decide them with `/regionshift cases ledger`');
    expect(await fe.isWritable(WEST)).toBe(true);
  });
});
