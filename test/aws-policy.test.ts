// The AWS-facing config and policies without any server: the aurora-global / route53-arc config
// shape and its cross-checks, data residency refused at plan time, the target-by-policy choice,
// and the IAM policy a region worker needs covering every AWS call the code makes.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { DbNodeState } from '../src/contract/activities';
import { parseYaml } from '../src/lib/config/load';
import { problemsOf } from './support/config-problems';
import { Config } from '../src/lib/config/schema';
import { residencyRuleOf, residencyViolation } from '../src/contract/policy/residency';
import { chooseTarget, NoTargetError } from '../src/contract/policy/target';
import { builtinRunbookPath, loadRunbook } from '../src/lib/runbooks';
import { buildRunInput, InputError } from '../src/lib/runs/client';

const ROOT = join(__dirname, '..');

/** The config shape a team on Aurora and Route 53 writes (also the example in the report). */
const AURORA_YAML = `
residency:
  classes:
    eu: { allowedRegions: [eu-*] }
    us: { allowedRegions: [us-east-1, us-west-2], allowOutside: true }
services:
  - name: payments
    regions: [eu-west-1, eu-central-1, us-east-1, ap-southeast-2]
    dataResidency: { class: eu }
    database:
      provider: aurora-global
      engine: aurora-postgresql
      globalClusterIdentifier: payments-global
      lagMetric: AuroraGlobalDBRPOLag
      fallback: detach-and-promote
      regions:
        eu-west-1:
          clusterIdentifier: payments-euw1
          clusterArn: arn:aws:rds:eu-west-1:123456789012:cluster:payments-euw1
          writerEndpoint: payments-euw1.cluster-abc.eu-west-1.rds.amazonaws.com
          passwordEnv: PAYMENTS_DB_PASSWORD
          roleArn: arn:aws:iam::123456789012:role/regionshift-worker
        eu-central-1: { clusterIdentifier: payments-euc1, writerEndpoint: payments-euc1.cluster-abc.eu-central-1.rds.amazonaws.com, passwordEnv: PAYMENTS_DB_PASSWORD }
        us-east-1: { clusterIdentifier: payments-use1, writerEndpoint: payments-use1.cluster-abc.us-east-1.rds.amazonaws.com, passwordEnv: PAYMENTS_DB_PASSWORD }
        ap-southeast-2: { clusterIdentifier: payments-apse2, writerEndpoint: payments-apse2.cluster-abc.ap-southeast-2.rds.amazonaws.com, passwordEnv: PAYMENTS_DB_PASSWORD }
    traffic:
      provider: route53
      hostedZone: example.com.
      recordName: payments.example.com.
      routing: geolocation
      ttl: 30
      endpoints:
        eu-west-1: payments.eu-west-1.example.com.
        eu-central-1: payments.eu-central-1.example.com.
        us-east-1: payments.us-east-1.example.com.
        ap-southeast-2: payments.ap-southeast-2.example.com.
      geolocation:
        - { location: { continent: EU }, region: eu-west-1 }
        - { location: { continent: OC }, region: ap-southeast-2 }
        - { location: default, region: eu-west-1 }
  - name: ledger
    regions: [us-east-1, us-west-2]
    dataResidency: { class: us }
    database:
      provider: aurora-global
      globalClusterIdentifier: ledger-global
      edgeFence: routing-control
      regions:
        us-east-1: { clusterIdentifier: ledger-use1 }
        us-west-2: { clusterIdentifier: ledger-usw2 }
    traffic:
      provider: route53-arc
      clusterEndpoints:
        - { url: https://host-aaaaaa.us-east-1.example.com, region: us-east-1 }
        - { url: https://host-bbbbbb.us-west-2.example.com, region: us-west-2 }
      routingControls:
        us-east-1: arn:aws:route53-recovery-control::123456789012:controlpanel/0123456789abcdef/routingcontrol/aaaaaaaaaaaa
        us-west-2: arn:aws:route53-recovery-control::123456789012:controlpanel/0123456789abcdef/routingcontrol/bbbbbbbbbbbb
`;

const problems = (text: string): string[] => problemsOf(() => parseYaml('regionshift.yaml', text, Config));

