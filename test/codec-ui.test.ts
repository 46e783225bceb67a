// The Temporal UI as a person sees it, in headless Chromium: with the dev server's UI pointed at
// `regionshift codec-server`, a run's page shows its input and result decrypted; with a dev
// server whose UI has no codec endpoint, the same kind of run shows only the sealed payload.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureChromium } from '../src/stack/stack';
import { freePorts } from '../src/stack/net';
import { createTemporalEnv, paperConfig, type TemporalEnv } from './support/temporal-env';
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

const config = (address: string) => paperConfig(address, [{ name: 'ledger', regions: ['eu-west-1', 'eu-central-1'] }]);

/** Runs echo(secret) to completion; the run's history page in the UI. */
async function runPage(te: TemporalEnv, uiPort: number, secret: string): Promise<string> {
  const handle = await te.client.workflow.start('echo', { taskQueue: TASK_QUEUE, workflowId: `codec-ui-${Date.now()}`, args: [secret] });
  expect(await handle.result()).toBe(secret);
  return `http://127.0.0.1:${uiPort}/namespaces/default/workflows/${handle.workflowId}/${handle.firstExecutionRunId}/history`;
}

/** Chromium renders the single-page app; virtual time does not run on while requests are pending. */
function chrome(args: string[]): Promise<string> {
  const base = ['--headless', '--no-sandbox', '--disable-gpu', '--window-size=1400,1800', '--virtual-time-budget=20000'];
  return new Promise((ok, fail) => {
    execFile(chromium, [...base, ...args], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, timeout: 120_000 }, (err, stdout, stderr) => {
      if (err) fail(new Error(`chromium ${args.join(' ')} failed: ${err.message}\n${stderr.slice(-2000)}`));
      else ok(stdout);
    });
  });
}

async function look(url: string, name: string): Promise<string> {
  const shot = join(ARTIFACTS, `codec-ui-${process.pid}-${name}.png`);
  const [dom] = await Promise.all([chrome(['--dump-dom', url]), chrome([`--screenshot=${shot}`, url])]);
  console.log(`codec-ui: screenshot of ${url}: ${shot}`);
  return dom;
}

beforeAll(async () => {
  chromium = await ensureChromium({ onProgress: (line) => console.log(line) });
  mkdirSync(ARTIFACTS, { recursive: true });
  const [codec, ui, plainUi] = (await freePorts(3)) as [number, number, number];
  ports = { codec, ui, plainUi };
  // The real command, as the local stack runs it, allowing the UI's origin as the browser sends it.
  codecServer = spawn(process.execPath, [join(REPO, 'bin', 'regionshift.js'), 'codec-server', '--port', String(codec), '--origin', `http://127.0.0.1:${ui}`], {
    cwd: REPO, env: process.env, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  codecServer.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  codecServer.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  await waitFor('the codec server to be ready', async () => {
    if (codecServer.exitCode !== null) throw new Error(`codec-server exited: ${out}`);
    return out.includes('regionshift codec server ready');
  }, 60_000);
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
