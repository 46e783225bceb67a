// The slash command: `/regionshift failover|plan|reconcile|failback|cases|status|abort …`. Runs
// start as the CLI starts them; every answer is the workflows' own state or verdict.
import type { App } from '@slack/bolt';
import { approvalOverride, describeApproval } from '../lib/config/approval';
import {
  abortRun,
  awaitRecord,
  buildRunInput,
  findService,
  runRecord,
  startRun,
  workflowIdOf,
} from '../lib/runs/client';
import { buildFollowUpInput, listCases } from '../lib/runs/reconcile';
import { recordedReadiness } from '../lib/readiness';
import { guardianView } from '../present/guardian';
import { formatRecord, headline } from '../present/run';
import { freshReadinessHint, readinessPredates } from '../present/readiness';
import type { RunRecord } from '../contract/runbook/types';
import type { ReconcileCase } from '../contract/reconcile';
import { casesMessage, guardianText, lagLine, mentions, stepLine, type RenderedRun } from './blocks';
import { parseCommand, usage, type SlackCommand } from './commands';
import {
  botSigner,
  failureText,
  listIds,
  membership,
  personsFailure,
  slackApprovers,
  uiUrl,
  type BotContext,
} from './context';
import { readinessText } from './readiness';

/** The start of a slow `status`'s first answer; the status follows through response_url. */
export const STATUS_READING = 'Reading the status of';

/** Answers the slash command; a failure is answered too, privately, and logged unless it is the person's input. */
export function registerCommand(app: App, ctx: BotContext): void {
  app.command(ctx.settings.command, async ({ command, ack, respond }) => {
    let acked = false;
    const once = async (text: string): Promise<void> => {
      if (acked) {
        await respond({ response_type: 'ephemeral', text });
        return;
      }
      acked = true;
      await ack({ response_type: 'ephemeral', text });
    };
    try {
      await handleCommand(
        ctx,
        parseCommand(command.text ?? ''),
        command.user_id,
        (msg) => respond({ response_type: 'ephemeral', ...(typeof msg === 'string' ? { text: msg } : msg) }),
        once,
      );
    } catch (err) {
      if (!personsFailure(err))
        ctx.log(
          `slack: ${command.command} ${command.text} by ${command.user_id} failed: ${(err as Error).stack ?? err}`,
        );
      await once(failureText(err, { command: ctx.settings.command })).catch(() => undefined);
    }
  });
}

