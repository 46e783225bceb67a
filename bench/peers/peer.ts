// What the shared driver needs from each peer tool: a pair it set up on this machine, how to
// ask it for a planned switchover, how to crash its primary, and which processes are its own.
import type { Endpoint } from './pg';
import type { PeerPackages } from './install';

export interface PeerPair {
  /** The temp folder everything of this pair lives in (removed by stop). */
  dir: string;
  /** The two PostgreSQL nodes, as the writer and the probes reach them. */
  nodes: [Endpoint, Endpoint];
  /** Index of the node that is primary now (asked of the tool or of the servers). */
  primary(): Promise<number>;
  /** Issues the tool's planned switchover to `target`; resolves when the command returns. */
  switchover(target: number): Promise<void>;
  /** Crashes node `index`: its tool agent SIGKILLed and its server stopped -m immediate. */
  kill(index: number): Promise<void>;
  /**
   * Resolves once the tool watches both nodes again (agents up, nothing paused, a standby it
   * would promote): checked before every timed run, so no run starts while the tool is still
   * recovering from the last one. Not timed.
   */
  ready(): Promise<void>;
  /** Brings a killed node back under the tool, as the standby of the survivor (not timed). */
  recover(index: number): Promise<void>;
  /** Root pids of the tool's own processes (agents, DCS, monitor, sshd), for CPU and memory. */
  toolRoots(): number[];
  /** Stops everything this pair started and removes its folder; bounded in time. */
  stop(): Promise<void>;
}

export interface Peer {
  /** Key in the figures: peers.<name>. */
  name: string;
  /** Name and version as Debian ships it. */
  title: string;
  packages: PeerPackages;
  /** The settings chosen and why, from the tool's documentation: printed with the figures. */
  settings: string[];
  /** What "unplanned" means for this tool (who detects the failure). */
  detection: string;
  /** The command a person runs for the planned switchover (printed). */
  switchoverCommand: string;
  setUp(say: (line: string) => void): Promise<PeerPair>;
}
