// Readiness in Slack: the status command shows each service's last evaluation, and a service whose
// evaluation turns to failing gets one message in the channel, then one more when it is ready again
// (not one per evaluation). What the bot last said of a service is read back from its messages'
// metadata after a restart, so a restarted bot does not say it twice.
import type { FollowingClient } from '../lib/runs/following';
import type { webApi } from '@slack/bolt';
import type { ReadinessCheck, ReadinessEvaluation } from '../contract/readiness';
import { recordedReadiness } from '../lib/readiness';
import { mentions } from './blocks';
import { Poller } from './poller';

export const READINESS_EVENT_TYPE = 'regionshift_readiness';

const ICON = { pass: '✅', warn: '⚠️', fail: '🚨' } as const;

function checkLine(c: ReadinessCheck): string {
  return `${ICON[c.status]} ${c.check}${c.region ? ` [${c.region}]` : ''}: ${mentions(c.detail)}`;
}

/** The readiness lines of the status reply: the verdict, then what is not passing (or each target's verdict). */
export function readinessText(e: ReadinessEvaluation): string {
  const lines = [
    `readiness: ${ICON[e.status]} *${e.status.toUpperCase()}* (evaluated ${e.at})${e.targets.length ? ` · failover targets now: ${e.targets.join(', ')}` : ' · no failover target now'}`,
  ];
  lines.push(...e.checks.filter((c) => c.status !== 'pass').map(checkLine));
  for (const t of e.perTarget ?? []) {
    lines.push(`to ${t.region}: ${ICON[t.status]} ${t.status}${t.mode ? ` (${t.mode} dry run)` : ''}`);
    // Only what the service-wide checks above did not say already.
    lines.push(
      ...t.checks
        .filter((c) => c.status !== 'pass' && !e.checks.some((s) => s.detail === c.detail))
        .map((c) => `  ${checkLine(c)}`),
    );
  }
  return lines.join('\n');
}

/** The channel message when a service stops being ready to fail over, or is ready again. */
export function readinessAlert(e: ReadinessEvaluation, command = '/regionshift'): string {
  if (e.status !== 'fail')
    return `${ICON[e.status]} *${e.service}* is ready to fail over again (evaluated ${e.at})${e.targets.length ? `: failover targets ${e.targets.join(', ')}` : ''}`;
  const failing = [...e.checks, ...(e.perTarget ?? []).flatMap((t) => t.checks)].filter((c) => c.status === 'fail');
  const unique = failing.filter((c, i) => failing.findIndex((x) => x.detail === c.detail) === i);
  return [
    `🚨 *${e.service}* is not ready to fail over (evaluated ${e.at}):`,
    ...unique.map((c) => `• ${checkLine(c)}`),
    `Details: \`${command} status ${e.service}\` or \`regionshift readiness --service ${e.service}\``,
  ].join('\n');
}

interface Said {
  status: string;
  at: string;
}

export interface ReadinessWatchOptions {
  temporal: FollowingClient;
  web: webApi.WebClient;
  channel: string;
  services: string[];
  command?: string;
  log: (line: string) => void;
}

export class ReadinessWatch extends Poller {
  /** What the bot last said in the channel, per service (read back from the channel once). */
  private readonly said = new Map<string, Said | null>();
  /** The evaluation each service was last judged on, for callers that wait for a pass to have happened. */
  readonly seen = new Map<string, string>();
  constructor(private readonly opts: ReadinessWatchOptions) {
    super('watching readiness', opts.log);
  }

  async tick(): Promise<void> {
    for (const service of this.opts.services) {
      const e = await this.opts.temporal.run((c) => recordedReadiness(c, service));
      if (!e) continue;
      if (!this.said.has(service)) this.said.set(service, await this.lastSaid(service));
      const said = this.said.get(service) ?? null;
      // Said only on a change between failing and not: a failing service is not news every 30 minutes.
      const news = e.status === 'fail' ? said?.status !== 'fail' : said?.status === 'fail';
      if (news && e.at !== said?.at) {
        await this.opts.web.chat.postMessage({
          channel: this.opts.channel,
          text: readinessAlert(e, this.opts.command),
          unfurl_links: false,
          metadata: { event_type: READINESS_EVENT_TYPE, event_payload: { service, status: e.status, at: e.at } },
        });
        this.said.set(service, { status: e.status, at: e.at });
      }
      this.seen.set(service, e.at);
    }
  }

  private async lastSaid(service: string): Promise<Said | null> {
    const res = await this.opts.web.conversations.history({
      channel: this.opts.channel,
      limit: 200,
      include_all_metadata: true,
    });
    for (const m of res.messages ?? []) {
      const meta = (m as { metadata?: { event_type?: string; event_payload?: Record<string, unknown> } }).metadata;
      if (meta?.event_type === READINESS_EVENT_TYPE && meta.event_payload?.service === service) {
        return { status: String(meta.event_payload.status), at: String(meta.event_payload.at) };
      }
    }
    return null;
  }
}
