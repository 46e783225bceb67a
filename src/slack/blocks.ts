// What the bot shows, rendered from workflow state only: a run's message (Block Kit), the events
// of its thread, and status answers.
import type { types } from '@slack/bolt';
import type { RunRecord, StepState } from '../contract/runbook/types';
import { headline, rtoFact, runRoute } from '../present/run';
import { failingLine } from '../present/guardian';
import type { GuardianView } from '../contract/guardian/types';
import type { CaseAction, ReconcileCase } from '../contract/reconcile';

export const ACTION = { approve: 'regionshift_approve', reject: 'regionshift_reject' } as const;
/** One button per decision on a failed step that waits for a person (onFailure: ask). */
export const STEP_ACTION = {
  retry: 'regionshift_step_retry',
  skip: 'regionshift_step_skip',
  compensate: 'regionshift_step_compensate',
} as const;
/** One button per way `resolveCase` can decide a case (`regionshift cases resolve --action`). */
export const CASE_ACTION: Record<CaseAction, string> = {
  accept: 'regionshift_case_accept',
  reject: 'regionshift_case_reject',
  compensate: 'regionshift_case_compensate',
};
/** The thread event (metadata key) of a reconcile run's message with its cases. */
export const CASES_EVENT_KEY = 'cases';
export const RUN_EVENT_TYPE = 'regionshift_run';
export const THREAD_EVENT_TYPE = 'regionshift_event';

const MARK: Record<StepState['status'], string> = {
  pending: '⚪',
  running: '🔄',
  waiting: '⏳',
  done: '✅',
  skipped: '⏭️',
  failed: '❌',
  compensated: '↩️',
};

/** Slack user ids in the workflow's words become mentions. */
export function mentions(text: string): string {
  return text.replace(/(?<![<@\w])([UW][A-Z0-9]{6,})(?![\w>])/g, '<@$1>');
}

function who(id: string): string {
  return /^[UW][A-Z0-9]{6,}$/.test(id) ? `<@${id}>` : id;
}

function hhmmss(iso: string | undefined): string {
  return iso ? iso.slice(11, 19) : '';
}

function took(s: StepState): string {
  if (!s.startedAt) return '';
  const end = s.endedAt ? Date.parse(s.endedAt) : undefined;
  return end ? ` ${end - Date.parse(s.startedAt)} ms` : ` since ${hhmmss(s.startedAt)}Z`;
}

/** "0/3000060" LSNs to a byte position. */
function lsnBytes(lsn: string | undefined): bigint | undefined {
  const m = lsn ? /^([0-9A-Fa-f]+)\/([0-9A-Fa-f]+)$/.exec(lsn) : null;
  return m ? (BigInt(`0x${m[1]}`) << 32n) + BigInt(`0x${m[2]}`) : undefined;
}

/** The replication lag the run knows of, in words. */
export function lagLine(rec: RunRecord): string | undefined {
  if (rec.lag)
    return `lag: target replayed ${rec.lag.replayedLsn}; ${rec.lag.initialLagBytes} bytes behind at the fence, caught up in ${rec.lag.waitedMs} ms`;
  const src = rec.topology?.find((n) => n.region === rec.source);
  const tgt = rec.topology?.find((n) => n.region === rec.target);
  const a = lsnBytes(src?.lsn);
  const b = lsnBytes(tgt?.lsn);
  if (a !== undefined && b !== undefined)
    return `lag: ${a > b ? a - b : 0n} bytes (source ${src!.lsn}, target replayed ${tgt!.lsn}) at preflight`;
  if (rec.rpo && !rec.rpo.zeroLoss) return `lag: RPO estimate ${rec.rpo.estimateSeconds ?? 'unknown'} s`;
  return undefined;
}

export function stepLine(s: StepState): string {
  const where = s.region ? ` [${s.region}]` : '';
  const info = s.error ?? s.detail;
  return `${MARK[s.status]} \`${s.id}\`${where}${took(s)}${info ? ` — ${mentions(info)}` : ''}`;
}

