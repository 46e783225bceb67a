// The buttons: Approve / Reject on a run's gate, Retry / Skip / Compensate on a step that failed
// with onFailure: ask, and the decisions on reconciliation cases. The approvers the config names
// decide; the bot signs what they decided and the workflow verifies it, so every click is answered
// with the system's own verdict.
import type { App } from '@slack/bolt';
import type { Client } from '@temporalio/client';
import { approveRun, findService, operateRun } from '../lib/runs/client';
import { listCases, resolveCase } from '../lib/runs/reconcile';
import type { RunRecord } from '../contract/runbook/types';
import type { CaseAction, ReconcileCase } from '../contract/reconcile';
import {
  ACTION,
  CASE_ACTION,
  CASES_EVENT_KEY,
  STEP_ACTION,
  casesMessage,
  mentions,
  THREAD_EVENT_TYPE,
  type CaseButtonValue,
  type CaseView,
  type RenderedRun,
} from './blocks';
import {
  botSigner,
  CASE_DECIDERS,
  failureText,
  listIds,
  membership,
  personsFailure,
  slackApprovers,
  type BotContext,
} from './context';

export function registerButtons(app: App, ctx: BotContext): void {
  for (const decision of ['approve', 'reject'] as const) {
    runButton(app, ctx, ACTION[decision], {
      decision,
      notWaiting: (rec, w) =>
        rec.pendingApproval ? undefined : `\`${w}\` is not waiting for an approval (it is ${rec.status}).`,
      what: '',
      decide: (c, w, by) =>
        approveRun(c, w, { decision, reason: 'from Slack', ...by }, botSigner(ctx)).then(
          (verdict) => `${decision === 'approve' ? '👍' : '👎'} ${mentions(verdict)}`,
        ),
    });
  }
  // Retry, skip or compensate a failed step (onFailure: ask).
  for (const decision of Object.keys(STEP_ACTION) as (keyof typeof STEP_ACTION)[]) {
    runButton(app, ctx, STEP_ACTION[decision], {
      decision,
      notWaiting: (rec, w, s) =>
        rec.pendingDecision?.stepId === s
          ? undefined
          : `Step \`${s}\` of \`${w}\` is not waiting for a decision any more.`,
      what: 'steps of ',
      decide: (c, w, by) =>
        operateRun(c, w, { action: decision, reason: `${decision} from Slack`, ...by }, botSigner(ctx)).then(mentions),
    });
  }
  caseButtons(app, ctx);
}

interface RunButton {
  decision: string;
  /** Why the run cannot take this decision now; undefined when it is waiting for it. */
  notWaiting: (rec: RunRecord, workflowId: string, stepId: string | undefined) => string | undefined;
  /** What of a run the decision is about, for the refusal: "" (the run itself), "steps of ". */
  what: string;
  decide: (c: Client, workflowId: string, by: { by: string; groups?: string[] }) => Promise<string>;
}

/**
 * A button that decides on a run waiting for it: the approvers of the run's mode may; the answer
 * (private to the clicker) is the run's verdict.
 */
function runButton(app: App, ctx: BotContext, actionId: string, b: RunButton): void {
  const { config, temporal, settings, log } = ctx;
  app.action(actionId, async ({ ack, body, action, client }) => {
    await ack();
    const user = body.user.id;
    const channel = (body as { channel?: { id?: string } }).channel?.id ?? settings.channel;
    const answer = (text: string): Promise<unknown> => client.chat.postEphemeral({ channel, user, text });
    try {
      const { w, r, s } = JSON.parse((action as { value?: string }).value ?? '{}') as {
        w?: string;
        r?: string;
        s?: string;
      };
      if (!w) return void (await answer('This button does not name a run.'));
      const rec = await temporal.run((c) => c.workflow.getHandle(w, r).query<RunRecord>('progress'));
      const why = b.notWaiting(rec, w, s);
      if (why) return void (await answer(`${why} Nothing was changed.`));
      const allowed = slackApprovers(findService(config, rec.service), rec.mode);
      const m = await membership(ctx, user, allowed);
      if (!m.ok) {
        log(`slack: ${b.decision} of ${w} by ${user} refused: not an approver of ${rec.mode} runs of ${rec.service}`);
        return void (await answer(
          `You may not ${b.decision} ${b.what}${rec.mode} runs of ${rec.service}: approvers are ${listIds(allowed)}. Nothing was changed.`,
        ));
      }
      await answer(
        await temporal.run((c) => b.decide(c, w, { by: user, ...(m.groups.length ? { groups: m.groups } : {}) })),
      );
    } catch (err) {
      if (!personsFailure(err)) log(`slack: ${b.decision} by ${user} failed: ${(err as Error).stack ?? err}`);
      await answer(failureText(err, 'click')).catch(() => undefined);
    }
  });
}