/** One slash command: `ack` answers within Slack's 3 s, `respond` after (through response_url). */
async function handleCommand(
  ctx: BotContext,
  cmd: SlackCommand,
  user: string,
  respond: (msg: string | RenderedRun) => Promise<unknown>,
  ack: (text: string) => Promise<void>,
): Promise<void> {
  const { config, temporal, settings, runbookFor } = ctx;
  switch (cmd.kind) {
    case 'help':
      return ack(usage(settings.command));
    case 'bad':
      return ack(`${cmd.problem}\n\n${usage(settings.command)}`);
    case 'reconcile':
    case 'failback': {
      // As the CLI starts them (regionshift reconcile | failback): the run follows the service's
      // latest unplanned failover, found in Temporal; the run's own steps are the checks.
      const service = findService(config, cmd.service);
      const override = cmd.kind === 'failback' ? cmd.override : undefined;
      const runbook = runbookFor(cmd.kind, service.name);
      const input = await temporal.run((c) =>
        buildFollowUpInput(c, config, runbook, {
          service: service.name,
          requestedBy: user,
          trigger: `slack:${user}`,
          ...(override ? { overrideReason: override } : {}),
        }),
      );
      if (override) {
        // An override skips the failback's check that no case is open: a decision like an
        // approval, so only the approvers of the run's mode may make it.
        const allowed = slackApprovers(service, input.mode);
        if (!(await membership(ctx, user, allowed)).ok) {
          return ack(
            `You may not override the checks of a failback of ${service.name}: only ${listIds(allowed)}. Nothing was started.`,
          );
        }
      }
      // Runs started from Slack get the Slack approval policy of their mode, as failovers do.
      const gated = runbook.steps.some((s) => s.approval);
      if (gated) input.approval = approvalOverride(service, input.mode);
      const started = await temporal.run((c) => startRun(c, input));
      const h = input.handoff!;
      const what =
        cmd.kind === 'reconcile'
          ? `reconciliation of ${service.name} after failover ${h.failoverRunId} (old primary ${h.oldPrimary} → ${h.newPrimary})`
          : `failback of ${service.name} to ${h.oldPrimary} (the old primary) after failover ${h.failoverRunId}`;
      return ack(
        `Started \`${started.workflowId}\`: ${what}, requested by <@${user}>` +
          `${gated ? `; approval: ${describeApproval(input.approval!)}` : ''}${override ? `; override: "${override}" (recorded in the run)` : ''}. ` +
          `Follow it in <#${settings.channel}> · <${uiUrl(ctx, started)}|Temporal UI>`,
      );
    }
    case 'cases': {
      const services = cmd.service ? [findService(config, cmd.service).name] : config.services.map((s) => s.name);
      // Reading cases goes through a workflow and the database: answer within Slack's 3 s first.
      await ack(
        cmd.caseId
          ? `Looking up case \`${cmd.caseId}\` of ${services.join(', ')}…`
          : `Reading the open reconciliation cases of ${services.join(', ')}…`,
      );
      if (cmd.caseId) {
        const found = (await temporal.run((c) => listCases(c, config, { service: services[0]!, status: 'all' }))).find(
          (c) => c.id === cmd.caseId,
        );
        if (!found)
          return void (await respond(
            `No case \`${cmd.caseId}\` for ${services[0]}, open or resolved. The open ones: \`${settings.command} cases ${services[0]}\``,
          ));
        return void (await respond(casesMessage({ k: 'one' }, [found], [found.service])));
      }
      const cases: ReconcileCase[] = [];
      const problems: string[] = [];
      for (const s of services) {
        try {
          cases.push(...(await temporal.run((c) => listCases(c, config, { service: s, status: 'open' }))));
        } catch (err) {
          // One service's cases unreadable (no reachable database, no reconciliation provider) hides nobody else's.
          if (cmd.service) throw err;
          problems.push(`${s}: ${(err as Error).message.split('\n')[0]}`);
        }
      }
      if (cases.length === 0)
        return void (await respond(
          `${services.join(', ')}: no open reconciliation cases.${problems.length ? ` Not readable: ${problems.join('; ')}` : ''}`,
        ));
      const msg = casesMessage({ k: 'open', ...(cmd.service ? {} : { all: 1 as const }) }, cases, services);
      if (problems.length)
        msg.blocks.push({
          type: 'context',
          elements: [{ type: 'mrkdwn', text: `not readable: ${problems.join('; ')}`.slice(0, 2900) }],
        });
      return void (await respond(msg));
    }
    case 'status': {
      // Slack drops an answer that comes after 3 s, and a control plane in trouble is slow exactly
      // when the operator asks: past ctx.statusAckMs the person is told it is being read, and the
      // status follows through response_url.
      // An unknown service is answered as bad input at once, not after "Reading".
      const names = cmd.service ? findService(config, cmd.service).name : config.services.map((s) => s.name).join(', ');
      const reading = statusText(ctx, cmd.service);
      reading.catch(() => undefined); // a failure is answered below, once awaited
      const quick = await within(reading, ctx.statusAckMs);
      if (quick !== undefined) return ack(quick);
      await ack(`${STATUS_READING} ${names}…`);
      return void (await respond(await reading));
    }
    case 'plan':
    case 'failover': {
      const service = findService(config, cmd.service);
      const input = buildRunInput(config, runbookFor('failover', service.name), {
        service: cmd.service,
        target: cmd.target,
        mode: cmd.mode,
        dryRun: cmd.kind === 'plan',
        requestedBy: user,
        trigger: `slack:${user}`,
      });
      input.approval = approvalOverride(service, cmd.mode);
      const started = await temporal.run((c) => startRun(c, input));
      if (cmd.kind === 'failover') {
        return ack(
          `Started \`${started.workflowId}\`: failover of ${cmd.service} to ${cmd.target} (${cmd.mode}), requested by <@${user}>; approval: ${describeApproval(input.approval)}. ` +
            `Follow it in <#${settings.channel}> · <${uiUrl(ctx, started)}|Temporal UI>`,
        );
      }
      await ack(`Planning ${cmd.service} → ${cmd.target} (${cmd.mode})… the plan follows here.`);
      const rec = await temporal.run((c) => awaitRecord(c, started.workflowId, started.runId));
      return void (await respond(`\`\`\`\n${formatRecord(rec, uiUrl(ctx, rec))}\n\`\`\``));
    }
    case 'abort': {
      const workflowId = workflowIdOf(config, cmd.run);
      const rec = await temporal.run((c) => runRecord(c, workflowId));
      if (rec.status !== 'running')
        return ack(`\`${workflowId}\` is not running (it ${rec.status}); nothing to abort.`);
      const allowed = slackApprovers(findService(config, rec.service), rec.mode);
      const m = rec.requestedBy === user ? { ok: true, groups: [] } : await membership(ctx, user, allowed);
      if (!m.ok)
        return ack(
          `You may not abort ${rec.mode} runs of ${rec.service}: only its requester or ${listIds(allowed)}. Nothing was changed.`,
        );
      const verdict = await temporal.run((c) =>
        abortRun(
          c,
          workflowId,
          {
            by: user,
            reason: cmd.reason ?? `aborted from Slack by ${user}`,
            ...(m.groups.length ? { groups: m.groups } : {}),
          },
          botSigner(ctx),
        ),
      );
      return ack(`\`${workflowId}\`: ${mentions(verdict)}`);
    }
  }
}

