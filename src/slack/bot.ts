// The Slack bot (@slack/bolt): the slash command, the Approve / Reject buttons, and a message per
// run kept up to date (follow.ts). HTTP mode verifies Slack's request signatures (Bolt refuses a
// wrong signature or a timestamp older than five minutes with 401); Socket Mode needs an app
// token instead. Everything the bot says comes from the workflows; approvals and aborts are
// updates the workflow validates, so a button answers with the workflow's own verdict. The bot
// signs each decision it passes on, once it has mapped the Slack user to the approvers, with the
// key it shares with the control workers (docs/approvals.md).
// Reconciliation cases are decided with buttons too, through `resolveCase` (a workflow next to
// the primary), so a click is answered with the system's verdict as well.
import { App, HTTPReceiver, LogLevel, SocketModeReceiver, type Receiver, type webApi } from '@slack/bolt';
import type { Client } from '@temporalio/client';
import { FollowingClient } from '../lib/runs/following';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import type { Config, Service } from '../lib/config/schema';
import { serviceTriggersOf, triggersOf, type SlackConfig } from '../lib/config/triggers';
import { approvalOverride, describeApproval } from '../lib/config/approval';
import { guardianView } from '../present/guardian';
import { durationMs } from '../contract/runbook/duration';
import { loadRunbook, runbookPathFor } from '../lib/runbooks';
import type { PluginRegistry } from '../lib/plugins';
import type { Mode, RunbookDoc, RunRecord } from '../contract/runbook/types';
import type { CaseAction, ReconcileCase } from '../contract/reconcile';
import {
  abortRun,
  approveRun,
  awaitRecord,
  buildRunInput,
  findService,
  InputError,
  operateRun,
  RefusedError,
  runRecord,
  startRun,
  workflowIdOf,
} from '../lib/runs/client';
import { buildFollowUpInput, listCases, resolveCase } from '../lib/runs/reconcile';
import { formatRecord, headline, runUiUrl } from '../present/run';
import {
  ACTION,
  CASE_ACTION,
  CASES_EVENT_KEY,
  STEP_ACTION,
  casesMessage,
  guardianText,
  lagLine,
  mentions,
  stepLine,
  THREAD_EVENT_TYPE,
  type CaseButtonValue,
  type CaseView,
  type RenderedRun,
} from './blocks';
import { parseCommand, usage, type SlackCommand } from './commands';
import { RunFollower } from './follow';
import { readinessText, ReadinessWatch } from './readiness';
import { recordedReadiness } from '../lib/readiness';
import { SLACK_DECISION_KEY_ENV } from '../contract/approvals';
import { slackBotSigner, type DecisionSigner } from '../lib/sign';

export interface SlackSecrets {
  botToken: string;
  signingSecret?: string;
  appToken?: string;
  /** Signs the decisions the bot passes on; the control workers hold the same key (docs/approvals.md). */
  decisionKey?: string;
}

export interface SlackBotOptions {
  config: Config;
  /** A FollowingClient (regionshift slack's) follows the namespace when the control plane is replicated. */
  temporal: Client | FollowingClient;
  secrets: SlackSecrets;
  /** Overrides triggers.slack (tests). */
  slack?: Partial<SlackConfig>;
  runbookFor?: (kind: 'failover' | 'reconcile' | 'failback', service: string) => RunbookDoc;
  /** The config's plugins, loaded by the caller: a service's own runbook may use their steps. */
  plugins?: PluginRegistry;
  log?: (line: string) => void;
}

export interface SlackBot {
  app: App;
  receiver: Receiver;
  follower: RunFollower;
  /** Posts when a service's readiness evaluation turns to failing, and when it recovers. */
  readiness: ReadinessWatch;
  settings: SlackConfig;
  /** Starts the receiver (HTTP server or socket) and the follower; resolves with the HTTP port. */
  start(): Promise<{ port?: number }>;
  stop(): Promise<void>;
}

/** Secrets from the environment variables the config names. */
export function slackSecretsFromEnv(s: SlackConfig, env: NodeJS.ProcessEnv = process.env): SlackSecrets {
  const botToken = env[s.botTokenEnv];
  if (!botToken) throw new InputError(`the Slack bot token is not set: export ${s.botTokenEnv}`);
  const signingSecret = env[s.signingSecretEnv];
  const appToken = env[s.appTokenEnv];
  if (s.mode === 'http' && !signingSecret)
    throw new InputError(`HTTP mode needs the signing secret: export ${s.signingSecretEnv}`);
  if (s.mode === 'socket' && !appToken)
    throw new InputError(`Socket Mode needs an app-level token (xapp-…): export ${s.appTokenEnv}`);
  const decisionKey = env[SLACK_DECISION_KEY_ENV];
  if (!decisionKey)
    throw new InputError(
      `the bot signs approvals, aborts and case decisions: export ${SLACK_DECISION_KEY_ENV} (the same value the control workers have; openssl rand -hex 32)`,
    );
  return { botToken, decisionKey, ...(signingSecret ? { signingSecret } : {}), ...(appToken ? { appToken } : {}) };
}