/**
 * Where the run goes, in words that fit its kind: a reconciliation carries the mode `unplanned`
 * (it follows an unplanned failover) and a failback `planned`, which says nothing true about them.
 */

export interface RenderedRun {
  text: string;
  blocks: types.KnownBlock[];
}

export function runMessage(rec: RunRecord, uiUrl: string, command = '/regionshift'): RenderedRun {
  const blocks: types.KnownBlock[] = [
    { type: 'section', text: { type: 'mrkdwn', text: `*${headline(rec)}*` } },
    {
      type: 'context',
      elements: [
        {
          type: 'mrkdwn',
          text: `requested by ${who(rec.requestedBy)} · trigger \`${rec.trigger}\` · started ${hhmmss(rec.startedAt)}Z${rec.endedAt ? ` · ended ${hhmmss(rec.endedAt)}Z` : ''} · <${uiUrl}|Temporal UI>`,
        },
      ],
    },
    { type: 'section', text: { type: 'mrkdwn', text: rec.steps.map(stepLine).join('\n').slice(0, 2900) } },
  ];
  const facts: string[] = [];
  const lag = lagLine(rec);
  if (lag) facts.push(lag);
  const rto = rtoFact(rec);
  if (rto) facts.push(rto);
  if (rec.rpo)
    facts.push(
      rec.rpo.zeroLoss ? 'RPO 0 (fenced, lag confirmed)' : `RPO estimate ${rec.rpo.estimateSeconds ?? 'unknown'} s`,
    );
  const rep = rec.reconciliation?.report;
  if (rep) {
    facts.push(
      `reconciliation \`${rep.reconciliationId}\`: lost ${rep.txn['only-old']}, re-applied ${rep.applied.transactions} transactions (${rep.applied.entries} entries), ` +
        `${rep.applied.stateMoves} state moves, ${rep.applied.duplicatesDropped} duplicates dropped · cases: ${rep.cases.open} open of ${rep.cases.opened}`,
    );
  }
  if (rec.alarms?.length)
    facts.push(
      `alarms during the run: ${rec.alarms.map((a) => `\`${a.trigger}\` [${a.region}] ${a.state} ×${a.count}`).join(', ')}`,
    );
  if (facts.length)
    blocks.push({ type: 'context', elements: [{ type: 'mrkdwn', text: facts.join(' · ').slice(0, 2900) }] });
  if (rec.pendingApproval && rec.status === 'running') {
    const p = rec.pendingApproval;
    const so_far = p.approvedBy?.length
      ? ` · approved so far by ${p.approvedBy.map(who).join(', ')} (${p.approvedBy.length} of ${p.quorum})`
      : p.quorum
        ? ` · needs ${p.quorum} approvers`
        : '';
    blocks.push({
      type: 'section',
      text: {
        type: 'mrkdwn',
        text: `⏳ *Waiting for approval:* ${mentions(p.reason)} (until ${hhmmss(p.timeoutAt)}Z)${so_far}`,
      },
    });
    const value = JSON.stringify({ w: rec.workflowId, r: rec.runId, s: p.stepId });
    blocks.push({
      type: 'actions',
      block_id: `approval:${p.stepId}`,
      elements: [
        {
          type: 'button',
          action_id: ACTION.approve,
          style: 'primary',
          text: { type: 'plain_text', text: 'Approve' },
          value,
        },
        {
          type: 'button',
          action_id: ACTION.reject,
          style: 'danger',
          text: { type: 'plain_text', text: 'Reject' },
          value,
        },
      ],
    });
  }
  if (rec.pendingDecision && rec.status === 'running') {
    const d = rec.pendingDecision;
    blocks.push({
      type: 'section',
      text: {
        type: 'mrkdwn',
        text: `⏳ *Step \`${d.stepId}\` failed and waits for a person:* ${mentions(d.error)}`.slice(0, 2900),
      },
    });
    const value = JSON.stringify({ w: rec.workflowId, r: rec.runId, s: d.stepId });
    blocks.push({
      type: 'actions',
      block_id: `decision:${d.stepId}`,
      elements: [
        {
          type: 'button',
          action_id: STEP_ACTION.retry,
          style: 'primary',
          text: { type: 'plain_text', text: 'Retry' },
          value,
        },
        { type: 'button', action_id: STEP_ACTION.skip, text: { type: 'plain_text', text: 'Skip' }, value },
        {
          type: 'button',
          action_id: STEP_ACTION.compensate,
          style: 'danger',
          text: { type: 'plain_text', text: 'Compensate' },
          value,
        },
      ],
    });
  }
  if (rec.operator?.length) {
    blocks.push({
      type: 'context',
      elements: [
        {
          type: 'mrkdwn',
          text: rec.operator
            .map((o) => `${o.action}${o.stepId ? ` ${o.stepId}` : ''} by ${who(o.by)}: "${o.reason}"`)
            .join(' · ')
            .slice(0, 2900),
        },
      ],
    });
  }
  if (rec.compensation) {
    const lines = [
      ...rec.compensation.undone.map((u) => `undone: ${u}`),
      ...rec.compensation.notUndone.map((n) => `*NOT undone:* ${n}`),
    ];
    if (lines.length) blocks.push({ type: 'section', text: { type: 'mrkdwn', text: lines.join('\n').slice(0, 2900) } });
  }
  const fb = rec.failback;
  if (fb?.override) {
    blocks.push({
      type: 'section',
      text: {
        type: 'mrkdwn',
        text: `*OVERRIDE* by ${who(fb.override.by)}: "${fb.override.reason}"${fb.check?.overridden.length ? ` (overridden: ${fb.check.overridden.join('; ')})` : ''}`.slice(
          0,
          2900,
        ),
      },
    });
  }
  if (rec.error)
    blocks.push({ type: 'section', text: { type: 'mrkdwn', text: `*error:* ${mentions(rec.error)}`.slice(0, 2900) } });
  // The workflow's refusal names the CLI; in Slack the way out is a command of this bot.
  if (rec.kind === 'failback' && rec.status !== 'running' && !fb?.override && fb?.check?.openCases.length) {
    blocks.push({
      type: 'section',
      text: {
        type: 'mrkdwn',
        text:
          `${fb.check.openCases.length} reconciliation case(s) open: decide them with \`${command} cases ${rec.service}\`, ` +
          `or fail back anyway with \`${command} failback ${rec.service} override: <reason>\` (approvers only; the reason is recorded in the run)`,
      },
    });
  }
  return { text: headline(rec), blocks };
}

