/** An error the user can act on: what went wrong, and what to do about it. */
export class CtstormError extends Error {
  constructor(
    message: string,
    readonly fix: string,
    readonly code?: string,
  ) {
    super(message);
    this.name = 'CtstormError';
  }

  /** One line for a terminal: "problem; fix". */
  toLine(): string {
    return `${this.message}; ${this.fix}`;
  }
}

/** One line for any error: CtstormErrors say how to fix; others their message only. */
export function errorLine(err: unknown): string {
  if (err instanceof CtstormError) return err.toLine();
  if (err instanceof Error) return err.message.split('\n')[0] ?? 'unknown error';
  return String(err);
}
