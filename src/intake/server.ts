// The alarm intake's HTTP endpoints:
//   POST /sns           Amazon SNS (CloudWatch alarm notifications, subscription confirmations)
//   POST /eventbridge   EventBridge API destination: "CloudWatch Alarm State Change" events,
//                       authenticated by a shared secret header
//   POST /alertmanager  Prometheus Alertmanager webhook, authenticated by a bearer token
//   GET  /healthz
//   GET  /metrics       Prometheus: alarms accepted, ignored and rejected, pending in the journal,
//                       each guardian's state (docs/observability.md)
// Anything unauthenticated, unsigned or stale is answered 4xx with one log line, and never
// reaches a guardian. An accepted alarm is answered 202 once it is durable: in the intake's
// journal (src/intake/journal.ts), from which it is forwarded to its guardian.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { timingSafeEqual, createHash } from 'node:crypto';
import type { Config } from '../lib/config/schema';
import { triggersOf } from '../lib/config/triggers';
import { durationMs } from '../contract/runbook/duration';
import { IntakeMetrics, newRegistry, type GuardianStateName, type ReadinessStateName } from '../lib/metrics/registry';
import type { AlarmSink, JournalStats } from './journal';
import { mapAlarm, type Mapped } from './mapping';
import { BadAlarm, parseAlertmanager, parseCloudWatchSnsMessage, parseEventBridge, type RawAlarm } from './parse';
import { parseSnsMessage, SnsRejected, SnsVerifier } from './sns';

export interface IntakeServerOptions {
  config: Config;
  /** Where accepted alarms go: the journal (`regionshift intake`), or straight to the guardians. */
  sink: AlarmSink & { stats?(): JournalStats };
  host?: string;
  port?: number;
  log?: (line: string) => void;
  /** Shared secrets; default: the environment variables the config names. */
  secrets?: { eventbridge?: string; alertmanager?: string };
  /** Tests only: which SigningCertURL / SubscribeURL may be fetched (production: SNS hosts over https). */
  snsUrlAllowed?: (url: URL) => boolean;
  now?: () => number;
  /** Each service's guardian state, asked when /metrics is scraped (src/lib/metrics/guardian-states.ts). */
  guardianStates?: () => Promise<Record<string, GuardianStateName>>;
  /** Each service's last readiness evaluation, asked at scrape time. */
  readinessStates?: () => Promise<Record<string, ReadinessStateName>>;
  /** More exposition text after ours: the Temporal SDK's own metrics (src/lib/metrics/worker.ts). */
  extraMetrics?: () => Promise<string>;
}