export interface ThreadEvent {
  key: string;
  text: string;
}

/** The run's history as thread messages; keys are stable, so each is posted once. */
export function threadEvents(rec: RunRecord): ThreadEvent[] {
  const what =
    rec.kind === 'failover'
      ? `${rec.kind} of ${rec.service} to ${rec.target} (${rec.dryRun ? 'dry run' : rec.mode})`
      : `${rec.kind} of ${rec.service}: ${runRoute(rec)}`;
  const out: ThreadEvent[] = [
    { key: 'start', text: `▶️ ${what} started by ${who(rec.requestedBy)}, trigger \`${rec.trigger}\`` },
  ];
  for (const s of rec.steps) {
    if (s.status === 'pending' || s.status === 'skipped') continue;
    if (s.startedAt)
      out.push({ key: `step:${s.id}:started`, text: `🔄 \`${s.id}\` started${s.region ? ` in ${s.region}` : ''}` });
    if (s.status === 'done' || s.status === 'failed' || s.status === 'compensated')
      out.push({
        key: `step:${s.id}:${s.status === 'compensated' ? 'done' : s.status}`,
        text: stepLine({ ...s, status: s.status === 'compensated' ? 'done' : s.status }),
      });
    if (s.status === 'compensated') out.push({ key: `step:${s.id}:compensated`, text: `↩️ \`${s.id}\` undone` });
  }
  rec.approvals.forEach((a, i) => {
    const verb =
      a.decision === 'approve' ? '👍 approved' : a.decision === 'reject' ? '👎 rejected' : '⌛ no answer in time';
    out.push({
      key: `approval:${i}`,
      text: `${verb}${a.decision === 'timeout' ? '' : ` by ${who(a.by)}`} at \`${a.stepId}\`${a.reason ? `: ${mentions(a.reason)}` : ''}`,
    });
  });
  if (rec.pendingApproval)
    out.push({
      key: `pending:${rec.pendingApproval.stepId}:${rec.pendingApproval.requestedAt}`,
      text: `⏳ waiting for approval at \`${rec.pendingApproval.stepId}\`: ${mentions(rec.pendingApproval.reason)} — use the buttons on the run's message`,
    });
  for (const a of rec.alarms ?? [])
    out.push({
      key: `alarm:${a.trigger}:${a.region}`,
      text: `🚨 alarm \`${a.trigger}\` [${a.region}] ${a.state} during the run: attached here, no second run`,
    });
  if (rec.abort) out.push({ key: 'abort', text: `🛑 abort requested by ${who(rec.abort.by)}: ${rec.abort.reason}` });
  if (rec.status !== 'running') {
    const secs = rec.endedAt
      ? ` in ${((Date.parse(rec.endedAt) - Date.parse(rec.startedAt)) / 1000).toFixed(1)} s`
      : '';
    out.push({
      key: `end:${rec.status}`,
      text: `${rec.status === 'succeeded' ? '🏁' : '❌'} run ${rec.status}${secs}${rec.error ? `: ${mentions(rec.error)}` : ''}`,
    });
  }
  return out;
}

