import { ConfigError } from '../../src/lib/config/load';

/** The problems a config or runbook loader reports; fails the test if it accepts instead. */
export function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  throw new Error('expected a ConfigError, got none');
}
