// Installing a peer's Debian packages when its binaries are missing. The bench does this itself,
// as root, with apt-get (it says so before it starts): that is why --peers is off by default.
import { existsSync } from 'node:fs';
import { runStreaming } from '../../src/stack/run';

export interface PeerPackages {
  /** Files whose presence means the peer is installed. */
  binaries: string[];
  /** Debian packages that provide them. */
  packages: string[];
}

let updated = false;

/** Installs `want.packages` unless every file of `want.binaries` is already there. */
export async function ensurePackages(tool: string, want: PeerPackages, say: (line: string) => void): Promise<string> {
  const missing = want.binaries.filter((b) => !existsSync(b));
  if (missing.length === 0) return `${tool}: installed (${want.packages.join(', ')})`;
  if (process.getuid?.() !== 0 || !existsSync('/usr/bin/apt-get')) {
    throw new Error(
      `${tool} is not installed (missing ${missing.join(', ')}) and this is not root on Debian: install ${want.packages.join(' ')} and run again`,
    );
  }
  say(
    `  ${tool}: missing ${missing.join(', ')}; installing ${want.packages.join(' ')} with apt-get, as root, from the bench…`,
  );
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const onLine = (line: string) => {
    if (/^(Setting up|Unpacking|E:)/.test(line)) say(`    apt: ${line}`);
  };
  if (!updated) {
    await runStreaming('apt-get', ['update'], { env, onLine, idleNoticeMs: 15_000 });
    updated = true;
  }
  await runStreaming('apt-get', ['install', '-y', '--no-install-recommends', ...want.packages], {
    env,
    onLine,
    idleNoticeMs: 15_000,
  });
  const still = want.binaries.filter((b) => !existsSync(b));
  if (still.length)
    throw new Error(`${tool}: apt-get installed ${want.packages.join(', ')} but ${still.join(', ')} is still missing`);
  return `${tool}: installed now by the bench with apt-get (${want.packages.join(', ')})`;
}
