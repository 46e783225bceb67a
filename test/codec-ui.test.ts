// The Temporal UI as a person sees it, in headless Chromium: with the dev server's UI pointed at
// `regionshift codec-server`, a run's page shows its input and result decrypted; with a dev
// server whose UI has no codec endpoint, the same kind of run shows only the sealed payload. And a
// finished failover (the real runbook on stub region workers) as a person reads its page: the
// summary, the steps, the step table of its current details (the pane's /render page), the search
// attributes. Screenshots and DOMs go to <tmpdir>/regionshift-artifacts.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureChromium } from '../src/stack/stack';
import { freePorts } from '../src/lib/net';
import { createTemporalEnv, paperConfig, type TemporalEnv } from './support/temporal-env';
import { runStubRegions, StubFleet } from './support/stub-activities';
import { awaitRecord, buildRunInput, startRun } from '../src/lib/runs/client';
import { builtinRunbookPath, loadRunbook } from '../src/lib/runbooks';
import { REPO } from './support/stack-env';
import { waitFor } from './support/wait';

process.env.REGIONSHIFT_CODEC_KEYS = `ui:${randomBytes(32).toString('base64')}`;
process.env.REGIONSHIFT_CODEC_KEY_ID = 'ui';

const ECHO = join(__dirname, 'support', 'echo-workflow.ts');
const TASK_QUEUE = 'codec-ui-echo';
const ARTIFACTS = join(tmpdir(), 'regionshift-artifacts');

let chromium: string;
let codecServer: ChildProcess;
let codecUrl: string;
let withCodec: TemporalEnv;
let withoutCodec: TemporalEnv;
let ports: { codec: number; ui: number; plainUi: number };

const config = (address: string) =>
  paperConfig(address, [
    {
      name: 'ledger',
      regions: ['eu-west-1', 'eu-central-1'],
      policy: { approval: { planned: 'none', unplanned: 'none' } },
    },
  ]);

/** Runs echo(secret) to completion; the run's history page in the UI. */
async function runPage(te: TemporalEnv, uiPort: number, secret: string): Promise<string> {
  const handle = await te.client.workflow.start('echo', {
    taskQueue: TASK_QUEUE,
    workflowId: `codec-ui-${Date.now()}`,
    args: [secret],
  });
  expect(await handle.result()).toBe(secret);
  return `http://127.0.0.1:${uiPort}/namespaces/default/workflows/${handle.workflowId}/${handle.firstExecutionRunId}/history`;
}

/** Chromium renders the single-page app; virtual time does not run on while requests are pending. */
function chrome(args: string[]): Promise<string> {
  const base = [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    ...(args.some((a) => a.startsWith('--window-size=')) ? [] : ['--window-size=1400,1800']),
    '--virtual-time-budget=20000',
  ];
  return new Promise((ok, fail) => {
    execFile(
      chromium,
      [...base, ...args],
      { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, timeout: 120_000 },
      (err, stdout, stderr) => {
        if (err) fail(new Error(`chromium ${args.join(' ')} failed: ${err.message}\n${stderr.slice(-2000)}`));
        else ok(stdout);
      },
    );
  });
}

/** The page's DOM and a screenshot of it, both kept as test artifacts. */
async function look(url: string, name: string): Promise<string> {
  const shot = join(ARTIFACTS, `codec-ui-${process.pid}-${name}.png`);
  const [dom] = await Promise.all([chrome(['--dump-dom', url]), chrome([`--screenshot=${shot}`, url])]);
  writeFileSync(join(ARTIFACTS, `codec-ui-${process.pid}-${name}.html`), dom);
  console.log(`codec-ui: screenshot of ${url}: ${shot}`);
  return dom;
}

/** What a person reads: the rendered text, tags and scripts gone, one item a line. */
function readable(dom: string): string {
  return dom
    .replace(/<script[\s\S]*?<\/script>|<style[\s\S]*?<\/style>/g, '')
    .replace(/<[^>]+>/g, '\n')
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .join('\n');
}