/** What `p` gives within `ms`, else undefined (it goes on); ms <= 0: undefined at once. */
async function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  if (ms <= 0) return undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<undefined>((r) => (timer = setTimeout(r, ms, undefined)))]);
  } finally {
    clearTimeout(timer);
  }
}

async function statusText(ctx: BotContext, serviceName?: string): Promise<string> {
  const { config, temporal } = ctx;
  const services = serviceName ? [findService(config, serviceName)] : config.services;
  const parts: string[] = [];
  for (const svc of services) {
    const lines: string[] = [];
    let rec: RunRecord | undefined;
    try {
      rec = await temporal.run((c) => runRecord(c, workflowIdOf(config, svc.name)));
      lines.push(`*${headline(rec)}* · <${uiUrl(ctx, rec)}|Temporal UI>`, ...rec.steps.map(stepLine));
      const lag = lagLine(rec);
      if (lag) lines.push(lag);
      if (rec.pendingApproval) lines.push(`⏳ waiting for approval: ${mentions(rec.pendingApproval.reason)}`);
      if (rec.error) lines.push(`error: ${mentions(rec.error)}`);
    } catch (err) {
      if ((err as Error).name !== 'WorkflowNotFoundError') throw err;
      lines.push(`*${svc.name}*: no runs yet`);
    }
    const g = await temporal.run((c) => guardianView(c, svc.name));
    if (g) lines.push(guardianText(g));
    // Could it fail over now, as the readiness schedule last found (regionshift readiness).
    const e = await temporal.run((c) => recordedReadiness(c, svc.name));
    lines.push(e ? readinessText(e) : 'readiness: not evaluated yet (`regionshift readiness`)');
    if (e && rec && readinessPredates(e, rec)) lines.push(`_${freshReadinessHint(svc.name)}_`);
    parts.push(lines.join('\n'));
  }
  return parts.join('\n\n');
}
