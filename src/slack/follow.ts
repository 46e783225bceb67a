// Keeps one Slack message per run in step with the workflow: it lists runs from Temporal's
// visibility (running, or ended within `followFor`), reads each one's record (progress query or
// result), updates the run's message in place and posts what happened in its thread. The bot
// keeps nothing of its own: which message belongs to which run, and which events are already in
// the thread, are read back from the messages' metadata after a restart (the maps here are only
// a cache of that). A reconciliation that leaves cases open gets them, with their buttons, in its
// thread.
import type { FollowingClient } from '../lib/runs/following';
import type { webApi } from '@slack/bolt';
import type { Config } from '../lib/config/schema';
import type { RunRecord } from '../contract/runbook/types';
import { awaitRecord } from '../lib/runs/client';
import { listCases } from '../lib/runs/reconcile';
import { runUiUrl } from '../present/run';
import { CASES_EVENT_KEY, casesMessage, RUN_EVENT_TYPE, runMessage, THREAD_EVENT_TYPE, threadEvents } from './blocks';
import { Poller } from './poller';

interface Entry {
  ts?: string;
  rendered: string;
  posted: Set<string>;
  final: boolean;
  seen: number;
}

export interface FollowerOptions {
  temporal: FollowingClient;
  web: webApi.WebClient;
  config: Config;
  channel: string;
  /** The slash command, for the hints in run messages. */
  command?: string;
  followForMs: number;
  log: (line: string) => void;
}

interface Meta {
  event_type?: string;
  event_payload?: Record<string, unknown>;
}

export class RunFollower extends Poller {
  private readonly cache = new Map<string, Entry>();
  constructor(private readonly opts: FollowerOptions) {
    super('following runs', opts.log);
  }

  /** One pass over the runs to follow. */
  async tick(): Promise<void> {
    const since = new Date(Date.now() - this.opts.followForMs).toISOString();
    const query = `WorkflowType = 'runbook' AND RegionshiftMode != 'dry-run' AND (ExecutionStatus = 'Running' OR CloseTime > '${since}')`;
    const runs: { workflowId: string; runId: string; running: boolean; start: number }[] = [];
    await this.opts.temporal.run(async (c) => {
      runs.length = 0; // a listing cut short by a lost cluster is listed again in full
      for await (const w of c.workflow.list({ query })) {
        runs.push({
          workflowId: w.workflowId,
          runId: w.runId,
          running: w.status.name === 'RUNNING',
          start: w.startTime.getTime(),
        });
      }
    });
    runs.sort((a, b) => a.start - b.start);
    const now = Date.now();
    for (const run of runs) {
      try {
        await this.sync(run.workflowId, run.runId, run.running, now);
      } catch (err) {
        this.opts.log(
          `slack: updating the message of ${run.workflowId} ${run.runId} failed: ${(err as Error).message}`,
        );
      }
    }
    for (const [runId, e] of this.cache) if (now - e.seen > this.opts.followForMs * 2) this.cache.delete(runId);
  }

  private async record(workflowId: string, runId: string, running: boolean): Promise<RunRecord | undefined> {
    if (running)
      return this.opts.temporal.run((c) => c.workflow.getHandle(workflowId, runId).query<RunRecord>('progress'));
    try {
      return await this.opts.temporal.run((c) => awaitRecord(c, workflowId, runId));
    } catch {
      return undefined; // terminated without a record: nothing to show
    }
  }

  private async sync(workflowId: string, runId: string, running: boolean, now: number): Promise<void> {
    let entry = this.cache.get(runId);
    if (entry) entry.seen = now;
    if (entry?.final) return;
    const rec = await this.record(workflowId, runId, running);
    if (!rec) return;
    const { web, channel, config } = this.opts;
    if (!entry) {
      const ts = await this.findMessage(runId);
      entry = { ts, rendered: '', posted: ts ? await this.postedKeys(ts) : new Set(), final: false, seen: now };
      this.cache.set(runId, entry);
    }
    const uiUrl = runUiUrl(config.temporal.uiUrl, config.temporal.namespace, workflowId, runId);
    const msg = runMessage(rec, uiUrl, this.opts.command);
    const rendered = JSON.stringify(msg.blocks);
    if (!entry.ts) {
      const res = await web.chat.postMessage({
        channel,
        text: msg.text,
        blocks: msg.blocks,
        unfurl_links: false,
        metadata: { event_type: RUN_EVENT_TYPE, event_payload: { workflow_id: workflowId, run_id: runId } },
      });
      entry.ts = res.ts;
      entry.rendered = rendered;
    } else if (entry.rendered !== rendered) {
      await web.chat.update({ channel, ts: entry.ts, text: msg.text, blocks: msg.blocks });
      entry.rendered = rendered;
    }
    for (const ev of threadEvents(rec)) {
      if (entry.posted.has(ev.key)) continue;
      await web.chat.postMessage({
        channel,
        thread_ts: entry.ts!,
        text: ev.text,
        unfurl_links: false,
        metadata: { event_type: THREAD_EVENT_TYPE, event_payload: { run_id: runId, key: ev.key } },
      });
      entry.posted.add(ev.key);
    }
    const rep = rec.reconciliation?.report;
    if (rec.kind === 'reconcile' && rep && rep.cases.open > 0 && !entry.posted.has(CASES_EVENT_KEY)) {
      // Read from the database, not the report: the buttons need both versions and the proposals.
      const cases = await this.opts.temporal.run((c) =>
        listCases(c, config, {
          service: rec.service,
          reconciliationId: rep.reconciliationId,
          status: 'all',
        }),
      );
      const m = casesMessage({ k: 'run', r: rep.reconciliationId, u: runId }, cases, [rec.service]);
      await web.chat.postMessage({
        channel,
        thread_ts: entry.ts!,
        text: m.text,
        blocks: m.blocks,
        unfurl_links: false,
        metadata: { event_type: THREAD_EVENT_TYPE, event_payload: { run_id: runId, key: CASES_EVENT_KEY } },
      });
      entry.posted.add(CASES_EVENT_KEY);
    }
    if (rec.status !== 'running') entry.final = true;
  }

  /** The run's message, found by its metadata among the channel's recent messages. */
  private async findMessage(runId: string): Promise<string | undefined> {
    const res = await this.opts.web.conversations.history({
      channel: this.opts.channel,
      limit: 200,
      include_all_metadata: true,
    });
    const hit = (res.messages ?? []).find((m) => {
      const meta = (m as { metadata?: Meta }).metadata;
      return meta?.event_type === RUN_EVENT_TYPE && meta.event_payload?.run_id === runId;
    });
    return hit?.ts;
  }

  private async postedKeys(ts: string): Promise<Set<string>> {
    const res = await this.opts.web.conversations.replies({
      channel: this.opts.channel,
      ts,
      limit: 200,
      include_all_metadata: true,
    });
    const keys = new Set<string>();
    for (const m of res.messages ?? []) {
      const meta = (m as { metadata?: Meta }).metadata;
      if (meta?.event_type === THREAD_EVENT_TYPE && typeof meta.event_payload?.key === 'string')
        keys.add(meta.event_payload.key);
    }
    return keys;
  }
}
