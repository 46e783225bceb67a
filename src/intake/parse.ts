// The alarm formats the intake understands, reduced to one shape. Mapping to a service happens
// afterwards (mapping.ts), so the parsers know nothing about the config.
import type { AlarmSource } from '../lib/config/triggers';
import type { AlarmState } from '../contract/guardian/types';

export interface RawAlarm {
  source: AlarmSource;
  name: string;
  state: AlarmState;
  /** When the alarm changed state (ms since epoch). */
  at: number;
  reason?: string;
  /** Alertmanager labels. */
  labels?: Record<string, string>;
  /** When the failure began, if the alarm says (earlier than `at`, which is when it fired): ms since epoch. */
  since?: number;
  /** The AWS region the alarm lives in, when it says. */
  awsRegion?: string;
}

export class BadAlarm extends Error {
  override name = 'BadAlarm';
}

function state(value: unknown, where: string): AlarmState {
  if (value === 'ALARM' || value === 'OK' || value === 'INSUFFICIENT_DATA') return value;
  throw new BadAlarm(`${where}: state ${JSON.stringify(value)} is not ALARM, OK or INSUFFICIENT_DATA`);
}

/** CloudWatch writes "2024-05-01T10:00:00.000+0000"; Date.parse wants "+00:00". */
function time(value: unknown, fallback: number): number {
  if (typeof value !== 'string') return fallback;
  const ms = Date.parse(value.replace(/([+-]\d\d)(\d\d)$/, '$1:$2'));
  return Number.isNaN(ms) ? fallback : ms;
}

const short = (s: unknown): string | undefined => (typeof s === 'string' ? s.slice(0, 300) : undefined);

/** The Message of an SNS notification from a CloudWatch alarm. Anything else: undefined. */
export function parseCloudWatchSnsMessage(message: string, now: number): RawAlarm | undefined {
  let m: Record<string, unknown>;
  try {
    m = JSON.parse(message) as Record<string, unknown>;
  } catch {
    return undefined;
  }
  if (!m || typeof m !== 'object' || typeof m.AlarmName !== 'string' || m.NewStateValue === undefined) return undefined;
  const arnRegion = typeof m.AlarmArn === 'string' ? m.AlarmArn.split(':')[3] : undefined;
  return {
    source: 'sns',
    name: m.AlarmName,
    state: state(m.NewStateValue, `alarm ${m.AlarmName}`),
    at: time(m.StateChangeTime, now),
    reason: short(m.NewStateReason),
    ...(arnRegion ? { awsRegion: arnRegion } : {}),
  };
}

/** An EventBridge "CloudWatch Alarm State Change" event (or a list of them, from an API destination). */
export function parseEventBridge(body: unknown, now: number): RawAlarm[] {
  const events = Array.isArray(body) ? body : [body];
  return events.map((e, i) => {
    const where = `event ${i}`;
    if (!e || typeof e !== 'object') throw new BadAlarm(`${where} is not an object`);
    const ev = e as Record<string, unknown>;
    if (ev['detail-type'] !== 'CloudWatch Alarm State Change') {
      throw new BadAlarm(
        `${where}: detail-type ${JSON.stringify(ev['detail-type'])} is not "CloudWatch Alarm State Change"`,
      );
    }
    const detail = ev.detail as Record<string, unknown> | undefined;
    const st = detail?.state as Record<string, unknown> | undefined;
    if (!detail || typeof detail.alarmName !== 'string' || !st)
      throw new BadAlarm(`${where}: detail.alarmName and detail.state are required`);
    return {
      source: 'eventbridge' as const,
      name: detail.alarmName,
      state: state(st.value, `${where} (${detail.alarmName})`),
      at: time(st.timestamp ?? ev.time, now),
      reason: short(st.reason),
      ...(typeof ev.region === 'string' ? { awsRegion: ev.region } : {}),
    };
  });
}

/** A Prometheus Alertmanager webhook (version 4): one alarm per alert. */
export function parseAlertmanager(body: unknown, now: number): RawAlarm[] {
  if (!body || typeof body !== 'object' || !Array.isArray((body as { alerts?: unknown }).alerts)) {
    throw new BadAlarm('not an Alertmanager webhook: `alerts` must be a list');
  }
  return (body as { alerts: unknown[] }).alerts.map((a, i) => {
    const alert = a as Record<string, unknown>;
    const labels = (alert?.labels ?? {}) as Record<string, unknown>;
    if (typeof labels.alertname !== 'string') throw new BadAlarm(`alerts[${i}] has no labels.alertname`);
    const firing = alert.status === 'firing';
    if (!firing && alert.status !== 'resolved')
      throw new BadAlarm(`alerts[${i}]: status ${JSON.stringify(alert.status)} is not firing or resolved`);
    const annotations = (alert.annotations ?? {}) as Record<string, unknown>;
    // The local stack's probe alerts carry their last successful probe (Unix seconds), so a run's
    // RTO counts from the failure rather than from when the alert fired.
    const since =
      firing && typeof annotations.failing_since === 'string' ? Number(annotations.failing_since) * 1000 : NaN;
    return {
      ...(Number.isFinite(since) && since > 0 ? { since: Math.round(since) } : {}),
      source: 'alertmanager' as const,
      name: labels.alertname,
      state: firing ? ('ALARM' as const) : ('OK' as const),
      at: time(firing ? alert.startsAt : alert.endsAt, now),
      reason: short(annotations.summary ?? annotations.description),
      labels: Object.fromEntries(Object.entries(labels).filter(([, v]) => typeof v === 'string')) as Record<
        string,
        string
      >,
    };
  });
}
