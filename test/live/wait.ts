// The one bounded wait the tests use: poll a condition, fail with what was awaited.

/** Polls until check() is true or the deadline passes; bounded. */
export async function until(check: () => boolean, ms: number, what: string, state?: () => string): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}${state ? ` (${state()})` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