export function guardianText(v: GuardianView): string {
  const lines = [
    `guardian: writer ${v.primary ?? '?'} · fails over after ${v.debounce.failures} failing signals within ${v.debounce.window} · cooldown ${v.cooldown}`,
  ];
  if (v.inCooldown) lines.push(`*cooldown* until ${v.cooldownUntil}: no automatic failover; manual runs are allowed`);
  if (v.blocked) lines.push(`held back at ${v.blocked.at}: ${v.blocked.detail}`);
  for (const f of v.failing) lines.push(failingLine(f, v));
  return lines.join('\n');
}

// --- reconciliation cases -------------------------------------------------------------------

/**
 * Which list a case message shows, carried in its buttons so that after a click the message is
 * rendered again from the cases themselves (the bot keeps no copy): a reconcile run's thread
 * shows all of its reconciliation's cases, `cases` the open ones of one service or of all.
 */
export type CaseView = { k: 'run'; r: string; u: string } | { k: 'open'; all?: 1 } | { k: 'one' };

export type CaseButtonValue = { s: string; c: string } & CaseView;

const DECISION: Record<CaseAction, string> = { accept: 'accepted', reject: 'rejected', compensate: 'compensated' };
const REJECT_TEXT = "book nothing; the new primary's version stands";

/** A version as stored, short enough for a field of a section (2,000 characters). */
function version(v: unknown): string {
  if (v === null || v === undefined) return '_absent_';
  const json = JSON.stringify(v);
  return `\`\`\`${json.length > 1800 ? `${json.slice(0, 1800)}…` : json}\`\`\``;
}

