// Step parameters, plugin steps and per-service runbooks at load time (src/contract/runbook/schema.ts,
// src/contract/runbook/params.ts, src/lib/plugins.ts) and through `regionshift validate`: a wrong
// parameter is refused naming the file, the line and the field, before anything runs.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/lib/config/load';
import { loadPlugins } from '../src/lib/plugins';
import { builtinRunbookPath, loadRunbook, loadServiceRunbook } from '../src/lib/runbooks';

const ROOT = join(__dirname, '..');
const CLI = join(ROOT, 'bin', 'regionshift.js');
const EXAMPLE = join(ROOT, 'activities', 'plugins', 'example.ts');
const dir = mkdtempSync(join(tmpdir(), 'rs-step-params-'));

/** The shipped failover runbook with `extra` (YAML list items) inserted right before the fence. */
function failoverWith(name: string, extra: string): string {
  const file = join(dir, name);
  const text = readFileSync(builtinRunbookPath('failover'), 'utf8');
  writeFileSync(file, text.replace('  - id: fence\n', `${extra}\n  - id: fence\n`));
  return file;
}

/** The line of the file on which `needle` first appears, 1-based. */
function lineOf(file: string, needle: string): number {
  return (
    readFileSync(file, 'utf8')
      .split('\n')
      .findIndex((l) => l.includes(needle)) + 1
  );
}

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

const HOOK = `  - id: tell-app
    action: http.call
    placement: control
    params:
      url: "http://127.0.0.1:1/primary/{{service}}"
      body: { primary: "{{target}}", run: "{{runId}}" }
      bearerTokenEnv: APP_HOOK_TOKEN`;

describe('http.call parameters', () => {
  it('a valid step comes out with its defaults filled in, the secret only as a variable name', () => {
    const rb = loadRunbook(failoverWith('hook-ok.yaml', HOOK));
    const step = rb.steps.find((s) => s.id === 'tell-app')!;
    expect(step.placement).toBe('control');
    expect(step.params).toEqual({
      url: 'http://127.0.0.1:1/primary/{{service}}',
      method: 'POST',
      headers: {},
      headersFromEnv: {},
      bearerTokenEnv: 'APP_HOOK_TOKEN',
      body: { primary: '{{target}}', run: '{{runId}}' },
      timeout: '10s',
      retries: 2,
    });
  });

  it('a wrong parameter, an unknown template value and a credential in a header: each named with its line', () => {
    const file = failoverWith(
      'hook-bad.yaml',
      `  - id: tell-app
    action: http.call
    params:
      url: "http://app/{{primary}}"
      retries: many
      headers:
        Authorization: "Bearer s3cret"`,
    );
    const problems = problemsOf(() => loadRunbook(file));
    expect(problems).toContain(
      `${file}:${lineOf(file, 'retries: many')}: steps[2] (tell-app).params.retries: Invalid input: expected number, received string`,
    );
    expect(problems).toContainEqual(
      expect.stringMatching(
        new RegExp(
          `^${file}:${lineOf(file, 'url: "http://app')}: steps\\[2\\] \\(tell-app\\)\\.params\\.url: unknown template value \\{\\{primary\\}\\}`,
        ),
      ),
    );
    expect(problems).toContainEqual(
      expect.stringContaining(
        `${file}:${lineOf(file, 'Authorization:')}: steps[2] (tell-app).params.headers.Authorization: a credential does not belong in the runbook`,
      ),
    );
  });

  it('parameters on an action that takes none, and a placement on a catalog action, are refused', () => {
    const file = join(dir, 'promote-params.yaml');
    writeFileSync(
      file,
      readFileSync(builtinRunbookPath('failover'), 'utf8').replace(
        '    action: db.promote\n',
        '    action: db.promote\n    placement: source\n    params: { force: true }\n',
      ),
    );
    const problems = problemsOf(() => loadRunbook(file));
    expect(problems).toContain(
      `${file}:${lineOf(file, 'params: { force')}: steps[5] (promote).params: db.promote takes no parameters`,
    );
    expect(problems).toContainEqual(
      expect.stringContaining(
        `${file}:${lineOf(file, 'placement: source')}: steps[5] (promote).placement: only http.call and plugin steps take a placement`,
      ),
    );
  });
});

