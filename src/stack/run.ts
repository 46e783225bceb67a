// Running a slow setup command (go install, pip install, apt-get) with its output streamed
// line by line to a progress callback, so a first run does not look hung.
import { spawn, spawnSync } from 'node:child_process';

export interface StreamOptions {
  env?: NodeJS.ProcessEnv;
  onLine?: (line: string) => void;
  /** After this long without output, report `still running (Ns)` so silence never looks like a hang. */
  idleNoticeMs?: number;
}

export function runStreaming(cmd: string, args: string[], opts: StreamOptions = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const tail: string[] = [];
    const started = Date.now();
    let lastOutput = started;
    const idle = opts.idleNoticeMs
      ? setInterval(() => {
          if (Date.now() - lastOutput < (opts.idleNoticeMs ?? 0)) return;
          lastOutput = Date.now();
          opts.onLine?.(`still running (${Math.round((Date.now() - started) / 1000)}s)`);
        }, 1_000)
      : undefined;
    const onData = (buf: Buffer, partial: { text: string }) => {
      const lines = (partial.text + buf.toString('utf8')).split(/\r?\n/);
      partial.text = lines.pop() ?? '';
      lastOutput = Date.now();
      for (const line of lines) {
        if (line.trim() === '') continue;
        tail.push(line);
        if (tail.length > 5) tail.shift();
        opts.onLine?.(line);
      }
    };
    const out = { text: '' };
    const err = { text: '' };
    child.stdout.on('data', (b: Buffer) => onData(b, out));
    child.stderr.on('data', (b: Buffer) => onData(b, err));
    child.once('error', (e) => {
      clearInterval(idle);
      reject(new Error(`cannot run ${cmd}: ${e.message}`));
    });
    child.once('close', (code, signal) => {
      clearInterval(idle);
      if (code === 0) return resolve();
      const how = signal ? `was killed by ${signal}` : `exited with ${code}`;
      reject(new Error(`${cmd} ${args.join(' ')} ${how}${tail.length ? `: ${tail.join(' | ')}` : ''}`));
    });
  });
}

/** The absolute path of `name` on PATH, or undefined. */
export function which(name: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const r = spawnSync('sh', ['-c', `command -v "$0"`, name], { encoding: 'utf8', env });
  const found = r.stdout?.trim();
  return r.status === 0 && found && found.startsWith('/') ? found : undefined;
}