describe('aws config', () => {
  it('accepts Aurora + Route 53 geolocation and Aurora + ARC services, with defaults filled in', () => {
    const config = parseYaml('regionshift.yaml', AURORA_YAML, Config).value;
    const [payments, ledger] = config.services;
    expect(payments!.database).toMatchObject({
      provider: 'aurora-global',
      lagMetric: 'AuroraGlobalDBRPOLag',
      lagMetricPeriodSeconds: 60,
      edgeFence: 'none',
      preserveSnapshotPrefix: 'regionshift-preserved',
    });
    expect(payments!.database.regions['eu-central-1']).toMatchObject({
      port: 5432,
      appUser: 'app',
      adminUser: 'postgres',
      database: 'postgres',
    });
    expect(ledger!.traffic).toMatchObject({ provider: 'route53-arc', ttl: 30 });
  });

  it('refuses inconsistent Aurora settings, naming the field and what to do', () => {
    const broken = AURORA_YAML.replace('clusterArn: arn:aws:rds:eu-west-1:', 'clusterArn: arn:aws:rds:eu-north-1:')
      .replace(
        ' us-east-1: { clusterIdentifier: payments-use1, writerEndpoint: payments-use1.cluster-abc.us-east-1.rds.amazonaws.com, passwordEnv: PAYMENTS_DB_PASSWORD }',
        ' us-east-1: { clusterIdentifier: payments-use1 }',
      )
      .replace('lagMetric: AuroraGlobalDBRPOLag', 'lagMetric: AuroraGlobalDBReplicationLag')
      .replace('dataResidency: { class: us }', 'dataResidency: { class: mars }')
      .replace(
        'provider: route53-arc',
        'provider: route53\n      hostedZone: z.\n      recordName: r.z.\n      endpoints: { us-east-1: a., us-west-2: b. }',
      )
      .replace(/      clusterEndpoints:[\s\S]*$/, '');
    const found = problems(broken);
    const has = (path: string, text: string) =>
      expect(
        found.some((p) => p.includes(path) && p.includes(text)),
        `${path}: ${text}\n${found.join('\n')}`,
      ).toBe(true);
    has('services[0] (payments).database.regions.eu-west-1.clusterArn', 'the ARN is in region eu-north-1');
    has('services[0] (payments).database.regions', 'give every region a writerEndpoint or none');
    has('services[0] (payments).database.lagMetric', 'AuroraGlobalDBReplicationLag is published for Aurora MySQL');
    has('services[1] (ledger).database.edgeFence', 'needs traffic.provider route53-arc');
    has('services[1] (ledger).dataResidency.class', 'unknown residency class "mars"');
  });

  it('keeps the shipped local-stack config valid', () => {
    const config = parseYaml('regionshift.yaml', readFileSync(join(ROOT, 'regionshift.yaml'), 'utf8'), Config).value;
    expect(config.services[0]!.database.provider).toBe('postgres-streaming');
    expect(config.services[0]!.traffic).toMatchObject({
      provider: 'route53',
      routing: 'weighted',
      drain: 'proportional',
    });
  });
});

describe('data residency', () => {
  const config = parseYaml('regionshift.yaml', AURORA_YAML, Config).value;
  const runbook = loadRunbook(builtinRunbookPath('failover'));
  const req = { mode: 'planned' as const, dryRun: false, requestedBy: 'alice', trigger: 'test' };

  it('refuses at plan time a failover of EU-resident data to a non-EU region, naming the rule, the class and the allowed regions', () => {
    expect(() => buildRunInput(config, runbook, { ...req, service: 'payments', target: 'us-east-1' })).toThrow(
      InputError,
    );
    expect(() => buildRunInput(config, runbook, { ...req, service: 'payments', target: 'us-east-1' })).toThrow(
      'data-residency rule "eu" refuses a failover of payments to us-east-1: payments\'s data is of class eu, which may only live in eu-* (residency.classes.eu.allowedRegions)',
    );
    expect(() => buildRunInput(config, runbook, { ...req, service: 'payments', target: 'ap-southeast-2' })).toThrow(
      /allowOutside: true/,
    );
    // Inside the EU it goes ahead, and the run carries the rule (in its policy) for the workflow's own check.
    const input = buildRunInput(config, runbook, { ...req, service: 'payments', target: 'eu-central-1' });
    expect(input.policy.residency).toEqual({ class: 'eu', allowedRegions: ['eu-*'], allowOutside: false });
  });

  it("puts the rule in the service's policy, which every run carries, and refuses one written by hand", () => {
    expect(config.services[0]!.policy.residency).toEqual({
      class: 'eu',
      allowedRegions: ['eu-*'],
      allowOutside: false,
    });
    const handWritten = AURORA_YAML.replace(
      '    dataResidency: { class: eu }\n',
      '    dataResidency: { class: eu }\n    policy: { residency: { class: eu, allowedRegions: [us-east-1], allowOutside: true } }\n',
    );
    expect(problems(handWritten)).toEqual([
      'regionshift.yaml:10: services[0] (payments).policy.residency: policy.residency is derived from dataResidency and residency.classes: remove it and set those instead',
    ]);
    // Parsing a parsed config again (tests, tools) is fine: the rule matches.
    expect(Config.parse(config).services[0]!.policy.residency).toEqual(config.services[0]!.policy.residency);
  });

  it('lets a class that explicitly allows it fail over outside its regions', () => {
    const rule = residencyRuleOf(config, config.services[1]!)!;
    expect(rule).toEqual({ class: 'us', allowedRegions: ['us-east-1', 'us-west-2'], allowOutside: true });
    expect(residencyViolation(rule, 'ledger', 'eu-west-1')).toBeUndefined();
    expect(residencyViolation(undefined, 'x', 'anywhere-1')).toBeUndefined();
  });
});