beforeAll(async () => {
  chromium = await ensureChromium({ onProgress: (line) => console.log(line) });
  mkdirSync(ARTIFACTS, { recursive: true });
  const [codec, ui, plainUi] = (await freePorts(3)) as [number, number, number];
  ports = { codec, ui, plainUi };
  // The real command, as the local stack runs it, allowing the UI's origin as the browser sends it.
  codecServer = spawn(
    process.execPath,
    [
      join(REPO, 'bin', 'regionshift.js'),
      'codec-server',
      '--port',
      String(codec),
      '--origin',
      `http://127.0.0.1:${ui}`,
    ],
    {
      cwd: REPO,
      env: process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  codecServer.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  codecServer.stderr!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  await waitFor(
    'the codec server to be ready',
    async () => {
      if (codecServer.exitCode !== null) throw new Error(`codec-server exited: ${out}`);
      return out.includes('regionshift codec server ready');
    },
    60_000,
  );
  codecUrl = `http://127.0.0.1:${codec}`;
  withCodec = await createTemporalEnv(config, { ui: { port: ui, codecEndpoint: codecUrl } });
  await withCodec.startWorker({ taskQueue: TASK_QUEUE, workflowsPath: ECHO });
  withoutCodec = await createTemporalEnv(config, { ui: { port: plainUi } });
  await withoutCodec.startWorker({ taskQueue: TASK_QUEUE, workflowsPath: ECHO });
}, 600_000);

afterAll(async () => {
  codecServer?.kill('SIGTERM');
  await Promise.allSettled([withCodec?.teardown(), withoutCodec?.teardown()]);
});

describe('the Temporal UI', () => {
  it('shows the decrypted input and result when its codec endpoint is the codec server', async () => {
    const secret = `acct-eu-${randomBytes(5).toString('hex')}`;
    const dom = await look(await runPage(withCodec, ports.ui, secret), 'decoded');
    // Input, result, and the completion event's detail.
    expect(dom.split(`"${secret}"`).length - 1).toBeGreaterThanOrEqual(2);
    expect(dom).not.toContain('encryption-key-id');
  });

  it('shows only the sealed payload (encoding and key id, base64 ciphertext) without one', async () => {
    const secret = `acct-eu-${randomBytes(5).toString('hex')}`;
    const dom = await look(await runPage(withoutCodec, ports.plainUi, secret), 'encoded');
    expect(dom).not.toContain(secret);
    expect(dom).toContain(`"${Buffer.from('binary/encrypted').toString('base64')}"`);
    expect(dom).toContain('encryption-key-id');
  });
});

describe('a finished failover in the Temporal UI', () => {
  it('shows its summary, its steps by title (completed), the step table in its current details, and its search attributes', async () => {
    // The runbook's steps on stub region workers: the run is real, its databases are not.
    const stop = await runStubRegions(withCodec.connection, new StubFleet('ledger', 'eu-west-1', 'eu-central-1'));
    try {
      const input = buildRunInput(withCodec.config, loadRunbook(builtinRunbookPath('failover')), {
        service: 'ledger',
        target: 'eu-central-1',
        mode: 'planned',
        dryRun: false,
        requestedBy: 'carol',
        trigger: 'cli',
      });
      const run = await startRun(withCodec.client, input);
      const rec = await awaitRecord(withCodec.client, run.workflowId, run.runId);
      expect(rec.status).toBe('succeeded');
      const page = `http://127.0.0.1:${ports.ui}/namespaces/default/workflows/${run.workflowId}/${run.runId}`;
      // Its search attributes, the ones a person filters runs by.
      const attrs = readable(await look(`${page}/search-attributes`, 'run-search-attributes'))
        .replace(/\n:\n/g, ': ')
        .replace(/\n,/g, ',');
      for (const [key, value] of [
        ['RegionshiftService', 'ledger'],
        ['RegionshiftSource', 'eu-west-1'],
        ['RegionshiftTarget', 'eu-central-1'],
        ['RegionshiftMode', 'planned'],
        ['RegionshiftTrigger', 'cli'],
      ]) {
        expect(attrs, key).toContain(`"${key}": "${value}"`);
      }
      // User metadata: each step by its title, completed, and the run's current details.
      const metaDom = await look(`${page}/user-metadata`, 'run-user-metadata');
      const meta = readable(metaDom);
      for (const title of [
        'Fence writes in the source region',
        'Promote the target to primary',
        'Shift traffic to the target region',
        'Write and read back through the new primary',
      ]) {
        expect(meta).toContain(`${title}\nCompleted`);
      }
      expect(meta).toContain('Current Details');
      // Summary, details and current details are iframes of the UI's /render page, rendered by the
      // server with no script: their HTML is what the panes show.
      const frames = [...metaDom.matchAll(/<iframe title="output"[^>]* src="(\/render\?[^"]+)"/g)].map(
        (m) => `http://127.0.0.1:${ports.ui}${m[1]!.replace(/&amp;/g, '&')}`,
      );
      const shown = await Promise.all(
        frames.map(async (url) => ({ url, html: await fetch(url).then((r) => r.text()) })),
      );
      // The summary: what ran, where to, in which mode, at whose request.
      expect(shown.map((f) => readable(f.html.replace(/[\s\S]*<main>|<\/main>[\s\S]*/g, '')))).toContain(
        'failover ledger → eu-central-1 (planned), by carol',
      );
      const details = shown.find((f) => f.html.includes('<table>'));
      expect(details, 'the current details pane with the step table').toBeDefined();
      const [renderUrl, detailsDom] = [details!.url, details!.html];
      // At about the pane's width, for people to look at.
      const shot = join(ARTIFACTS, `codec-ui-${process.pid}-run-details.png`);
      await chrome(['--window-size=660,700', `--screenshot=${shot}`, renderUrl]);
      writeFileSync(join(ARTIFACTS, `codec-ui-${process.pid}-run-details.html`), detailsDom);
      console.log(`codec-ui: screenshot of the run's current details: ${shot}`);
      const rows = [...detailsDom.matchAll(/<tr>([\s\S]*?)<\/tr>/g)].map((m) =>
        [...m[1]!.matchAll(/<t[dh]>([\s\S]*?)<\/t[dh]>/g)].map((c) => c[1]!.replace(/<[^>]+>/g, '').trim()),
      );
      expect(readable(detailsDom)).toContain('failover ledger\neu-west-1 → eu-central-1 (planned): succeeded');
      expect(rows[0]).toEqual(['step', 'region', 'status', 'detail']);
      const row = (id: string) => rows.find((r) => r[0] === id);
      expect(rows.slice(1).map((r) => r[0])).toEqual(rec.steps.map((s) => s.id));
      expect(row('preflight')).toEqual([
        'preflight',
        '',
        'done',
        'writer eu-west-1, target eu-central-1 standby streaming',
      ]);
      expect(row('fence')?.slice(0, 3)).toEqual(['fence', 'eu-west-1', 'done']);
      expect(row('promote')).toEqual([
        'promote',
        'eu-central-1',
        'done',
        rec.steps.find((s) => s.id === 'promote')!.detail,
      ]);
      expect(row('repoint-standbys')).toEqual(['repoint-standbys', '', 'skipped', 'condition not met: other-standbys']);
      // Kept whole in the narrow pane: a step id or region broken at its hyphen reads as two words.
      expect(detailsDom).toContain('<nobr>eu-central-1</nobr>');
      expect(detailsDom).toContain('<nobr>repoint-standbys</nobr>');
    } finally {
      await stop();
    }
  }, 240_000);
});
