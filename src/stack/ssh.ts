// ssh-keygen signs (CLI) and verifies (control workers) decisions (docs/approvals.md). It comes
// with Debian's openssh-client, installed here when missing, as PostgreSQL is.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { PrerequisiteError } from '../lib/postgres/node';
import { runStreaming } from './run';

const MISSING =
  'ssh-keygen is needed to sign and verify decisions: install openssh-client (apt-get install openssh-client)';

function hasSshKeygen(): boolean {
  // `-Y` signatures arrived in OpenSSH 8.1; an older one fails the first verification instead of here.
  return spawnSync('ssh-keygen', ['-Y', 'sign'], { encoding: 'utf8' }).error === undefined;
}

export async function ensureSshKeygen(opts: { onProgress?(line: string): void } = {}): Promise<void> {
  if (hasSshKeygen()) return;
  if (process.getuid?.() !== 0 || !existsSync('/usr/bin/apt-get')) throw new PrerequisiteError(MISSING);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const onLine = (line: string) => opts.onProgress?.(`  apt: ${line}`);
  opts.onProgress?.('ssh-keygen not found; installing openssh-client with apt-get…');
  try {
    await runStreaming('apt-get', ['update'], { env, onLine, idleNoticeMs: 15_000 });
    await runStreaming('apt-get', ['install', '-y', '--no-install-recommends', 'openssh-client'], {
      env,
      onLine,
      idleNoticeMs: 15_000,
    });
  } catch (err) {
    throw new PrerequisiteError(`${MISSING} (apt-get failed: ${(err as Error).message})`);
  }
  if (!hasSshKeygen()) throw new PrerequisiteError(MISSING);
}