describe('target by policy', () => {
  const service = { name: 'payments', regions: ['eu-west-1', 'eu-central-1', 'us-east-1', 'ap-southeast-2'] };
  const now = Date.parse('2030-01-01T00:00:10Z');
  const standby = (region: string, lagMs?: number): DbNodeState => ({
    region,
    reachable: true,
    role: 'standby',
    streamingFrom: 'eu-west-1',
    ...(lagMs !== undefined
      ? {
          lastHeardFromPrimaryAt: new Date(now).toISOString(),
          lastReplayedCommitAt: new Date(now - lagMs).toISOString(),
        }
      : {}),
  });
  const topology: DbNodeState[] = [
    { region: 'eu-west-1', reachable: false, error: 'timed out' },
    standby('eu-central-1', 900),
    standby('us-east-1', 100),
    standby('ap-southeast-2'),
  ];

  it('picks the healthy standby with the least lag', () => {
    expect(chooseTarget(service, topology, { source: 'eu-west-1' }).target).toBe('us-east-1');
  });

  it('never picks outside the residency class, and explains each region', () => {
    const rule = { class: 'eu', allowedRegions: ['eu-*'], allowOutside: false };
    const choice = chooseTarget(service, topology, { residency: rule, source: 'eu-west-1' });
    expect(choice.target).toBe('eu-central-1');
    expect(choice.candidates.find((c) => c.region === 'us-east-1')!.verdict).toContain('outside residency class eu');
    const noEu = topology.map((n) => (n.region === 'eu-central-1' ? { ...n, reachable: false, error: 'down' } : n));
    expect(() => chooseTarget(service, noEu, { residency: rule, source: 'eu-west-1' })).toThrow(NoTargetError);
    expect(() => chooseTarget(service, noEu, { residency: rule, source: 'eu-west-1' })).toThrow(
      /eu-central-1: unreachable \(down\).*us-east-1: outside residency class eu/,
    );
  });

  it("ranks unknown lag last and breaks ties by the config's order", () => {
    const unknown = [
      standby('eu-central-1'),
      standby('us-east-1'),
      { region: 'eu-west-1', reachable: true, role: 'primary' as const },
    ];
    expect(chooseTarget(service, unknown).target).toBe('eu-central-1');
  });
});

// -------------------------------------------------------------------------------------------------

/** IAM service prefix of each AWS SDK client package the code may use. */
const IAM_PREFIX: Record<string, string> = {
  '@aws-sdk/client-rds': 'rds',
  '@aws-sdk/client-elasticache': 'elasticache',
  '@aws-sdk/client-cloudwatch': 'cloudwatch',
  '@aws-sdk/client-route-53': 'route53',
  '@aws-sdk/client-route53-recovery-cluster': 'route53-recovery-cluster',
  '@aws-sdk/client-sts': 'sts',
};

/** Permissions a call needs besides its own action (AWS documents these per operation). */
const IMPLIED: Record<string, string[]> = {
  // CopyDBClusterSnapshot, RestoreDBClusterFromSnapshot and CreateDBInstance with Tags also need rds:AddTagsToResource.
  'rds:CopyDBClusterSnapshot': ['rds:AddTagsToResource'],
  'rds:RestoreDBClusterFromSnapshot': ['rds:AddTagsToResource'],
  'rds:CreateDBInstance': ['rds:AddTagsToResource'],
};

/** Calls in the code that a region worker never makes, and why. */
const NOT_A_REGION_WORKER_CALL: Record<string, string> = {
  'route53:CreateHostedZone':
    'ensureTrafficRecords seeds the local stack and tests; a region worker never creates zones',
  'route53:GetHealthCheckStatus': 'the health watcher runs in `regionshift intake`, not in a region worker',
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return name === 'node_modules' ? [] : sourceFiles(path);
    return /\.ts$/.test(name) && !/\.d\.ts$/.test(name) ? [path] : [];
  });
}

