// `stack down`: stop exactly what `up` recorded, workers first (they use everything else).
// A recorded pid that now belongs to another process is left alone.
import { postmasterPid, stop, type PgNode } from '../lib/postgres/node';
import { stateDir } from '../lib/paths';
import { isAlive, stopProcess } from './process';
import { acquireLock, readState, writeState } from './state';

export interface Stopped {
  name: string;
  pid: number | null;
  outcome: 'stopped' | 'killed' | 'not running' | 'not ours' | 'failed';
  detail?: string;
}

export interface DownResult {
  stopped: Stopped[];
}

async function stopPostgres(name: string, node: PgNode, bin: string): Promise<Stopped> {
  const pid = postmasterPid(node);
  if (pid === undefined || !isAlive(pid)) return { name, pid: null, outcome: 'not running' };
  try {
    await stop(bin, node, 'fast');
    return { name, pid, outcome: 'stopped' };
  } catch (err) {
    return {
      name,
      pid,
      outcome: 'failed',
      detail: `${(err as Error).message}; stop it with: pg_ctl stop -D ${node.dataDir}`,
    };
  }
}

export async function stackDown(opts: { home?: string } = {}): Promise<DownResult> {
  const home = opts.home ?? stateDir();
  const release = acquireLock(home);
  try {
    const state = readState(home);
    const stopOne = async (name: string): Promise<Stopped> => {
      const rec = state.processes[name];
      if (!rec) return { name, pid: null, outcome: 'not running' };
      const outcome = await stopProcess(rec);
      // A record is dropped once its process is gone or is no longer ours; a failure keeps it.
      delete state.processes[name];
      const detail = outcome === 'not ours' ? `pid ${rec.pid} now belongs to another process; left alone` : undefined;
      return { name, pid: rec.pid, outcome, ...(detail ? { detail } : {}) };
    };
    const names = Object.keys(state.processes);
    const workers = names.filter((n) => n.startsWith('worker:'));
    const others = names.filter((n) => !n.startsWith('worker:'));
    const stopped: Stopped[] = [];
    stopped.push(...(await Promise.all(workers.map(stopOne))));
    stopped.push(...(await Promise.all(others.map(stopOne))));
    const pg = await Promise.all(
      Object.entries(state.postgres).map(async ([name, r]) => {
        const result = await stopPostgres(
          name,
          { region: r.region, dataDir: r.dataDir, host: r.host, port: r.port },
          r.bin,
        );
        if (result.outcome !== 'failed') delete state.postgres[name];
        return result;
      }),
    );
    stopped.push(...pg);
    writeState(state, home);
    return { stopped };
  } finally {
    release();
  }
}
