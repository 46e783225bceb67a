// The smallest workflow there is: proves a round-trip through a real Temporal server.
export async function echo(s: string): Promise<string> {
  return s;
}
