// The side-by-side table the peers section prints: medians per tool, regionshift's from the
// runs it alternated with that tool, and the ratio regionshift / peer.
import { spread } from '../stats';
import type { Sample } from './measure';

export interface Series {
  planned: Sample[];
  unplanned: Sample[];
}

export function median(values: Array<number | undefined>): number | undefined {
  const known = values.filter((v): v is number => v !== undefined && Number.isFinite(v));
  return known.length ? spread(known).median : undefined;
}

export interface Medians {
  plannedMs?: number;
  plannedStandbyMs?: number;
  unplannedMs?: number;
  lostWrites: number;
  ackedWrites: number;
  plannedCpuMs?: number;
  unplannedCpuMs?: number;
  peakRssMb?: number;
  plannedRuns: number;
  unplannedRuns: number;
}

export function medians(s: Series): Medians {
  const all = [...s.planned, ...s.unplanned];
  const peak = all.length ? Math.max(...all.map((x) => x.peakRssMb)) : undefined;
  return {
    plannedMs: median(s.planned.map((x) => x.ms)),
    plannedStandbyMs: median(s.planned.map((x) => x.standbyMs)),
    unplannedMs: median(s.unplanned.map((x) => x.ms)),
    lostWrites: s.planned.reduce((n, x) => n + (x.lostWrites ?? 0), 0),
    ackedWrites: s.planned.reduce((n, x) => n + (x.ackedWrites ?? 0), 0),
    plannedCpuMs: median(s.planned.map((x) => x.cpuMs)),
    unplannedCpuMs: median(s.unplanned.map((x) => x.cpuMs)),
    ...(peak !== undefined ? { peakRssMb: peak } : {}),
    plannedRuns: s.planned.length,
    unplannedRuns: s.unplanned.length,
  };
}

export function ratio(a: number | undefined, b: number | undefined): number | undefined {
  return a === undefined || b === undefined || b === 0 ? undefined : Math.round((a / b) * 100) / 100;
}

const COLUMNS = [
  '',
  'planned → write',
  'planned → standby',
  'lost/acked',
  'unplanned → write',
  'CPU planned',
  'CPU unplanned',
  'peak RSS',
];

const ms = (v: number | undefined) => (v === undefined ? '—' : `${v} ms`);
const x = (v: number | undefined) => (v === undefined ? '—' : `${v}×`);

export function tableRows(tool: string, rs: Medians, peer: Medians): string[][] {
  const row = (name: string, m: Medians) => [
    name,
    ms(m.plannedMs),
    ms(m.plannedStandbyMs),
    `${m.lostWrites}/${m.ackedWrites}`,
    ms(m.unplannedMs),
    ms(m.plannedCpuMs),
    ms(m.unplannedCpuMs),
    m.peakRssMb === undefined ? '—' : `${m.peakRssMb} MB`,
  ];
  return [
    row(`regionshift (alongside ${tool})`, rs),
    row(tool, peer),
    [
      `ratio regionshift / ${tool}`,
      x(ratio(rs.plannedMs, peer.plannedMs)),
      x(ratio(rs.plannedStandbyMs, peer.plannedStandbyMs)),
      '',
      x(ratio(rs.unplannedMs, peer.unplannedMs)),
      x(ratio(rs.plannedCpuMs, peer.plannedCpuMs)),
      x(ratio(rs.unplannedCpuMs, peer.unplannedCpuMs)),
      x(ratio(rs.peakRssMb, peer.peakRssMb)),
    ],
  ];
}

/** Rows as a Markdown table (it reads the same in a terminal and in the README). */
export function renderTable(rows: string[][]): string[] {
  const widths = COLUMNS.map((c, i) => Math.max(c.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(COLUMNS), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)];
}
