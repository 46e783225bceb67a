// A lock file holding its owner's pid: taken with O_EXCL, and taken over when the pid it names is
// no longer a live node process (a crash must not leave the next start refusing for ever).
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { cmdline, isAlive } from './process';

export class LockBusyError extends Error {
  override name = 'LockBusyError';
}

/** Takes `file`; `busy(pid)` words the refusal when a live process holds it. Returns the release. */
export function pidLock(file: string, busy: (pid: number) => string): () => void {
  mkdirSync(dirname(file), { recursive: true });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx');
      writeFileSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number(readFileSync(file, 'utf8').trim());
      const live =
        Number.isInteger(holder) &&
        holder > 0 &&
        isAlive(holder) &&
        (cmdline(holder) ?? []).some((a) => a.includes('node'));
      if (live) throw new LockBusyError(busy(holder));
      rmSync(file, { force: true });
    }
  }
  throw new LockBusyError(`cannot take the lock ${file}; delete it if no regionshift process is using it`);
}