function awsCallsInSource(): Map<string, string[]> {
  const calls = new Map<string, string[]>();
  const add = (action: string, where: string): void => {
    calls.set(action, [...(calls.get(action) ?? []), where]);
  };
  const roots = ['src', 'activities', 'workers', 'workflows', 'bench']
    .map((d) => join(ROOT, d))
    .filter((d) => {
      try {
        return statSync(d).isDirectory();
      } catch {
        return false;
      }
    });
  for (const file of roots.flatMap(sourceFiles)) {
    const text = readFileSync(file, 'utf8');
    const where = relative(ROOT, file);
    // Which package each imported name comes from.
    const from = new Map<string, string>();
    for (const m of text.matchAll(/import\s+(?:type\s+)?\{([^}]*)\}\s+from\s+'(@aws-sdk\/[^']+)'/g)) {
      for (const name of m[1]!
        .split(',')
        .map((n) =>
          n
            .trim()
            .replace(/^type\s+/, '')
            .split(/\s+as\s+/)
            .pop()!,
        )
        .filter(Boolean))
        from.set(name, m[2]!);
    }
    for (const m of text.matchAll(/new\s+([A-Za-z0-9]+)Command\s*\(/g)) {
      const pkg = from.get(`${m[1]}Command`);
      if (!pkg)
        throw new Error(
          `${where}: new ${m[1]}Command( is not imported from an @aws-sdk client package the scan recognises`,
        );
      const prefix = IAM_PREFIX[pkg];
      if (!prefix) throw new Error(`${where}: ${pkg} has no IAM service prefix in this test's IAM_PREFIX: add it`);
      const action = `${prefix}:${m[1]}`;
      add(action, where);
      for (const implied of IMPLIED[action] ?? []) add(implied, where);
    }
    // Assuming the role named by roleArn: STS AssumeRole, made by the credential provider.
    if (text.split('\n').some((line) => /fromTemporaryCredentials\s*\(/.test(line) && !/^\s*(\/\/|\*)/.test(line)))
      add('sts:AssumeRole', where);
  }
  return calls;
}

function allowed(policy: { Statement: { Effect: string; Action: string | string[] }[] }): (action: string) => boolean {
  const patterns = policy.Statement.filter((s) => s.Effect === 'Allow').flatMap((s) =>
    Array.isArray(s.Action) ? s.Action : [s.Action],
  );
  const regexes = patterns.map(
    (p) => new RegExp(`^${p.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`, 'i'),
  );
  return (action) => regexes.some((r) => r.test(action));
}

describe('iam/region-worker-policy.json', () => {
  const policy = JSON.parse(readFileSync(join(ROOT, 'iam', 'region-worker-policy.json'), 'utf8')) as {
    Statement: { Effect: string; Action: string | string[]; Resource: string | string[] }[];
  };
  const calls = awsCallsInSource();

  it('covers every AWS call the code makes', () => {
    const covers = allowed(policy);
    const missing = [...calls.entries()]
      .filter(([action]) => !covers(action) && !NOT_A_REGION_WORKER_CALL[action])
      .map(([action, files]) => `${action} (${[...new Set(files)].join(', ')})`);
    expect(
      missing,
      `actions the code calls that iam/region-worker-policy.json does not allow:\n${missing.join('\n')}`,
    ).toEqual([]);
    // The scan found the calls this issue added (a broken scan would pass vacuously).
    for (const action of [
      'rds:SwitchoverGlobalCluster',
      'rds:FailoverGlobalCluster',
      'rds:RemoveFromGlobalCluster',
      'rds:RestoreDBClusterFromSnapshot',
      'rds:CreateDBInstance',
      'rds:DescribeDBInstances',
      'cloudwatch:GetMetricData',
      'route53:ChangeResourceRecordSets',
      'route53-recovery-cluster:UpdateRoutingControlStates',
      'sts:AssumeRole',
    ]) {
      expect(calls.has(action), action).toBe(true);
    }
  });

  it('allows nothing the code does not call (least privilege), and no wildcard actions', () => {
    const actions = policy.Statement.flatMap((s) => (Array.isArray(s.Action) ? s.Action : [s.Action]));
    expect(actions.filter((a) => a.includes('*'))).toEqual([]);
    expect(actions.filter((a) => !calls.has(a))).toEqual([]);
    expect(policy.Statement.every((s) => s.Effect === 'Allow')).toBe(true);
  });
});
