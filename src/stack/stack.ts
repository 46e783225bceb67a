// The local stack's public surface: `regionshift stack up | down | status`, and the tool
// lookups tests and the workflow test environment share.
export { stackUp, PortInUseError, type UpOptions, type UpResult } from './up';
export { stackDown, type DownResult, type Stopped } from './down';
export {
  stackStatus,
  temporalAddress,
  temporalUiUrl,
  STACK_HOST,
  type ComponentStatus,
  type Health,
  type StackContext,
  type StackStatus,
} from './status';
export { ensureTemporalCli, findTemporalCli, SEARCH_ATTRIBUTES, TEMPORAL_CLI_VERSION } from './temporal';
export { ensureMoto } from './moto';
export { ensurePgBin } from './postgres';
export { ensureSshKeygen } from './ssh';
export { ensureChromium, findChromium } from './chromium';
export { StackBusyError, stackFile, readState } from './state';
