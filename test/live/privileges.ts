// Live tests need root (BPF, namespaces). On a laptop without it they skip;
// under CI=true a skip would hide a failure, so they fail instead.
export function liveSkipReason(): string | undefined {
  if (process.getuid?.() === 0) return undefined;
  const why = 'live tests need root (BPF programs and network namespaces)';
  if (process.env.CI === 'true') throw new Error(`${why}, and CI=true does not allow skipping them`);
  return why;
}
