// Free loopback ports for servers a test starts: the stack's own finder (src/lib/net.ts), so
// the tests, the bench and the stack agree on how a port is chosen.
export { freePort, freePorts } from '../../src/lib/net';