function caseButtons(app: App, ctx: BotContext): void {
  const { config, temporal, web, log } = ctx;
  for (const decision of Object.keys(CASE_ACTION) as CaseAction[]) {
    app.action(CASE_ACTION[decision], async ({ ack, body, action, respond }) => {
      await ack();
      const user = body.user.id;
      // Privately, through the click's response_url: works on the ephemeral `cases` answer too.
      const answer = (text: string): Promise<unknown> =>
        respond({ response_type: 'ephemeral', replace_original: false, text });
      try {
        let v: CaseButtonValue | undefined;
        try {
          v = JSON.parse((action as { value?: string }).value ?? '') as CaseButtonValue;
        } catch {
          // answered below
        }
        if (!v?.s || !v.c) return void (await answer('This button does not name a case. Nothing was changed.'));
        const service = findService(config, v.s);
        const allowed = slackApprovers(service, CASE_DECIDERS);
        const m = await membership(ctx, user, allowed);
        if (!m.ok) {
          log(
            `slack: ${decision} of case ${v.c} by ${user} refused: not an approver of ${CASE_DECIDERS} runs of ${service.name}`,
          );
          return void (await answer(
            `You may not decide reconciliation cases of ${service.name}: they are decided by the approvers of its ${CASE_DECIDERS} runs, ${listIds(allowed)}. Nothing was changed.`,
          ));
        }
        const res = await temporal.run((c) =>
          resolveCase(
            c,
            config,
            {
              service: service.name,
              caseId: v.c,
              by: user,
              action: decision,
              note: 'from Slack',
              ...(m.groups.length ? { groups: m.groups } : {}),
            },
            botSigner(ctx),
          ),
        );
        if (!res.changed)
          return void (await answer(`Nothing was changed: case \`${v.c}\` is ${mentions(res.detail)}.`));
        let stale = '';
        try {
          const msg = await casesView(ctx, v, service.name, res.case);
          const c = (body as { container?: { is_ephemeral?: boolean; channel_id?: string; message_ts?: string } })
            .container;
          if (c?.channel_id && c.message_ts && !c.is_ephemeral) {
            await web.chat.update({
              channel: c.channel_id,
              ts: c.message_ts,
              text: msg.text,
              blocks: msg.blocks,
              // Kept, so that a restarted follower still knows the run's cases are in its thread.
              ...(v.k === 'run'
                ? { metadata: { event_type: THREAD_EVENT_TYPE, event_payload: { run_id: v.u, key: CASES_EVENT_KEY } } }
                : {}),
            });
          } else {
            await respond({ replace_original: true, text: msg.text, blocks: msg.blocks });
          }
        } catch (err) {
          // The case is decided either way; the person must not read a failed refresh as a failed decision.
          log(`slack: refreshing the message of case ${v.c} failed: ${(err as Error).message}`);
          stale = ` (the message with the buttons could not be refreshed: ${(err as Error).message.split('\n')[0]})`;
        }
        await answer(`✅ case \`${v.c}\`: ${mentions(res.detail)}${stale}`);
      } catch (err) {
        if (!personsFailure(err)) log(`slack: ${decision} of a case by ${user} failed: ${(err as Error).stack ?? err}`);
        await answer(failureText(err, 'click')).catch(() => undefined);
      }
    });
  }
}

/** The cases a case message shows, read again from the database (through the cases workflow). */
async function casesView(
  ctx: BotContext,
  view: CaseView,
  service: string,
  resolved?: ReconcileCase,
): Promise<RenderedRun> {
  const { config, temporal } = ctx;
  switch (view.k) {
    case 'run':
      return casesMessage(
        view,
        await temporal.run((c) => listCases(c, config, { service, reconciliationId: view.r, status: 'all' })),
        [service],
      );
    case 'one':
      return casesMessage(view, resolved ? [resolved] : [], [service]);
    case 'open': {
      const services = view.all ? config.services.map((s) => s.name) : [service];
      const open = (
        await Promise.all(
          services.map((s) => temporal.run((c) => listCases(c, config, { service: s, status: 'open' }))),
        )
      ).flat();
      return casesMessage(
        view,
        [...(resolved ? [resolved] : []), ...open.filter((c) => c.id !== resolved?.id)],
        services,
      );
    }
  }
}
