// What the slash command (slash.ts) and the buttons (buttons.ts) share: the config, the Temporal
// client, where to answer, the one check every decision passes before the bot signs it (is this
// Slack user one of the approvers the config names), and how a failure is told to the person.
import type { webApi } from '@slack/bolt';
import type { Config, Service } from '../lib/config/schema';
import { serviceTriggersOf, type SlackConfig } from '../lib/config/triggers';
import type { FollowingClient } from '../lib/runs/following';
import { InputError, RefusedError } from '../lib/runs/client';
import { runUiUrl } from '../present/run';
import type { Mode, RunbookDoc, RunRecord } from '../contract/runbook/types';
import { SLACK_DECISION_KEY_ENV } from '../contract/approvals';
import type { DecisionSigner } from '../lib/sign';
import { mentions } from './blocks';
import { usage } from './commands';

export interface BotContext {
  config: Config;
  temporal: FollowingClient;
  web: webApi.WebClient;
  settings: SlackConfig;
  log: (line: string) => void;
  /** The service's own runbook of that kind (config `runbooks:`), else the built-in one. */
  runbookFor: (kind: 'failover' | 'reconcile' | 'failback', service: string) => RunbookDoc;
  /** How long `status` may take to read before it answers in two parts (Slack drops answers after 3 s). */
  statusAckMs: number;
  /** Signs decisions; absent when the bot was started without the decision key. */
  signer?: DecisionSigner;
}

export function slackApprovers(service: Service, mode: Mode): string[] {
  return serviceTriggersOf(service).approvers[mode] ?? [];
}

/**
 * Who decides reconciliation cases: the service's approvers of unplanned runs. A case is data an
 * unplanned failover left diverged (reconciliation runs carry that mode), and deciding one books
 * money much as approving an unplanned failover accepts its possible loss: the same people, not
 * the wider planned-change group. An empty list means nobody, as it does for approvals.
 */
export const CASE_DECIDERS: Mode = 'unplanned';

export function listIds(ids: string[]): string {
  return ids.map((id) => (id.startsWith('S') ? `<!subteam^${id}>` : `<@${id}>`)).join(', ');
}

export function uiUrl(ctx: BotContext, rec: Pick<RunRecord, 'workflowId' | 'runId'>): string {
  return runUiUrl(ctx.config.temporal.uiUrl, ctx.config.temporal.namespace, rec.workflowId, rec.runId);
}

/** The bot signs only after it has mapped the Slack user to the approvers (membership). */
export function botSigner(ctx: BotContext): DecisionSigner {
  if (!ctx.signer)
    throw new RefusedError(
      `this bot has no ${SLACK_DECISION_KEY_ENV}, so it cannot sign decisions; its operator must set it`,
    );
  return ctx.signer;
}

/** May `user` act on runs of this service and mode: listed, or in a listed user group. */
export async function membership(
  ctx: BotContext,
  user: string,
  allowed: string[],
): Promise<{ ok: boolean; groups: string[] }> {
  if (allowed.includes(user)) return { ok: true, groups: [] };
  const groups: string[] = [];
  for (const g of allowed.filter((id) => id.startsWith('S'))) {
    const res = await ctx.web.usergroups.users.list({ usergroup: g });
    if (res.users?.includes(user)) groups.push(g);
  }
  return { ok: groups.length > 0, groups };
}

/** Refusals and bad input are the person's to read; any other failure is the bot operator's to log too. */
export function personsFailure(err: unknown): boolean {
  return err instanceof InputError || err instanceof RefusedError;
}

/**
 * The person's answer to a command or a click that failed. Different on purpose: bad input to a
 * command is followed by the usage (they typed it); a click's refusal or bad input ends with
 * "Nothing was changed." (a click is a decision, and they must know it was not taken). A failure
 * of anything else says only its first line: the stack is for the log.
 */
export function failureText(err: unknown, on: { command: string } | 'click'): string {
  const message = err instanceof Error ? err.message : String(err);
  const unchanged = on === 'click' ? '. Nothing was changed.' : '';
  if (err instanceof RefusedError) return `Refused: ${mentions(message)}${unchanged}`;
  if (err instanceof InputError)
    return on === 'click' ? `${message}${unchanged}` : `${message}\n\n${usage(on.command)}`;
  return `Failed: ${message.split('\n')[0]}`;
}
