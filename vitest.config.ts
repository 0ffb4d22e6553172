import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    projects: [
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts'] } },
      {
        // Root, BPF and namespaces: one file at a time, generous timeouts (the
        // same suite runs inside QEMU without KVM).
        test: {
          name: 'live',
          include: ['test/live/**/*.test.ts'],
          fileParallelism: false,
          testTimeout: 300_000,
          hookTimeout: 120_000,
        },
      },
      {
        // The kernel's own netfilter selftests as traffic (root; this host only).
        test: {
          name: 'selftests',
          include: ['test/selftests/**/*.test.ts'],
          fileParallelism: false,
          testTimeout: 300_000,
          hookTimeout: 120_000,
        },
      },
      {
        // A real Prometheus scraping ctstorm serve (root; this host only).
        test: {
          name: 'prometheus',
          include: ['test/prometheus/**/*.test.ts'],
          fileParallelism: false,
          testTimeout: 300_000,
          hookTimeout: 120_000,
        },
      },
      {
        // The advisor against this host's kernel (root; too long to repeat in every guest).
        test: {
          name: 'host',
          include: ['test/host/**/*.test.ts'],
          fileParallelism: false,
          testTimeout: 300_000,
          hookTimeout: 120_000,
        },
      },
      {
        // The packed package, installed into a Debian root without a compiler, and
        // the container image made of it, run with podman (root; this host only).
        test: {
          name: 'package',
          include: ['test/package/**/*.test.ts'],
          fileParallelism: false,
          testTimeout: 300_000,
          hookTimeout: 900_000,
        },
      },
      {
        // Only inside the QEMU guest (test/vm/matrix.sh): changes global sysctls.
        test: {
          name: 'vm',
          include: ['test/vm/**/*.test.ts'],
          fileParallelism: false,
          testTimeout: 300_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
