import { describe, expect, it } from 'vitest';
import { withBoolComparisons } from '../prometheus/promql.js';

describe('withBoolComparisons', () => {
  it('makes top-level comparisons bool and leaves matchers, strings and bool alone', () => {
    expect(withBoolComparisons('ctstorm_conntrack_fill_ratio > 0.8')).toBe('ctstorm_conntrack_fill_ratio > bool 0.8');
    expect(withBoolComparisons('ctstorm_up == 0 or up{job="ctstorm"} == 0')).toBe('ctstorm_up == bool 0 or up{job="ctstorm"} == bool 0');
    expect(withBoolComparisons('rate(x{stat=~"drop|early_drop",a!="b>c"}[5m]) >= 1')).toBe('rate(x{stat=~"drop|early_drop",a!="b>c"}[5m]) >= bool 1');
    expect(withBoolComparisons('a != bool 1')).toBe('a != bool 1');
    expect(withBoolComparisons('a<=1')).toBe('a<= bool 1');
  });
});
