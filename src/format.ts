// Numbers as people read them in ctstorm's text output.

/** A whole number with thousands separators: 262,144. */
export const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
