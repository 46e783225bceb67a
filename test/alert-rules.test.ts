// The shipped alert rules under promtool's own rule tests (test/fixtures/alert-rules.promtool.yml):
// when each alert fires (not on the first failed probe), its labels (what the intake maps), and
// the last good probe it reports (what a run's RTO counts from). No servers: promtool evaluates
// the rules against synthetic series.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ensureMonitoringBins } from '../src/stack/monitoring/bins';
import { SHIPPED_RULES } from '../src/stack/monitoring/config';

describe('alert rules shipped in runbooks/alerts/', () => {
  it('are valid, and fire when, with what and saying what their promtool tests expect', async () => {
    const bins = await ensureMonitoringBins();
    const check = spawnSync(bins.promtool, ['check', 'rules', SHIPPED_RULES], { encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    expect(check.stdout).toContain('SUCCESS: 5 rules found');
    const run = spawnSync(bins.promtool, ['test', 'rules', join(__dirname, 'fixtures', 'alert-rules.promtool.yml')], {
      encoding: 'utf8',
    });
    expect(run.status, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toContain('SUCCESS');
  });
});