function slackApprovers(service: Service, mode: Mode): string[] {
  return serviceTriggersOf(service).approvers[mode] ?? [];
}

/**
 * Who decides reconciliation cases: the service's approvers of unplanned runs. A case is data an
 * unplanned failover left diverged (reconciliation runs carry that mode), and deciding one books
 * money much as approving an unplanned failover accepts its possible loss: the same people, not
 * the wider planned-change group. An empty list means nobody, as it does for approvals.
 */
const CASE_DECIDERS: Mode = 'unplanned';

function listIds(ids: string[]): string {
  return ids.map((id) => (id.startsWith('S') ? `<!subteam^${id}>` : `<@${id}>`)).join(', ');
}

export function createSlackBot(opts: SlackBotOptions): SlackBot {
  const { config } = opts;
  const temporal = opts.temporal instanceof FollowingClient ? opts.temporal : FollowingClient.fixed(opts.temporal);
  const base = triggersOf(config).slack;
  if (!base && !opts.slack?.channel)
    throw new InputError('no `triggers.slack` section in the config: the bot needs at least `channel`');
  const settings = { ...(base ?? {}), ...opts.slack } as SlackConfig;
  const log = opts.log ?? ((line: string) => console.log(line));
  // The service's own runbook of that kind (config `runbooks:`), else the built-in one.
  const runbookFor =
    opts.runbookFor ??
    ((kind, service) =>
      loadRunbook(
        runbookPathFor(
          config.services.find((x) => x.name === service),
          kind,
        ),
        { plugins: opts.plugins },
      ));
  const clientOptions = settings.apiUrl ? { slackApiUrl: settings.apiUrl } : {};

  const receiver: Receiver =
    settings.mode === 'socket'
      ? // (installerOptions.clientOptions is what Bolt hands the socket client for apps.connections.open.)
        new SocketModeReceiver({
          appToken: opts.secrets.appToken ?? '',
          logLevel: LogLevel.ERROR,
          installerOptions: { clientOptions },
        })
      : new HTTPReceiver({
          signingSecret: opts.secrets.signingSecret ?? '',
          endpoints: '/slack/events',
          logLevel: LogLevel.ERROR,
        });
  const app = new App({ token: opts.secrets.botToken, receiver, clientOptions, logLevel: LogLevel.ERROR });
  const web: webApi.WebClient = app.client;
  const follower = new RunFollower({
    temporal,
    web,
    config,
    channel: settings.channel,
    command: settings.command,
    followForMs: durationMs(settings.followFor),
    log,
  });
  const readiness = new ReadinessWatch({
    temporal,
    web,
    channel: settings.channel,
    services: config.services.map((s) => s.name),
    command: settings.command,
    log,
  });
  const uiUrl = (rec: Pick<RunRecord, 'workflowId' | 'runId'>): string =>
    runUiUrl(config.temporal.uiUrl, config.temporal.namespace, rec.workflowId, rec.runId);

  /** The bot signs only after it has mapped the Slack user to the approvers (membership). */
  const signer: DecisionSigner | undefined = opts.secrets.decisionKey
    ? slackBotSigner(opts.secrets.decisionKey)
    : undefined;
  function botSigner(): DecisionSigner {
    if (!signer)
      throw new RefusedError(
        `this bot has no ${SLACK_DECISION_KEY_ENV}, so it cannot sign decisions; its operator must set it`,
      );
    return signer;
  }

  /** May `user` act on runs of this service and mode: listed, or in a listed user group. */
  async function membership(user: string, allowed: string[]): Promise<{ ok: boolean; groups: string[] }> {
    if (allowed.includes(user)) return { ok: true, groups: [] };
    const groups: string[] = [];
    for (const g of allowed.filter((id) => id.startsWith('S'))) {
      const res = await web.usergroups.users.list({ usergroup: g });
      if (res.users?.includes(user)) groups.push(g);
    }
    return { ok: groups.length > 0, groups };
  }

  async function statusText(serviceName?: string): Promise<string> {
    const services = serviceName ? [findService(config, serviceName)] : config.services;
    const parts: string[] = [];
    for (const svc of services) {
      const lines: string[] = [];
      try {
        const rec = await temporal.run((c) => runRecord(c, workflowIdOf(config, svc.name)));
        lines.push(`*${headline(rec)}* · <${uiUrl(rec)}|Temporal UI>`, ...rec.steps.map(stepLine));
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
      parts.push(lines.join('\n'));
    }
    return parts.join('\n\n');
  }

  /** The cases a case message shows, read again from the database (through the cases workflow). */
  async function casesView(view: CaseView, service: string, resolved?: ReconcileCase): Promise<RenderedRun> {
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

  async function handle(
    cmd: SlackCommand,
    user: string,
    respond: (msg: string | RenderedRun) => Promise<unknown>,
    ack: (text: string) => Promise<void>,
  ): Promise<void> {
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
          if (!(await membership(user, allowed)).ok) {
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
            `Follow it in <#${settings.channel}> · <${uiUrl(started)}|Temporal UI>`,
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
          const found = (
            await temporal.run((c) => listCases(c, config, { service: services[0]!, status: 'all' }))
          ).find((c) => c.id === cmd.caseId);
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
      case 'status':
        return ack(await statusText(cmd.service));
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
              `Follow it in <#${settings.channel}> · <${uiUrl(started)}|Temporal UI>`,
          );
        }
        await ack(`Planning ${cmd.service} → ${cmd.target} (${cmd.mode})… the plan follows here.`);
        const rec = await temporal.run((c) => awaitRecord(c, started.workflowId, started.runId));
        return void (await respond(`\`\`\`\n${formatRecord(rec, uiUrl(rec))}\n\`\`\``));
      }
      case 'abort': {
        const workflowId = workflowIdOf(config, cmd.run);
        const rec = await temporal.run((c) => runRecord(c, workflowId));
        if (rec.status !== 'running')
          return ack(`\`${workflowId}\` is not running (it ${rec.status}); nothing to abort.`);
        const allowed = slackApprovers(findService(config, rec.service), rec.mode);
        const m = rec.requestedBy === user ? { ok: true, groups: [] } : await membership(user, allowed);
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
            botSigner(),
          ),
        );
        return ack(`\`${workflowId}\`: ${mentions(verdict)}`);
      }
    }
  }

  app.command(settings.command, async ({ command, ack, respond }) => {
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
      await handle(
        parseCommand(command.text ?? ''),
        command.user_id,
        (msg) => respond({ response_type: 'ephemeral', ...(typeof msg === 'string' ? { text: msg } : msg) }),
        once,
      );
    } catch (err) {
      const known = err instanceof InputError || err instanceof RefusedError;
      if (!known)
        log(`slack: ${command.command} ${command.text} by ${command.user_id} failed: ${(err as Error).stack ?? err}`);
      const text =
        err instanceof InputError
          ? `${(err as Error).message}\n\n${usage(settings.command)}`
          : err instanceof RefusedError
            ? `Refused: ${mentions((err as Error).message)}`
            : `Failed: ${(err as Error).message.split('\n')[0]}`;
      await once(text).catch(() => undefined);
    }
  });

  for (const decision of ['approve', 'reject'] as const) {
    app.action(ACTION[decision], async ({ ack, body, action, client }) => {
      await ack();
      const user = body.user.id;
      const channel = (body as { channel?: { id?: string } }).channel?.id ?? settings.channel;
      const answer = (text: string): Promise<unknown> => client.chat.postEphemeral({ channel, user, text });
      try {
        const { w, r } = JSON.parse((action as { value?: string }).value ?? '{}') as { w?: string; r?: string };
        if (!w) return void (await answer('This button does not name a run.'));
        const rec = await temporal.run((c) => c.workflow.getHandle(w, r).query<RunRecord>('progress'));
        if (!rec.pendingApproval)
          return void (await answer(
            `\`${w}\` is not waiting for an approval (it is ${rec.status}). Nothing was changed.`,
          ));
        const allowed = slackApprovers(findService(config, rec.service), rec.mode);
        const m = await membership(user, allowed);
        if (!m.ok) {
          log(`slack: ${decision} of ${w} by ${user} refused: not an approver of ${rec.mode} runs of ${rec.service}`);
          return void (await answer(
            `You may not ${decision} ${rec.mode} runs of ${rec.service}: approvers are ${listIds(allowed)}. Nothing was changed.`,
          ));
        }
        const verdict = await temporal.run((c) =>
          approveRun(
            c,
            w,
            { by: user, decision, reason: `from Slack`, ...(m.groups.length ? { groups: m.groups } : {}) },
            botSigner(),
          ),
        );
        await answer(`${decision === 'approve' ? '👍' : '👎'} ${mentions(verdict)}`);
      } catch (err) {
        const text =
          err instanceof RefusedError
            ? `Refused: ${mentions((err as Error).message)}. Nothing was changed.`
            : `Failed: ${(err as Error).message.split('\n')[0]}`;
        if (!(err instanceof RefusedError)) log(`slack: ${decision} by ${user} failed: ${(err as Error).stack ?? err}`);
        await answer(text).catch(() => undefined);
      }
    });
  }

  // Retry, skip or compensate a failed step (onFailure: ask): the approvers of the run's mode
  // decide, signed by the bot and verified by the run like an approval.
  for (const decision of Object.keys(STEP_ACTION) as (keyof typeof STEP_ACTION)[]) {
    app.action(STEP_ACTION[decision], async ({ ack, body, action, client }) => {
      await ack();
      const user = body.user.id;
      const channel = (body as { channel?: { id?: string } }).channel?.id ?? settings.channel;
      const answer = (text: string): Promise<unknown> => client.chat.postEphemeral({ channel, user, text });
      try {
        const {
          w,
          r,
          s: stepId,
        } = JSON.parse((action as { value?: string }).value ?? '{}') as { w?: string; r?: string; s?: string };
        if (!w) return void (await answer('This button does not name a run.'));
        const rec = await temporal.run((c) => c.workflow.getHandle(w, r).query<RunRecord>('progress'));
        if (rec.pendingDecision?.stepId !== stepId)
          return void (await answer(
            `Step \`${stepId}\` of \`${w}\` is not waiting for a decision any more. Nothing was changed.`,
          ));
        const allowed = slackApprovers(findService(config, rec.service), rec.mode);
        const m = await membership(user, allowed);
        if (!m.ok) {
          log(`slack: ${decision} of ${w} by ${user} refused: not an approver of ${rec.mode} runs of ${rec.service}`);
          return void (await answer(
            `You may not ${decision} steps of ${rec.mode} runs of ${rec.service}: approvers are ${listIds(allowed)}. Nothing was changed.`,
          ));
        }
        const verdict = await temporal.run((c) =>
          operateRun(
            c,
            w,
            {
              action: decision,
              by: user,
              reason: `${decision} from Slack`,
              ...(m.groups.length ? { groups: m.groups } : {}),
            },
            botSigner(),
          ),
        );
        await answer(mentions(verdict));
      } catch (err) {
        const text =
          err instanceof RefusedError
            ? `Refused: ${mentions((err as Error).message)}. Nothing was changed.`
            : `Failed: ${(err as Error).message.split('\n')[0]}`;
        if (!(err instanceof RefusedError)) log(`slack: ${decision} by ${user} failed: ${(err as Error).stack ?? err}`);
        await answer(text).catch(() => undefined);
      }
    });
  }

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
        const m = await membership(user, allowed);
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
            botSigner(),
          ),
        );
        if (!res.changed)
          return void (await answer(`Nothing was changed: case \`${v.c}\` is ${mentions(res.detail)}.`));
        let stale = '';
        try {
          const msg = await casesView(v, service.name, res.case);
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
        const known = err instanceof InputError || err instanceof RefusedError;
        if (!known) log(`slack: ${decision} of a case by ${user} failed: ${(err as Error).stack ?? err}`);
        const text =
          err instanceof RefusedError
            ? `Refused: ${mentions((err as Error).message)}. Nothing was changed.`
            : err instanceof InputError
              ? `${(err as Error).message}. Nothing was changed.`
              : `Failed: ${(err as Error).message.split('\n')[0]}`;
        await answer(text).catch(() => undefined);
      }
    });
  }

  app.error(async (err) => {
    log(`slack: ${err.message}`);
  });

  return {
    app,
    receiver,
    follower,
    readiness,
    settings,
    async start() {
      let port: number | undefined;
      if (settings.mode === 'http') {
        const server = (await app.start({ port: settings.port, host: settings.host })) as unknown as Server;
        port = (server.address() as AddressInfo).port;
      } else {
        await app.start();
      }
      follower.start(durationMs(settings.pollInterval));
      readiness.start(durationMs(settings.readinessPollInterval));
      return { port };
    },
    async stop() {
      await Promise.all([follower.stop(), readiness.stop()]);
      await app.stop();
    },
  };
}