export function caseBlocks(c: ReconcileCase, view: CaseView): types.KnownBlock[] {
  const head = `*${c.kind}* \`${c.id}\` — ${c.summary}`;
  if (c.status === 'resolved') {
    const how = c.resolution ? DECISION[c.resolution] : 'resolved';
    return [
      { type: 'section', text: { type: 'mrkdwn', text: `✅ ${head}`.slice(0, 2900) } },
      {
        type: 'context',
        elements: [
          {
            type: 'mrkdwn',
            text: `*${how}* by ${who(c.resolvedBy ?? '?')} at ${hhmmss(c.resolvedAt)}Z${c.note ? ` — "${c.note}"` : ''}`.slice(
              0,
              2900,
            ),
          },
        ],
      },
    ];
  }
  const txns = c.txnIds.length ? `\ntransactions: ${c.txnIds.map((t) => `\`${t}\``).join(', ')}` : '';
  const offered = (['accept', 'compensate'] as const).filter((a) => c.proposals[a]);
  const proposals = [...offered.map((a) => `*${a}:* ${c.proposals[a]!.description}`), `*reject:* ${REJECT_TEXT}`].join(
    '\n',
  );
  const value = (): string => JSON.stringify({ s: c.service, c: c.id, ...view } satisfies CaseButtonValue);
  const button = (a: CaseAction, style?: 'primary' | 'danger'): types.Button => ({
    type: 'button',
    action_id: CASE_ACTION[a],
    text: { type: 'plain_text', text: a[0]!.toUpperCase() + a.slice(1) },
    value: value(),
    ...(style ? { style } : {}),
    // Money moves on a click: Slack asks once more, with what will be booked.
    confirm: {
      title: { type: 'plain_text', text: `${a[0]!.toUpperCase() + a.slice(1)} case ${c.id}?`.slice(0, 100) },
      text: { type: 'mrkdwn', text: (a === 'reject' ? REJECT_TEXT : c.proposals[a]!.description).slice(0, 300) },
      confirm: { type: 'plain_text', text: a[0]!.toUpperCase() + a.slice(1) },
      deny: { type: 'plain_text', text: 'Cancel' },
    },
  });
  return [
    { type: 'section', text: { type: 'mrkdwn', text: `${head}${txns}`.slice(0, 2900) } },
    {
      type: 'section',
      fields: [
        { type: 'mrkdwn', text: `*old primary's version*\n${version(c.oldVersion)}` },
        { type: 'mrkdwn', text: `*new primary's version*\n${version(c.newVersion)}` },
      ],
    },
    { type: 'section', text: { type: 'mrkdwn', text: proposals.slice(0, 2900) } },
    {
      type: 'actions',
      block_id: `case:${c.id}`,
      elements: [...offered.map((a) => button(a, a === 'accept' ? 'primary' : undefined)), button('reject', 'danger')],
    },
  ];
}

/** Slack allows 50 blocks in a message. */
const MAX_BLOCKS = 50;

function casesTitle(view: CaseView, cases: ReconcileCase[], services: string[]): string {
  const open = cases.filter((c) => c.status === 'open').length;
  switch (view.k) {
    case 'run':
      return `*Cases of reconciliation \`${view.r}\`* (${services.join(', ')}): ${open} open of ${cases.length}; decide each with its buttons`;
    case 'open':
      return `*Open reconciliation cases* of ${services.join(', ')}: ${open}`;
    case 'one':
      return `*Case \`${cases[0]?.id ?? '?'}\`* of ${services.join(', ')}`;
  }
}

/** A message with the cases and their buttons; more cases than fit are counted, not shown. */
export function casesMessage(view: CaseView, cases: ReconcileCase[], services: string[]): RenderedRun {
  const title = casesTitle(view, cases, services);
  const blocks: types.KnownBlock[] = [{ type: 'section', text: { type: 'mrkdwn', text: title.slice(0, 2900) } }];
  let shown = 0;
  for (const c of cases) {
    const b = caseBlocks(c, view);
    if (blocks.length + b.length > MAX_BLOCKS - 1) break;
    blocks.push(...b);
    shown++;
  }
  if (shown < cases.length) {
    const more = services.map((s) => `\`regionshift cases list --service ${s}\``).join(', ');
    blocks.push({
      type: 'context',
      elements: [
        { type: 'mrkdwn', text: `…and ${cases.length - shown} more: decide these first, or see them all with ${more}` },
      ],
    });
  }
  return { text: title.replace(/\*/g, ''), blocks };
}
