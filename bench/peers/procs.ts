// CPU and memory of a tool's own processes, from /proc: every process under the tool's roots
// except PostgreSQL's own programs (the server and the pg_* tools a failover runs), so what
// is counted is the orchestrator's cost, not the database's.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { basename } from 'node:path';

/** Programs of PostgreSQL itself: a tool that runs them is not charged for them. */
const POSTGRES_PROGRAMS = new Set([
  'postgres',
  'pg_ctl',
  'pg_rewind',
  'pg_basebackup',
  'initdb',
  'psql',
  'pg_controldata',
  'pg_isready',
]);

const TICK_MS = 10; // USER_HZ is 100 on Linux: utime and stime are in 1/100 s

interface Stat {
  ppid: number;
  /** utime + stime of the process itself, in ms. */
  cpuMs: number;
}

function stat(pid: number): Stat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(f[1]), cpuMs: (Number(f[11]) + Number(f[12])) * TICK_MS };
  } catch {
    return undefined;
  }
}

function rssKb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

function isPostgresProgram(pid: number): boolean {
  try {
    return POSTGRES_PROGRAMS.has(basename(readlinkSync(`/proc/${pid}/exe`)));
  } catch {
    return false;
  }
}

/** `roots` and all their descendants, minus PostgreSQL's programs. */
export function toolPids(roots: number[]): number[] {
  const children = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const s = stat(Number(d));
    if (!s) continue;
    const list = children.get(s.ppid) ?? [];
    list.push(Number(d));
    children.set(s.ppid, list);
  }
  const out: number[] = [];
  const seen = new Set<number>();
  const walk = (pid: number) => {
    if (seen.has(pid)) return;
    seen.add(pid);
    if (!isPostgresProgram(pid) && stat(pid)) out.push(pid);
    for (const c of children.get(pid) ?? []) walk(c);
  };
  for (const r of roots) walk(r);
  return out;
}

export interface Usage {
  /** CPU the tool's processes used in the window (user + system), ms. */
  cpuMs: number;
  /** Highest sum of the tool's resident set sizes seen in the window, MB. */
  peakRssMb: number;
}

/**
 * Samples the processes `roots()` names every `intervalMs` until stop(). A process first seen
 * mid-window counts from zero (it was born in it); one that exits between samples keeps what
 * it had at its last sample. Processes shorter than one interval are missed. Children a tool
 * reaped (cutime) are not counted: those are mostly PostgreSQL's (a restarted server, pg_ctl).
 */
export function sampleUsage(roots: () => number[], intervalMs = 100): { stop(): Usage } {
  const first = new Map<number, number>();
  const last = new Map<number, number>();
  let peakKb = 0;
  let initial = true;
  const tick = () => {
    let kb = 0;
    for (const pid of toolPids(roots())) {
      const s = stat(pid);
      if (!s) continue;
      if (!first.has(pid)) first.set(pid, initial ? s.cpuMs : 0);
      last.set(pid, s.cpuMs);
      kb += rssKb(pid);
    }
    initial = false;
    peakKb = Math.max(peakKb, kb);
  };
  tick();
  const timer = setInterval(tick, intervalMs);
  return {
    stop() {
      clearInterval(timer);
      tick();
      let cpu = 0;
      for (const [pid, end] of last) cpu += end - (first.get(pid) ?? 0);
      return { cpuMs: Math.round(cpu), peakRssMb: Math.round(peakKb / 102.4) / 10 };
    },
  };
}
