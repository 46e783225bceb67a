// The contract between runbook workflows and the region workers' activities. Inputs name a
// service and never carry credentials: each worker resolves connection details and secrets from
// its own config and environment (safety invariant 6). Results are the audit record's raw data.
//
// Every activity is idempotent: retried after a crash at any point it converges and says what
// it found ("already fenced", "already primary") instead of failing or acting twice.

export interface ServiceRef {
  service: string;
}

/** What the region's database node is right now, as seen from that region's worker. */
export interface DbNodeState {
  region: string;
  reachable: boolean;
  /** Why it could not be reached, when it could not. */
  error?: string;
  role?: 'primary' | 'standby';
  /** A primary made read-only by a regionshift fence. */
  fenced?: boolean;
  /** Timeline id of the node's current WAL. */
  timeline?: number;
  /** Primary: pg_current_wal_lsn(). Standby: pg_last_wal_replay_lsn(). */
  lsn?: string;
  /** Standby only: last WAL position received from the primary. */
  receivedLsn?: string;
  /** Standby only: whether its WAL receiver is streaming, and from where (host:port). */
  streamingFrom?: string;
  /** Standby only: commit time of the last replayed transaction (ISO). */
  lastReplayedCommitAt?: string;
  /** Standby only: when it last heard from its primary (ISO). */
  lastHeardFromPrimaryAt?: string;
}

export interface FenceResult {
  region: string;
  /** True when the node already was fenced (a retry, or a second run). */
  alreadyFenced: boolean;
  /** The application role was refused a write after the fence: the proof of one writer. */
  verified: boolean;
  /** WAL position after the fence: everything acknowledged before it is at or below this. */
  lsn: string;
  /** Application sessions terminated so no transaction opened before the fence can commit. */
  terminatedSessions: number;
}

export interface UnfenceResult {
  region: string;
  /** False when the node was not fenced (nothing to undo) or no longer a primary. */
  unfenced: boolean;
  detail: string;
}

export interface WaitForLagInput extends ServiceRef {
  /** The fenced source's final WAL position; the target must have replayed up to it. */
  sourceLsn: string;
  timeoutMs: number;
}

export interface LagResult {
  region: string;
  replayedLsn: string;
  /** Bytes of WAL the target had still to replay when the wait started. */
  initialLagBytes: number;
  waitedMs: number;
}

export interface PromoteResult {
  region: string;
  /** False when the node already was a primary: the retry converged. */
  promoted: boolean;
  alreadyPrimary: boolean;
  timeline: number;
  lsn: string;
  /** The replication state right before promotion (the run's RPO evidence). */
  before: DbNodeState;
}

export interface RejoinInput extends ServiceRef {
  /** The region that is now primary; this worker's node becomes its standby. */
  primaryRegion: string;
}

export interface RejoinResult {
  region: string;
  /** False when the node already streamed from the new primary. */
  rejoined: boolean;
  /** pg_rewind had to discard WAL the node wrote after the divergence point. */
  rewound: boolean;
  streamingFrom: string;
}

export interface VerifyWritesResult {
  region: string;
  /** A row was written as the application role and read back. */
  ok: boolean;
  latencyMs: number;
}

export interface TrafficRecord {
  /** Route 53 SetIdentifier: the region the record sends clients to. */
  region: string;
  target: string;
  weight?: number;
  failover?: 'PRIMARY' | 'SECONDARY';
  ttl: number;
}

export interface TrafficState {
  recordName: string;
  records: TrafficRecord[];
}

export interface ShiftInput extends ServiceRef {
  from: string;
  to: string;
}

export interface ShiftResult {
  /** The records exactly as they were: what compensation and failback restore. */
  before: TrafficState;
  after: TrafficState;
  changeId?: string;
  /** Clients may keep resolving to the old region for up to this long. */
  maxCachedSeconds: number;
  /** False when traffic already pointed at the target. */
  changed: boolean;
}

export interface RestoreInput extends ServiceRef {
  state: TrafficState;
}

/** Activities a region worker registers on its task queue `region.<name>`. */
export interface RegionActivities {
  dbDescribe(input: ServiceRef): Promise<DbNodeState>;
  dbFenceWrites(input: ServiceRef): Promise<FenceResult>;
  dbUnfenceWrites(input: ServiceRef): Promise<UnfenceResult>;
  dbWaitForLag(input: WaitForLagInput): Promise<LagResult>;
  dbPromote(input: ServiceRef): Promise<PromoteResult>;
  dbRejoinAsStandby(input: RejoinInput): Promise<RejoinResult>;
  dbVerifyWrites(input: ServiceRef): Promise<VerifyWritesResult>;
  trafficDescribe(input: ServiceRef): Promise<TrafficState>;
  trafficShift(input: ShiftInput): Promise<ShiftResult>;
  trafficRestore(input: RestoreInput): Promise<TrafficState>;
}
