// The config of what starts runs and who steers them: the alarm intake, the Route 53 health
// watcher, the Slack bot (top-level `triggers:`), and per service the alarm mapping, debounce and
// the approval policy of runs started by alarms or from Slack (`services[].triggers:`).
// Secrets never go here: the config names the environment variables that hold them.
import { z } from 'zod';
import type { Config, Service } from './schema';

const duration = z.string().regex(/^\d+(ms|s|m|h)$/, 'a duration like 500ms, 30s, 5m or 1h');
const regionName = z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d+$/, 'a region name like us-west-2');
const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'the name of an environment variable');
/** Slack user ids (U…, W…) and user-group ids (S…). */
const slackId = z.string().regex(/^[UWS][A-Z0-9]{2,}$/, 'a Slack user id (U…/W…) or user-group id (S…)');

export const AlarmSource = z.enum(['sns', 'eventbridge', 'alertmanager', 'route53']);
export const Severity = z.enum(['critical', 'warning']);

/** Maps one alarm to the service it is about, the region that is failing, and how bad it is. */
export const AlarmRule = z
  .strictObject({
    /** Where the alarm comes from; absent: any source. */
    source: AlarmSource.optional(),
    /** CloudWatch alarm name, Alertmanager `alertname`, or Route 53 health check id. `*` ends a prefix. */
    name: z.string().min(1),
    /** Alertmanager labels that must all match. */
    labels: z.record(z.string(), z.string()).optional(),
    /** The failing region; or take it from an Alertmanager label with `regionLabel`. */
    region: regionName.optional(),
    regionLabel: z.string().optional(),
    /**
     * The Alertmanager label naming the region the alarm was seen *from* (the local stack's probes:
     * `probe_from`). Such alarms count toward a failover only when a quorum of the other regions agree.
     */
    vantageLabel: z.string().optional(),
    /** Only critical alarms count toward a failover; warnings are recorded and shown. */
    severity: Severity.default('critical'),
  })
  .refine((r) => (r.region === undefined) !== (r.regionLabel === undefined), {
    message: 'give exactly one of `region` or `regionLabel`',
  });

/**
 * What happens when a run of this mode is started by an alarm or from Slack:
 * - auto: start and proceed;
 * - approve: start and wait at the approval gate for a person (policy.approvalTimeout, then reject);
 * - approve-or-proceed-after: proceed after `after` unless someone rejects first.
 */
export const ModeApproval = z.discriminatedUnion('policy', [
  z.strictObject({ policy: z.literal('auto') }),
  z.strictObject({ policy: z.literal('approve'), timeout: duration.optional() }),
  z.strictObject({ policy: z.literal('approve-or-proceed-after'), after: duration }),
]);

const perMode = <T extends z.ZodType>(t: T) => z.strictObject({ planned: t.optional(), unplanned: t.optional() });

export const ServiceTriggers = z.strictObject({
  alarms: z.array(AlarmRule).default([]),
  /** Route 53 health check id per region, polled by the health watcher. */
  healthChecks: z.record(regionName, z.string().min(1)).default({}),
  /** Fail over only after `failures` failing signals for one region within `window`. */
  debounce: z
    .strictObject({ failures: z.number().int().min(1).default(3), window: duration.default('2m') })
    .prefault({}),
  /**
   * Vantage points (alarms with a `vantageLabel`) that must agree a region is down before their
   * alarms count; absent: a majority of the service's other regions.
   */
  quorum: z.number().int().min(1).optional(),
  /** Per mode; absent: derived from policy.approval / onApprovalTimeout. */
  approval: perMode(ModeApproval).prefault({}),
  /** Who may approve in Slack, per mode: user ids and user-group ids. The bot signs for them (docs/approvals.md); empty: nobody from Slack. */
  approvers: perMode(z.array(slackId)).prefault({}),
  /** Two distinct approvers, per mode (reference: unplanned). */
  twoApprovers: perMode(z.boolean()).prefault({}),
  /** A region the guardian drained is undrained once it has been healthy (an OK, no failing signal) this long. */
  undrainAfter: duration.default('5m'),
});

export const IntakeConfig = z.strictObject({
  host: z.string().default('127.0.0.1'),
  port: z.number().int().min(0).max(65535).default(8787),
  sns: z
    .strictObject({
      /** Older notifications are rejected (replays). */
      maxAge: duration.default('1h'),
      /** When not empty, only these topics are accepted. */
      topicArns: z.array(z.string()).default([]),
      /** Confirm subscriptions (GET SubscribeURL, SNS hosts only). */
      autoConfirm: z.boolean().default(true),
    })
    .prefault({}),
  eventbridge: z
    .strictObject({
      header: z.string().default('x-regionshift-secret'),
      secretEnv: envName.default('REGIONSHIFT_EVENTBRIDGE_SECRET'),
    })
    .prefault({}),
  alertmanager: z.strictObject({ tokenEnv: envName.default('REGIONSHIFT_ALERTMANAGER_TOKEN') }).prefault({}),
  /** Largest request body accepted. */
  maxBodyBytes: z
    .number()
    .int()
    .min(1024)
    .default(256 * 1024),
  /**
   * The alarm journal: accepted alarms are fsync'd here before the 202 and forwarded to the
   * guardians from it (after a restart too). Default: intake-journal.jsonl in the state directory.
   * Give each intake process its own; in a container, put it on a volume.
   */
  journal: z
    .strictObject({
      path: z.string().min(1).optional(),
      /** Deliveries waiting for their guardian before new ones are refused with 503. */
      maxPending: z.number().int().min(1).default(10_000),
    })
    .prefault({}),
});

