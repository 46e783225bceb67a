// What a bench section is: a named piece of the bench that returns its figures (nested under
// its own keys, deep-merged with every other section's) and the checks a person reads.
import type { Client } from '@temporalio/client';
import type { Config, Service } from '../src/lib/config/schema';
import type { WriteLoad } from '../src/demo/load';
import type { BenchStack } from './temp-stack';
import type { Figures } from './stats';

export interface BenchOptions {
  /** Planned failovers (alternating direction). */
  runs: number;
  /** Unplanned failovers, each from a freshly built pair. */
  unplannedRuns: number;
  clients: number;
  /** Also reconcile in a 10,000,000-entry ledger (minutes to generate on 2 cores). */
  ledger10m?: boolean;
  /** Runs of each kind per peer tool (--peer-runs). */
  peerRuns?: number;
  /** Which peer tools (--peer-tools); all when absent. */
  peerTools?: string[];
  /** Print each planned run's history event by event (--timeline): where its overhead went. */
  timeline?: boolean;
}

export interface BenchContext {
  stack: BenchStack;
  config: Config;
  service: Service;
  client: Client;
  /** The write load running on the ledger for the whole bench. */
  load: WriteLoad;
  options: BenchOptions;
  say: (line: string) => void;
  /** Something the bench must stop even when interrupted (a peer's processes); run at teardown. */
  registerCleanup?: (stop: () => Promise<void>) => void;
}

export interface Check {
  /** Key path in the figures object: failover.planned.wallMs. */
  path: string;
  what: string;
  samples: number[];
  /** Upper bound the median must stay under; absent when no target is set. */
  targetMax?: number;
  /** Lower bound the median must reach (a speedup); absent when no such target is set. */
  targetMin?: number;
  /** What a sample counts: milliseconds (the default), a ratio (×, kept to two decimals) or things counted (a bare number). */
  unit?: 'ms' | '×' | 'count';
  /** The command that measures this figure again. */
  reproduce: string;
}

export interface SectionResult {
  figures: Figures;
  checks: Check[];
  /** How the figures were taken, in a line each (policy used, what was counted). */
  notes: string[];
  /** Runs that did not succeed: the figures are then incomplete. */
  failures: string[];
}

export interface BenchSection {
  name: string;
  run(ctx: BenchContext): Promise<SectionResult>;
}
