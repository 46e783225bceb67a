// The parts of `npm run bench -- --peers` that decide what is run and what is counted: the
// flags that name sections and tools, and the CPU/memory accounting of a tool's processes
// (run against real processes; the peers themselves only run in the bench).
import { spawn, type ChildProcess } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { chooseSections, nameList } from '../bench/options';
import { sampleUsage, toolPids } from '../bench/peers/procs';
import { readFileSync } from 'node:fs';
import { sleep } from '../src/stack/wait';
import { waitFor } from './support/wait';

/** utime + stime of these processes, from /proc (clock ticks of 10 ms, as Linux's USER_HZ is 100). */
function treeCpuMs(pids: number[]): number {
  return pids.reduce((sum, pid) => {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8')
      .replace(/^.*\) /s, '')
      .split(' ');
    return sum + (Number(fields[11]) + Number(fields[12])) * 10;
  }, 0);
}

const section = (name: string) => ({ name });

describe('bench flags', () => {
  it('take a list of known names, and refuse an unknown or empty one by name', () => {
    expect(nameList('patroni, repmgr', 'peer-tools', ['patroni', 'pg_auto_failover', 'repmgr'])).toEqual([
      'patroni',
      'repmgr',
    ]);
    expect(nameList(undefined, 'peer-tools', ['patroni'])).toBeUndefined();
    expect(() => nameList('patroni,stolon', 'peer-tools', ['patroni', 'repmgr'])).toThrow(
      '--peer-tools: no such name "stolon"; choose from patroni, repmgr',
    );
    expect(() => nameList(' , ', 'only', ['failover'])).toThrow('--only needs at least one of: failover');
  });

  it('leave the peers section off unless its own flag is given, even when --only names it', () => {
    const defaults = [section('failover'), section('intake')];
    const optional = [section('peers')];
    expect(chooseSections(defaults, optional, [], undefined).map((s) => s.name)).toEqual(['failover', 'intake']);
    expect(chooseSections(defaults, optional, ['peers'], undefined).map((s) => s.name)).toEqual([
      'failover',
      'intake',
      'peers',
    ]);
    expect(chooseSections(defaults, optional, ['peers'], ['peers']).map((s) => s.name)).toEqual(['peers']);
    expect(() => chooseSections(defaults, optional, [], ['peers'])).toThrow('--only peers needs --peers too');
  });
});

describe('tool process accounting', () => {
  let child: ChildProcess | undefined;
  afterEach(() => {
    if (child?.pid) process.kill(-child.pid, 'SIGKILL');
    child = undefined;
  });

  it('counts the CPU and memory of a tool and of the processes it started', async () => {
    // A shell (the "agent") with a busy child of its own: both are the tool's.
    child = spawn('sh', ['-c', 'sh -c "while :; do :; done" & wait'], { detached: true, stdio: 'ignore' });
    await sleep(200);
    const pids = toolPids([child.pid!]);
    expect(pids.length).toBeGreaterThanOrEqual(2);
    expect(pids[0]).toBe(child.pid);
    // The kernel's own count for the whole tree is the reference; how much CPU the loop gets
    // depends on the machine's load, so the window lasts until it has had a measurable share.
    const startMs = treeCpuMs(pids);
    const usage = sampleUsage(() => [child!.pid!], 50);
    await waitFor('the busy loop to use 300 ms of CPU', async () => treeCpuMs(pids) - startMs >= 300, 60_000, 50);
    const used = usage.stop();
    const reference = treeCpuMs(pids) - startMs;
    // Clock ticks are 10 ms, and the last sample and the reference read are a moment apart.
    expect(Math.abs(used.cpuMs - reference)).toBeLessThanOrEqual(Math.max(40, reference * 0.1));
    expect(used.peakRssMb).toBeGreaterThan(0);
  });

  it('charges nothing for a tool that is gone', () => {
    const used = sampleUsage(() => [2 ** 22 + 12345]).stop();
    expect(used).toEqual({ cpuMs: 0, peakRssMb: 0 });
  });
});