export const HealthWatcherConfig = z.strictObject({
  interval: duration.default('30s'),
  /** A check is failing when fewer than this share of Route 53 checkers report success (Route 53's own rule is 18%). */
  healthyShare: z.number().min(0).max(1).default(0.18),
});

export const SlackConfig = z.strictObject({
  mode: z.enum(['http', 'socket']).default('http'),
  host: z.string().default('127.0.0.1'),
  port: z.number().int().min(0).max(65535).default(3000),
  /** The slash command, as registered in the Slack app. */
  command: z
    .string()
    .regex(/^\/[a-z0-9_-]+$/, 'a slash command like /regionshift')
    .default('/regionshift'),
  /** Channel id where each run gets its message. */
  channel: z.string().min(1),
  signingSecretEnv: envName.default('SLACK_SIGNING_SECRET'),
  botTokenEnv: envName.default('SLACK_BOT_TOKEN'),
  appTokenEnv: envName.default('SLACK_APP_TOKEN'),
  /** How often runs are read from Temporal to update their messages. */
  pollInterval: duration.default('2s'),
  /** Runs that ended this long ago are no longer updated. */
  followFor: duration.default('15m'),
  /** How often the last readiness evaluation is read, to say in the channel when a service stops (or starts again) being ready to fail over. */
  readinessPollInterval: duration.default('1m'),
  /** Web API base URL (tests point it at a local recorder). */
  apiUrl: z.string().url().optional(),
});

export const Triggers = z.strictObject({
  intake: IntakeConfig.prefault({}),
  healthWatcher: HealthWatcherConfig.prefault({}),
  slack: SlackConfig.optional(),
});

export type AlarmSource = z.infer<typeof AlarmSource>;
export type Severity = z.infer<typeof Severity>;
export type AlarmRule = z.infer<typeof AlarmRule>;
export type ModeApproval = z.infer<typeof ModeApproval>;
export type ServiceTriggers = z.infer<typeof ServiceTriggers>;
export type IntakeConfig = z.infer<typeof IntakeConfig>;
export type SlackConfig = z.infer<typeof SlackConfig>;
export type Triggers = z.infer<typeof Triggers>;

// Until (and after) the two fields are wired into schema.ts, these read them from the parsed
// config, applying defaults, so every caller sees the same shape. Parsed once per raw object.
const parsed = new WeakMap<object, { raw: unknown; value: unknown }>();

function cached<T>(holder: object, raw: unknown, parse: (raw: unknown) => T): T {
  const hit = parsed.get(holder);
  if (hit && hit.raw === raw) return hit.value as T;
  const value = parse(raw);
  parsed.set(holder, { raw, value });
  return value;
}

export function triggersOf(config: Config): Triggers {
  const raw = (config as { triggers?: unknown }).triggers;
  return cached(config, raw, (r) => Triggers.parse(r ?? {}));
}

export function serviceTriggersOf(service: Service): ServiceTriggers {
  const raw = (service as { triggers?: unknown }).triggers;
  return cached(service, raw, (r) => ServiceTriggers.parse(r ?? {}));
}

/** What the schema cannot see alone: regions that must be one of their service's regions. */
export function triggerProblems(config: Config): string[] {
  const problems: string[] = [];
  config.services.forEach((svc, i) => {
    const t = serviceTriggersOf(svc);
    const where = `services[${i}] (${svc.name}).triggers`;
    t.alarms.forEach((rule, j) => {
      if (rule.region && !svc.regions.includes(rule.region))
        problems.push(
          `${where}.alarms[${j}]: region ${rule.region} is not one of the service's regions (${svc.regions.join(', ')})`,
        );
    });
    if (t.quorum !== undefined && t.quorum > svc.regions.length - 1) {
      problems.push(
        `${where}.quorum: ${t.quorum} vantage points can never agree: the service has ${svc.regions.length - 1} other region(s) to see a region from`,
      );
    }
    for (const region of Object.keys(t.healthChecks)) {
      if (!svc.regions.includes(region))
        problems.push(
          `${where}.healthChecks: ${region} is not one of the service's regions (${svc.regions.join(', ')})`,
        );
    }
  });
  return problems;
}
