// The shape of regionshift.yaml (services, their regions, providers and policies) and of
// runbooks/<kind>.yaml. Validated when loaded; see load.ts for how errors are reported.
import { z } from 'zod';

const regionName = z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d+$/, 'a region name like us-west-2');
const duration = z
  .string()
  .regex(/^\d+(ms|s|m|h)$/, 'a duration like 500ms, 30s, 5m or 1h');

export const PostgresRegion = z.strictObject({
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535),
  database: z.string().default('postgres'),
  /** Role the application writes as; the fence is verified against it. */
  appUser: z.string().default('app'),
  /** Role the worker administers the server as. Its password, if any, comes from passwordEnv. */
  adminUser: z.string().default('postgres'),
  /** Name of an environment variable on that region's worker holding the admin password. */
  passwordEnv: z.string().optional(),
  /** Data directory, for the steps that need the server's files (rejoin as standby). */
  dataDir: z.string().min(1),
  /** PostgreSQL's bin directory on that region's host; found automatically when absent. */
  pgBin: z.string().optional(),
});

export const PostgresStreamingDatabase = z.strictObject({
  provider: z.literal('postgres-streaming'),
  regions: z.record(regionName, PostgresRegion),
});

export const Route53Traffic = z.strictObject({
  provider: z.literal('route53'),
  hostedZone: z.string().min(1),
  recordName: z.string().min(1),
  routing: z.enum(['weighted', 'failover']).default('weighted'),
  ttl: z.number().int().min(0).default(30),
  /** Per region, the CNAME target clients are sent to. */
  endpoints: z.record(regionName, z.string().min(1)),
  /** Overrides the AWS endpoint (moto in the local stack). */
  endpointUrl: z.string().url().optional(),
});

const approvalRequirement = z.enum(['none', 'required']);

export const Policy = z.strictObject({
  /** Largest replication lag, in seconds, an unplanned failover may promote at without asking. */
  rpoBudgetSeconds: z.number().min(0).default(5),
  /** Unplanned promotion without a verified fence is allowed without a human. */
  allowDataLoss: z.boolean().default(false),
  approval: z
    .strictObject({ planned: approvalRequirement.default('none'), unplanned: approvalRequirement.default('required') })
    .default({ planned: 'none', unplanned: 'required' }),
  /** Who may approve (user ids or names as the CLI/Slack passes them). Empty: anyone but the requester. */
  approvers: z.array(z.string().min(1)).default([]),
  approvalTimeout: duration.default('15m'),
  onApprovalTimeout: z.enum(['reject', 'proceed']).default('reject'),
  /** How long to wait for the target to replay everything the fenced source wrote. */
  lagTimeout: duration.default('60s'),
  cooldown: duration.default('5m'),
});

export const Service = z.strictObject({
  name: z.string().regex(/^[a-z][a-z0-9-]*$/, 'lowercase letters, digits and dashes'),
  /** Region names in order of preference as failover targets; the first is the initial primary. */
  regions: z.array(regionName).min(2, 'a service needs at least two regions'),
  database: PostgresStreamingDatabase,
  traffic: Route53Traffic,
  policy: Policy.default(Policy.parse({})),
}).superRefine((svc, ctx) => {
  // Every region the service runs in needs a database node and a traffic endpoint.
  for (const region of svc.regions) {
    if (!svc.database.regions[region]) {
      ctx.addIssue({ code: 'custom', path: ['database', 'regions'], message: `no entry for region ${region}` });
    }
    if (!svc.traffic.endpoints[region]) {
      ctx.addIssue({ code: 'custom', path: ['traffic', 'endpoints'], message: `no entry for region ${region}` });
    }
  }
  if (new Set(svc.regions).size !== svc.regions.length) {
    ctx.addIssue({ code: 'custom', path: ['regions'], message: 'a region is listed twice' });
  }
});

export const Config = z.strictObject({
  temporal: z
    .strictObject({
      address: z.string().default('127.0.0.1:7233'),
      namespace: z.string().default('default'),
      uiUrl: z.string().default('http://127.0.0.1:8233'),
    })
    .default({ address: '127.0.0.1:7233', namespace: 'default', uiUrl: 'http://127.0.0.1:8233' }),
  /** Ports of the embedded local stack (regionshift stack up). */
  stack: z
    .strictObject({
      temporalPort: z.number().int().default(7233),
      temporalUiPort: z.number().int().default(8233),
      motoPort: z.number().int().default(5055),
    })
    .default({ temporalPort: 7233, temporalUiPort: 8233, motoPort: 5055 }),
  services: z.array(Service).min(1),
});

export type PostgresRegion = z.infer<typeof PostgresRegion>;
export type Route53Traffic = z.infer<typeof Route53Traffic>;
export type Policy = z.infer<typeof Policy>;
export type Service = z.infer<typeof Service>;
export type Config = z.infer<typeof Config>;