export interface IntakeServer {
  server: Server;
  url: string;
  port: number;
  stats: { accepted: number; rejected: number; ignored: number };
  metrics: IntakeMetrics;
  close(): Promise<void>;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new HttpError(413, `body larger than ${limit} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/** Constant-time comparison of a presented secret with the expected one. */
function sameSecret(presented: string | undefined, expected: string): boolean {
  if (!presented) return false;
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/** The label values of regionshift_intake_rejected_total: known endpoints by name, anything else as "other". */
const ENDPOINTS = new Set(['/sns', '/eventbridge', '/alertmanager', '/healthz', '/metrics']);

function json(body: string, where: string): unknown {
  try {
    return JSON.parse(body);
  } catch {
    throw new HttpError(400, `${where}: body is not JSON`);
  }
}

export async function startIntakeServer(opts: IntakeServerOptions): Promise<IntakeServer> {
  const t = triggersOf(opts.config).intake;
  const log = opts.log ?? ((line: string) => console.log(line));
  const now = opts.now ?? Date.now;
  const secrets = {
    eventbridge: opts.secrets?.eventbridge ?? process.env[t.eventbridge.secretEnv],
    alertmanager: opts.secrets?.alertmanager ?? process.env[t.alertmanager.tokenEnv],
  };
  const sns = new SnsVerifier({
    maxAgeMs: durationMs(t.sns.maxAge),
    topicArns: t.sns.topicArns,
    urlAllowed: opts.snsUrlAllowed,
    now,
  });
  const stats = { accepted: 0, rejected: 0, ignored: 0 };
  const metrics = new IntakeMetrics(newRegistry(), {
    pending: () => opts.sink.stats?.().pending,
    guardians: opts.guardianStates,
    readiness: opts.readinessStates,
  });

  async function deliver(
    alarms: RawAlarm[],
    from: string,
    endpoint: string,
  ): Promise<{ status: number; body: unknown }> {
    const receivedAt = now();
    const mapped: Mapped[] = alarms.flatMap((a) => mapAlarm(opts.config, a, receivedAt));
    const unmapped = alarms.filter(
      (a) => !mapped.some((m) => m.signal.name === a.name && m.signal.source === a.source),
    );
    for (const a of unmapped)
      log(
        `intake: ${from}: no service maps alarm ${a.source}:${a.name}${a.labels ? ` ${JSON.stringify(a.labels)}` : ''}; ignored`,
      );
    if (mapped.length === 0) {
      stats.ignored += alarms.length;
      metrics.alarms.inc({ endpoint, outcome: 'ignored' }, alarms.length);
      return { status: 200, body: { accepted: 0, ignored: alarms.map((a) => a.name) } };
    }
    const byService = new Map<string, Mapped[]>();
    for (const m of mapped) byService.set(m.service, [...(byService.get(m.service) ?? []), m]);
    try {
      await Promise.all(
        [...byService].map(([service, ms]) =>
          opts.sink.deliver(
            service,
            ms.map((m) => m.signal),
          ),
        ),
      );
    } catch (err) {
      throw new HttpError(503, `could not accept the alarm (${(err as Error).message}); retry`);
    }
    stats.accepted += mapped.length;
    stats.ignored += unmapped.length;
    metrics.alarms.inc({ endpoint, outcome: 'accepted' }, mapped.length);
    if (unmapped.length) metrics.alarms.inc({ endpoint, outcome: 'ignored' }, unmapped.length);
    return {
      status: 202,
      body: {
        accepted: mapped.length,
        delivered: mapped.map((m) => ({
          service: m.service,
          region: m.signal.region,
          alarm: m.signal.name,
          state: m.signal.state,
        })),
        ignored: unmapped.map((a) => a.name),
      },
    };
  }

  async function handleSns(body: string, from: string): Promise<{ status: number; body: unknown }> {
    let m;
    try {
      m = parseSnsMessage(body);
      await sns.verify(m);
    } catch (err) {
      if (err instanceof SnsRejected) throw new HttpError(err.status, `sns: ${err.message}`);
      throw err;
    }
    if (m.Type === 'SubscriptionConfirmation') {
      if (!t.sns.autoConfirm) {
        log(
          `intake: ${from}: subscription to ${m.TopicArn} awaits confirmation (sns.autoConfirm is off): ${m.SubscribeURL}`,
        );
        return { status: 200, body: { confirmed: false, topic: m.TopicArn } };
      }
      try {
        await sns.confirm(m);
      } catch (err) {
        if (err instanceof SnsRejected) throw new HttpError(err.status, `sns: ${err.message}`);
        throw new HttpError(502, `sns: ${(err as Error).message}`);
      }
      log(`intake: confirmed the SNS subscription to ${m.TopicArn}`);
      return { status: 200, body: { confirmed: true, topic: m.TopicArn } };
    }
    if (m.Type === 'UnsubscribeConfirmation') {
      log(`intake: ${from}: unsubscribed from ${m.TopicArn}`);
      return { status: 200, body: { unsubscribed: true, topic: m.TopicArn } };
    }
    let alarm: RawAlarm | undefined;
    try {
      alarm = parseCloudWatchSnsMessage(m.Message, now());
    } catch (err) {
      if (err instanceof BadAlarm) throw new HttpError(400, `sns: ${err.message}`);
      throw err;
    }
    if (!alarm) {
      log(`intake: ${from}: SNS message ${m.MessageId} on ${m.TopicArn} is not a CloudWatch alarm; ignored`);
      stats.ignored++;
      metrics.alarms.inc({ endpoint: 'sns', outcome: 'ignored' });
      return { status: 200, body: { accepted: 0, ignored: [m.MessageId] } };
    }
    return deliver([alarm], from, 'sns');
  }

  async function route(
    req: IncomingMessage,
    from: string,
  ): Promise<{ status: number; body: unknown; contentType?: string }> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/healthz') {
      const journal = opts.sink.stats?.();
      return { status: 200, body: { ok: true, ...stats, ...(journal ? { journal } : {}) } };
    }
    if (req.method === 'GET' && path === '/metrics') {
      const [own, extra] = await Promise.all([
        metrics.registry.metrics(),
        opts.extraMetrics
          ? opts.extraMetrics().catch((err: Error) => `# temporal sdk metrics unavailable: ${err.message}\n`)
          : Promise.resolve(''),
      ]);
      return { status: 200, body: extra ? `${own}\n${extra}` : own, contentType: metrics.registry.contentType };
    }
    if (req.method !== 'POST') throw new HttpError(405, `${req.method} ${path}: only POST`);
    const body = await readBody(req, t.maxBodyBytes);
    switch (path) {
      case '/sns':
        return handleSns(body, from);
      case '/eventbridge': {
        if (!secrets.eventbridge)
          throw new HttpError(
            401,
            `eventbridge: no shared secret configured (set ${t.eventbridge.secretEnv}); refusing everything`,
          );
        const presented = req.headers[t.eventbridge.header.toLowerCase()];
        if (!sameSecret(Array.isArray(presented) ? presented[0] : presented, secrets.eventbridge))
          throw new HttpError(401, `eventbridge: missing or wrong ${t.eventbridge.header} header`);
        try {
          return await deliver(parseEventBridge(json(body, 'eventbridge'), now()), from, 'eventbridge');
        } catch (err) {
          if (err instanceof BadAlarm) throw new HttpError(400, `eventbridge: ${err.message}`);
          throw err;
        }
      }
      case '/alertmanager': {
        if (!secrets.alertmanager)
          throw new HttpError(
            401,
            `alertmanager: no bearer token configured (set ${t.alertmanager.tokenEnv}); refusing everything`,
          );
        const auth = req.headers.authorization;
        const token = auth?.startsWith('Bearer ') ? auth.slice(7) : undefined;
        if (!sameSecret(token, secrets.alertmanager))
          throw new HttpError(401, 'alertmanager: missing or wrong bearer token');
        try {
          return await deliver(parseAlertmanager(json(body, 'alertmanager'), now()), from, 'alertmanager');
        } catch (err) {
          if (err instanceof BadAlarm) throw new HttpError(400, `alertmanager: ${err.message}`);
          throw err;
        }
      }
      default:
        throw new HttpError(404, `no endpoint ${path}; use /sns, /eventbridge or /alertmanager`);
    }
  }

  const server = createServer((req, res: ServerResponse) => {
    const from = `${req.socket.remoteAddress ?? '?'} ${req.method} ${req.url}`;
    route(req, from).then(
      ({ status, body, contentType }) => {
        res.writeHead(status, { 'content-type': contentType ?? 'application/json' });
        res.end(contentType ? String(body) : JSON.stringify(body));
      },
      (err: unknown) => {
        const status = err instanceof HttpError ? err.status : 500;
        const message = err instanceof HttpError ? err.message : `internal error: ${(err as Error).message}`;
        stats.rejected++;
        const path = (req.url ?? '/').split('?')[0];
        metrics.rejected.inc({
          endpoint: ENDPOINTS.has(path ?? '') ? path!.slice(1) : 'other',
          status: String(status),
        });
        log(`intake: rejected ${from}: ${status} ${message}`);
        if (!res.headersSent) {
          res.writeHead(status, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ error: message }));
        }
      },
    );
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? t.port, opts.host ?? t.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    server,
    port,
    url: `http://${opts.host ?? t.host}:${port}`,
    stats,
    metrics,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