describe('plugin steps', () => {
  const PLUGIN_STEP = `  - id: app-primary
    action: custom.primary-env-file
    params:
      path: /tmp/app.env
      variable: primary-region`;

  it('the example plugin loads; its step is declared into the runbook for the run', async () => {
    const plugins = await loadPlugins([{ module: EXAMPLE }]);
    expect([...plugins.keys()]).toEqual(['custom.primary-env-file']);
    const rb = loadRunbook(
      failoverWith('plugin-ok.yaml', PLUGIN_STEP.replace('primary-region', 'BANKING_PRIMARY_REGION')),
      { plugins },
    );
    expect(rb.steps.find((s) => s.id === 'app-primary')!.params).toEqual({
      path: '/tmp/app.env',
      variable: 'BANKING_PRIMARY_REGION',
      value: 'target',
    });
    expect(rb.plugins).toEqual({
      'custom.primary-env-file': { placement: 'target', summary: expect.any(String), compensates: true },
    });
  });

  it('without the plugin, the step is refused naming what provides steps', () => {
    const file = failoverWith('plugin-none.yaml', PLUGIN_STEP);
    expect(problemsOf(() => loadRunbook(file))).toEqual([
      `${file}:${lineOf(file, 'custom.primary-env-file')}: steps[2] (app-primary).action: no plugin provides custom.primary-env-file; the config names no plugins (plugins: [{ module: … }], docs/plugins.md)`,
    ]);
  });

  it('regionshift validate refuses a wrong plugin parameter, naming the file, line and field (exit 2)', () => {
    const runbook = failoverWith('plugin-bad.yaml', PLUGIN_STEP);
    const config = join(dir, 'with-plugin.yaml');
    writeFileSync(
      config,
      `${readFileSync(join(ROOT, 'regionshift.yaml'), 'utf8')}\nplugins:\n  - module: ${EXAMPLE}\n`,
    );
    const r = spawnSync('node', [CLI, 'validate', runbook, '--config', config], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(
      `${runbook}:${lineOf(runbook, 'variable: primary-region')}: steps[2] (app-primary).params.variable: an environment variable name like PRIMARY_REGION`,
    );
    // The same runbook with the parameter fixed passes.
    writeFileSync(runbook, readFileSync(runbook, 'utf8').replace('primary-region', 'PRIMARY_REGION'));
    const ok = spawnSync('node', [CLI, 'validate', runbook, '--config', config], { encoding: 'utf8' });
    expect(ok.stderr).toBe('');
    expect(ok.status).toBe(0);
  });
});

describe('per-service runbooks', () => {
  it('a service points at its own failover runbook (relative to the config); validate checks it with the config', async () => {
    const own = failoverWith('ledger-failover.yaml', HOOK);
    const config = join(dir, 'own-runbooks.yaml');
    writeFileSync(
      config,
      // The shipped ledger names its own runbooks already: this one takes their place.
      readFileSync(join(ROOT, 'regionshift.yaml'), 'utf8').replace(
        /^    runbooks: \{[^\n]*\}\n/m,
        '    runbooks:\n      failover: ./ledger-failover.yaml\n',
      ),
    );
    const cfg = loadConfig(config);
    expect(cfg.services[0]!.runbooks).toEqual({ failover: own });
    const rb = await loadServiceRunbook(cfg, 'ledger', 'failover');
    expect(rb.file).toBe(own);
    expect(rb.steps.map((s) => s.id)).toContain('tell-app');
    // Another kind, and another service, keep the built-in runbooks.
    expect((await loadServiceRunbook(cfg, 'ledger', 'failback')).file).toBe(builtinRunbookPath('failback'));

    writeFileSync(own, readFileSync(own, 'utf8').replace('placement: control', 'placement: elsewhere'));
    const r = spawnSync('node', [CLI, 'validate', config], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`${own}:${lineOf(own, 'placement: elsewhere')}: steps[2] (tell-app).placement:`);
  });
});
