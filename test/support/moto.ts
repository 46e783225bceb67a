// A throwaway moto server for integration tests: its own process on a free port, so test files
// never share AWS state with each other or with a running local stack (which uses stack.motoPort).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { TOOLS_DIR } from '../../src/lib/paths';
import { freePort } from './ports';

export interface MotoServer {
  /** Base URL to give the AWS SDK as `endpoint`. */
  url: string;
  port: number;
  /** Forget every resource (POST /moto-api/reset). */
  reset(): Promise<void>;
  stop(): Promise<void>;
}

export const MOTO_SERVER_BIN = join(TOOLS_DIR, 'venv', 'bin', 'moto_server');

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function startMoto(options: { bin?: string; timeoutMs?: number } = {}): Promise<MotoServer> {
  const bin = options.bin ?? MOTO_SERVER_BIN;
  if (!existsSync(bin))
    throw new Error(`moto_server not found at ${bin}; create the venv (.regionshift/venv) with moto[server] installed`);
  // The port is free when chosen but could be taken before moto binds it; then try another.
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOn(bin, await freePort(), options.timeoutMs ?? 30_000);
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

async function startOn(bin: string, port: number, timeoutMs: number): Promise<MotoServer> {
  const child = spawn(bin, ['-H', '127.0.0.1', '-p', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const keep = (chunk: Buffer) => {
    log = (log + chunk.toString()).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let exited: string | undefined;
  const exitedPromise = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = `exited with ${signal ?? `code ${code}`}`;
      resolve();
    });
    child.once('error', (err) => {
      exited = `failed to start: ${err.message}`;
      resolve();
    });
  });
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (exited) return;
    child.kill('SIGTERM');
    const killTimer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exitedPromise;
    clearTimeout(killTimer);
  };

  // moto 5.x answers GET /moto-api/ with its HTML dashboard (200) once the server is up.
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exited) throw new Error(`moto_server on port ${port} ${exited}:\n${log}`);
    try {
      const res = await fetch(`${url}/moto-api/`, { signal: AbortSignal.timeout(2_000) });
      await res.arrayBuffer();
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`moto_server on port ${port} did not answer GET /moto-api/ within ${timeoutMs} ms:\n${log}`);
    }
    await sleep(100);
  }

  return {
    url,
    port,
    async reset() {
      const res = await fetch(`${url}/moto-api/reset`, { method: 'POST' });
      if (!res.ok) throw new Error(`moto reset failed: HTTP ${res.status}`);
    },
    stop,
  };
}
