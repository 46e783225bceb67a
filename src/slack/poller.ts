/**
 * A pass over Temporal repeated every interval, one at a time (a slow pass delays the next rather
 * than overlapping it); a failed pass is logged and the next one runs as usual.
 */
export abstract class Poller {
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = false;

  /** `what` names the job in the log line of a failed pass: "following runs". */
  constructor(
    private readonly what: string,
    private readonly log: (line: string) => void,
  ) {}

  abstract tick(): Promise<void>;

  start(intervalMs: number): void {
    const loop = async (): Promise<void> => {
      if (this.stopped) return;
      this.running = this.tick().catch((err) => this.log(`slack: ${this.what} failed: ${(err as Error).message}`));
      await this.running;
      if (!this.stopped) this.timer = setTimeout(() => void loop(), intervalMs);
    };
    void loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.running;
  }
}
