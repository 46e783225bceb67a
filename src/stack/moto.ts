// moto's server mode stands in for the AWS APIs (Route 53, RDS, CloudWatch) in the local
// stack. It lives in a project-local Python venv so nothing is installed system-wide.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { TOOLS_DIR } from '../lib/paths';
import { PrerequisiteError } from '../lib/postgres/node';
import { httpStatus } from '../lib/net';
import { runStreaming, which } from './run';

export const MOTO_VENV = join(TOOLS_DIR, 'venv');

export function motoServerPath(venv = MOTO_VENV): string {
  return join(venv, 'bin', 'moto_server');
}

/** moto_server from the project venv, creating the venv and installing moto[server] when missing. */
export async function ensureMoto(opts: { onProgress?(line: string): void; venv?: string } = {}): Promise<string> {
  const venv = opts.venv ?? MOTO_VENV;
  const server = motoServerPath(venv);
  if (existsSync(server)) return server;
  const python = which('python3');
  if (!python) {
    throw new PrerequisiteError(
      'python3 not found; moto (the local AWS API) needs it: install python3 and python3-venv',
    );
  }
  const progress = (line: string) => opts.onProgress?.(`  ${line}`);
  if (!existsSync(join(venv, 'bin', 'pip'))) {
    opts.onProgress?.(`creating a Python venv for moto in ${venv}…`);
    try {
      await runStreaming(python, ['-m', 'venv', venv], { onLine: progress });
    } catch (err) {
      throw new PrerequisiteError(
        `creating the venv ${venv} failed: ${(err as Error).message}; on Debian/Ubuntu install python3-venv, then retry`,
      );
    }
  }
  opts.onProgress?.(`installing moto[server] into ${venv} (about a minute the first time)…`);
  try {
    await runStreaming(join(venv, 'bin', 'pip'), ['install', '--disable-pip-version-check', 'moto[server]'], {
      idleNoticeMs: 15_000,
      onLine: (line) => {
        // pip is chatty: show what it fetches and the result, not every requirement line.
        if (/^(Collecting|ERROR|still running)/.test(line)) progress(line.replace(/ \(from .*\)$/, ''));
        else if (/^Successfully installed/.test(line)) progress(`installed ${/\bmoto-\S+/.exec(line)?.[0] ?? 'moto'}`);
      },
    });
  } catch (err) {
    throw new PrerequisiteError(`pip install 'moto[server]' into ${venv} failed: ${(err as Error).message}`);
  }
  if (!existsSync(server))
    throw new PrerequisiteError(`moto installed but ${server} is missing; delete ${venv} and retry`);
  return server;
}

export function motoArgv(server: string, host: string, port: number): string[] {
  return [server, '-H', host, '-p', String(port)];
}

export function motoUrl(host: string, port: number): string {
  return `http://${host}:${port}`;
}

/** moto's dashboard API answers 200 once the server handles requests. */
export async function motoHealthy(host: string, port: number): Promise<boolean> {
  return (await httpStatus(`${motoUrl(host, port)}/moto-api/`)) === 200;
}
