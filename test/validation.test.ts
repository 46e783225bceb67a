// Bad runbooks and configs are refused with the file, the line, the step and the field.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, parseYaml } from '../src/lib/config/load';
import { problemsOf } from './support/config-problems';
import { Config, postgresDatabase } from '../src/lib/config/schema';
import { ServiceTriggers, serviceTriggersOf } from '../src/lib/config/triggers';
import { builtinRunbookPath, loadRunbook } from '../src/lib/runbooks';
import { Runbook } from '../src/contract/runbook/schema';

describe('runbooks', () => {
  it('loads the shipped failover runbook and records its hash', () => {
    const rb = loadRunbook(builtinRunbookPath('failover'));
    expect(rb.kind).toBe('failover');
    expect(rb.steps.map((s) => s.id)).toEqual([
      'preflight',
      'approval',
      'fence',
      'fence-cache',
      'confirm-lag',
      'promote',
      'promote-cache',
      'shift-traffic',
      'verify',
      'repoint-cache',
      'repoint-standbys',
      'rejoin',
      'fence-on-return',
      'handoff',
    ]);
    expect(rb.hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it("the ledger's own runbooks are the built-in ones plus tell-app after the promotion, the demo application's port as the config has it", () => {
    const config = loadConfig(join(__dirname, '..', 'regionshift.yaml'));
    const ledger = config.services.find((s) => s.name === 'ledger')!;
    for (const kind of ['failover', 'failback'] as const) {
      const own = loadRunbook(ledger.runbooks![kind]!);
      const builtin = loadRunbook(builtinRunbookPath(kind));
      const tell = own.steps.find((s) => s.id === 'tell-app')!;
      expect(
        own.steps.filter((s) => s !== tell),
        kind,
      ).toEqual(builtin.steps);
      expect(own.steps[own.steps.indexOf(tell) - 1]!.id, `${kind}: tell-app comes after the promotion`).toBe(
        'promote-cache',
      );
      expect(tell).toMatchObject({
        action: 'http.call',
        placement: 'control',
        params: { url: `http://127.0.0.1:${config.stack.app!.port}/primary` },
      });
    }
    expect(config.stack.app).toEqual({ service: 'ledger', port: 8235 });
  });

  it('names the file, line, step and field of an unknown action', () => {
    const text =
      'kind: failover\nsteps:\n  - id: preflight\n    action: preflight\n  - id: fence\n    action: db.fenceWrite\n';
    const [problem] = problemsOf(() => parseYaml('runbooks/bad.yaml', text, Runbook));
    expect(problem).toContain('runbooks/bad.yaml:6');
    expect(problem).toContain('steps[1] (fence).action');
    expect(problem).toContain('unknown action "db.fenceWrite"; did you mean db.fenceWrites?; known: preflight, ');
  });

  it('suggests what a mistyped action most likely meant, and nothing when no name is close', () => {
    const problem = (action: string) =>
      problemsOf(() => parseYaml('r.yaml', `kind: failover\nsteps:\n  - {id: a, action: ${action}}\n`, Runbook))[0]!;
    expect(problem('db.promte')).toContain('unknown action "db.promte"; did you mean db.promote?; known: ');
    expect(problem('DB.WaitForLag')).toContain('did you mean db.waitForLag?');
    expect(problem('db.fence')).toContain('did you mean db.fenceWrites or db.fenceOnReturn?');
    expect(problem('dns.flip')).toMatch(/unknown action "dns.flip"; known: /);
  });

  it('reports every problem, not just the first', () => {
    const text = [
      'kind: failover',
      'steps:',
      '  - id: fence',
      '    action: db.fenceWrites',
      '    when: [sometimes]',
      '  - id: fence',
      '    action: db.promote',
      '  - id: Bad_Id',
      '    approval: { reason: ok }',
      '    timeout: soon',
    ].join('\n');
    const problems = problemsOf(() => parseYaml('r.yaml', text, Runbook));
    expect(problems.some((p) => p.includes('steps[0] (fence).when[0]'))).toBe(true);
    expect(problems.some((p) => p.includes('steps[2] (Bad_Id).id') && p.includes('lowercase'))).toBe(true);
    expect(problems.some((p) => p.includes('steps[2] (Bad_Id).timeout') && p.includes('duration'))).toBe(true);
  });

  it('refuses duplicate step ids and steps with both or neither of action and approval', () => {
    const dup = 'kind: failover\nsteps:\n  - {id: a, action: preflight}\n  - {id: a, action: db.promote}\n';
    expect(problemsOf(() => parseYaml('d.yaml', dup, Runbook)).join()).toContain('duplicate step id "a"');
    const both = 'kind: failover\nsteps:\n  - {id: a, action: preflight, approval: {reason: x}}\n';
    expect(problemsOf(() => parseYaml('b.yaml', both, Runbook)).join()).toContain(
      'exactly one of `action` or `approval`',
    );
  });

  it('refuses a promotion the workflow would refuse: before the fence, or without the lag confirmed after it', () => {
    const runbook = (...steps: string[]) =>
      ['kind: failover', 'steps:', '  - {id: preflight, action: preflight}', ...steps.map((s) => `  - ${s}`)].join(
        '\n',
      );
    const early = runbook(
      '{id: promote, action: db.promote}',
      '{id: fence, action: db.fenceWrites}',
      '{id: lag, action: db.waitForLag}',
    );
    expect(problemsOf(() => parseYaml('r.yaml', early, Runbook))).toEqual([
      'r.yaml:4: steps[1] (promote).action: db.promote comes before any db.fenceWrites step: a planned run promotes only after a verified fence and the lag confirmed after it, so it would stop here (order: db.fenceWrites, db.waitForLag, db.promote)',
    ]);
    const lagFirst = runbook(
      '{id: lag, action: db.waitForLag}',
      '{id: fence, action: db.fenceWrites}',
      '{id: promote, action: db.promote}',
    );
    expect(problemsOf(() => parseYaml('r.yaml', lagFirst, Runbook)).join()).toContain(
      'steps[3] (promote).action: db.promote has no db.waitForLag step between the fence and it',
    );
    const noLag = runbook('{id: fence, action: db.fenceWrites}', '{id: promote, action: db.promote}');
    expect(problemsOf(() => parseYaml('r.yaml', noLag, Runbook)).join()).toContain(
      'db.promote has no db.waitForLag step between the fence and it',
    );
    const inOrder = runbook(
      '{id: fence, action: db.fenceWrites}',
      '{id: lag, action: db.waitForLag}',
      '{id: promote, action: db.promote}',
    );
    expect(parseYaml('r.yaml', inOrder, Runbook).value.steps).toHaveLength(4);
  });

  it('loads the shipped drain and undrain runbooks; a drain runbook may not touch the database, nor a failover drain', () => {
    expect(loadRunbook(builtinRunbookPath('drain')).steps.map((s) => s.action ?? 'approval')).toEqual([
      'preflight',
      'approval',
      'traffic.drain',
      'traffic.verify',
    ]);
    expect(loadRunbook(builtinRunbookPath('undrain')).steps.map((s) => s.action ?? 'approval')).toEqual([
      'preflight',
      'approval',
      'traffic.undrain',
      'traffic.verify',
    ]);
    const promoting =
      'kind: drain\nsteps:\n  - {id: preflight, action: preflight}\n  - {id: promote, action: db.promote}\n';
    expect(problemsOf(() => parseYaml('d.yaml', promoting, Runbook))).toEqual([
      'd.yaml:4: steps[1] (promote).action: a drain runbook moves traffic only; db.promote is not allowed in it (allowed: preflight, traffic.drain, traffic.verify, and approvals)',
    ]);
    const draining = 'kind: failover\nsteps:\n  - {id: drain, action: traffic.drain}\n';
    expect(problemsOf(() => parseYaml('f.yaml', draining, Runbook)).join()).toContain(
      'steps[0] (drain).action: traffic.drain belongs in a drain or undrain runbook, not a failover one',
    );
  });

  it('reports YAML syntax errors with a position', () => {
    const [problem] = problemsOf(() => parseYaml('s.yaml', 'kind: failover\nsteps: [\n', Runbook));
    expect(problem).toMatch(/^s\.yaml:\d+:\d+: YAML syntax/);
  });
});

describe('service config', () => {
  it('loads the shipped local-stack config with absolute data directories', () => {
    const cfg = loadConfig(join(__dirname, '..', 'regionshift.yaml'));
    const ledger = cfg.services[0]!;
    expect(ledger.regions).toEqual(['us-west-2', 'us-east-1', 'eu-west-1', 'ap-southeast-1']);
    for (const region of ledger.regions)
      expect(postgresDatabase(ledger).regions[region]!.dataDir.startsWith('/'), region).toBe(true);
    expect(ledger.traffic.provider === 'route53' && ledger.traffic.weights).toEqual({
      'us-west-2': 40,
      'us-east-1': 30,
      'eu-west-1': 20,
      'ap-southeast-1': 10,
    });
    // The demo drills back to back: a short cooldown, and the stack's probes mapped so the guardian acts by itself.
    expect(ledger.policy.cooldown).toBe('15s');
    expect(serviceTriggersOf(ledger).alarms.map((a) => [a.source, a.name, a.severity])).toEqual([
      ['alertmanager', 'RegionshiftEndpointUnreachable', 'critical'],
      ['alertmanager', 'RegionshiftReplication*', 'warning'],
    ]);
  });

  it('refuses a region without a database node or a traffic endpoint', () => {
    const text = [
      'services:',
      '  - name: ledger',
      '    regions: [us-west-2, us-east-1]',
      '    database: { provider: postgres-streaming, regions: { us-west-2: { host: h, port: 1, dataDir: d } } }',
      '    traffic: { provider: route53, hostedZone: z., recordName: r.z., endpoints: { us-west-2: a } }',
    ].join('\n');
    const problems = problemsOf(() => parseYaml('c.yaml', text, Config));
    expect(problems).toContain('c.yaml:4: services[0] (ledger).database.regions: no entry for region us-east-1');
    expect(problems.some((p) => p.includes('traffic.endpoints: no entry for region us-east-1'))).toBe(true);
  });

  it('names unknown fields and bad values', () => {
    const text = [
      'services:',
      '  - name: ledger',
      '    regions: [us-west-2, mars-1]',
      '    database: { provider: postgres-streaming, regions: { us-west-2: { host: h, port: "5432", dataDir: d } } }',
      '    traffic: { provider: route53, hostedZone: z., recordName: r.z., endpoints: { us-west-2: a } }',
      '    polcy: {}',
    ].join('\n');
    const problems = problemsOf(() => parseYaml('c.yaml', text, Config));
    expect(problems.some((p) => p.includes('services[0] (ledger).regions[1]') && p.includes('region name'))).toBe(true);
    expect(problems.some((p) => p.includes('database.regions.us-west-2.port') && p.includes('expected number'))).toBe(
      true,
    );
    expect(problems.some((p) => p.includes('polcy'))).toBe(true);
  });
});

describe('service config: a replicated control plane', () => {
  it('refuses temporal.clusters without a cluster for a region the services run in, and a bad address', () => {
    const text = [
      'temporal: { clusters: { us-west-2: 10.0.1.5:7233, eu-west-1: "10.2.1.5" } }',
      'services:',
      '  - name: ledger',
      '    regions: [us-west-2, us-east-1]',
      '    database: { provider: postgres-streaming, regions: { us-west-2: { host: h, port: 1, dataDir: d }, us-east-1: { host: h, port: 2, dataDir: e } } }',
      '    traffic: { provider: route53, hostedZone: z., recordName: r.z., endpoints: { us-west-2: a., us-east-1: b. } }',
    ].join('\n');
    const problems = problemsOf(() => parseYaml('c.yaml', text, Config));
    expect(
      problems.some((p) => p.includes('temporal.clusters.eu-west-1') && p.includes('host:port of a Temporal frontend')),
    ).toBe(true);
    const missing = [
      ...text
        .split('\n')
        .slice(0, 1)
        .map(() => 'temporal: { clusters: { us-west-2: 10.0.1.5:7233 } }'),
      ...text.split('\n').slice(1),
    ].join('\n');
    expect(problemsOf(() => parseYaml('c.yaml', missing, Config))).toEqual([
      'c.yaml:1: temporal.clusters: no cluster for region us-east-1: list one Temporal cluster per region the services run in (us-west-2 listed)',
    ]);
  });
});

describe('service config: drain and evacuation keys', () => {
  const geoService = (rule: string) =>
    [
      'services:',
      '  - name: geo',
      '    regions: [us-west-2, eu-west-1]',
      '    priority: 1',
      '    database: { provider: postgres-streaming, regions: { us-west-2: { host: h, port: 1, dataDir: d }, eu-west-1: { host: h, port: 2, dataDir: e } } }',
      '    traffic:',
      '      provider: route53',
      '      hostedZone: z.',
      '      recordName: r.z.',
      '      routing: geolocation',
      '      endpoints: { us-west-2: a., eu-west-1: b. }',
      '      geolocation:',
      `        - ${rule}`,
      '        - { location: default, region: us-west-2 }',
      'evacuation: { maxConcurrent: 0 }',
    ].join('\n');

  it('refuses a geolocation rule naming an unknown residency class, and an evacuation with no lane', () => {
    expect(
      problemsOf(() =>
        parseYaml(
          'regionshift.yaml',
          geoService('{ location: { continent: EU }, region: eu-west-1, residency: euro }'),
          Config,
        ),
      ),
    ).toEqual([
      'regionshift.yaml:15: evacuation.maxConcurrent: Too small: expected number to be >=1',
      'regionshift.yaml:13: services[0] (geo).traffic.geolocation[0].residency: unknown residency class "euro"; define it under residency.classes (known: none)',
    ]);
  });

  it('defaults priority to 100, evacuation.maxConcurrent to 2 and triggers.undrainAfter to 5m', () => {
    const cfg = loadConfig(join(__dirname, '..', 'regionshift.yaml'));
    expect(cfg.services[0]!.priority).toBe(100);
    expect(cfg.evacuation.maxConcurrent).toBe(2);
    expect(ServiceTriggers.parse({}).undrainAfter).toBe('5m');
    expect(serviceTriggersOf(cfg.services[0]!).undrainAfter, 'the shipped config: the demo undrains soon').toBe('10s');
  });
});

describe('regionshift validate', () => {
  const cli = join(__dirname, '..', 'bin', 'regionshift.js');
  const dir = mkdtempSync(join(tmpdir(), 'rs-validate-'));

  it('accepts the shipped runbook and config', () => {
    const r = spawnSync(
      'node',
      [cli, 'validate', builtinRunbookPath('failover'), join(__dirname, '..', 'regionshift.yaml')],
      { encoding: 'utf8' },
    );
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain('valid runbook');
    expect(r.stdout).toContain('valid service config');
    expect(r.status).toBe(0);
  });

  it('exits 2 and names the step and field of a malformed runbook', () => {
    const file = join(dir, 'failover.yaml');
    writeFileSync(
      file,
      readFileSync(builtinRunbookPath('failover'), 'utf8').replace(
        'action: db.promote',
        'action: db.promote\n    when: [tuesday]',
      ),
    );
    const r = spawnSync('node', [cli, 'validate', file], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`${file}:`);
    expect(r.stderr).toContain('(promote).when[0]');
  });

  it('exits 2 for a file that does not exist', () => {
    const r = spawnSync('node', [cli, 'validate', join(dir, 'nope.yaml')], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('nope.yaml: cannot read');
  });

  it('exits 2 for an unknown command, saying which one was likely meant', () => {
    const typo = spawnSync('node', [cli, 'failovr'], { encoding: 'utf8' });
    expect(typo.status).toBe(2);
    expect(typo.stderr.split('\n')[0]).toBe('regionshift: unknown command "failovr"; did you mean failover?');
    const unknown = spawnSync('node', [cli, 'xyzzy'], { encoding: 'utf8' });
    expect(unknown.stderr.split('\n')[0]).toBe('regionshift: unknown command "xyzzy"');
  });
});
