// Headless Chromium, for the test that looks at the Temporal UI the way a person does (does the
// UI show decoded payloads through the codec server?). Debian's package, installed when missing.
import { existsSync } from 'node:fs';
import { PrerequisiteError } from '../lib/postgres/node';
import { runStreaming, which } from './run';

const MISSING_CHROMIUM =
  'Chromium not found (CHROMIUM_PATH, `chromium` or `chromium-browser` on PATH) and it cannot be installed here (needs root and apt-get): ' +
  'install it (`apt-get install chromium`) or set CHROMIUM_PATH';

export function findChromium(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const explicit = env.CHROMIUM_PATH;
  if (explicit) {
    if (!existsSync(explicit))
      throw new PrerequisiteError(`CHROMIUM_PATH=${explicit} does not exist; fix it or unset it`);
    return explicit;
  }
  return which('chromium', env) ?? which('chromium-browser', env);
}

/** The Chromium binary; installed with apt-get (as root) when the machine has none. */
export async function ensureChromium(opts: { onProgress?(line: string): void } = {}): Promise<string> {
  const found = findChromium();
  if (found) return found;
  if (process.getuid?.() !== 0 || !existsSync('/usr/bin/apt-get')) throw new PrerequisiteError(MISSING_CHROMIUM);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const onLine = (line: string) => opts.onProgress?.(`  apt: ${line}`);
  opts.onProgress?.('Chromium not found; installing it with apt-get (a few minutes)…');
  try {
    await runStreaming('apt-get', ['update'], { env, onLine, idleNoticeMs: 15_000 });
    await runStreaming('apt-get', ['install', '-y', '--no-install-recommends', 'chromium'], {
      env,
      onLine,
      idleNoticeMs: 15_000,
    });
  } catch (err) {
    throw new PrerequisiteError(`${MISSING_CHROMIUM} (apt-get failed: ${(err as Error).message})`);
  }
  const installed = findChromium();
  if (!installed) throw new PrerequisiteError(MISSING_CHROMIUM);
  return installed;
}
