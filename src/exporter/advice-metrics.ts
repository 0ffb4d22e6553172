// The tuning model's headline on /metrics, so an alert can fire before the table
// fills: what the fullest netns needs (steady state plus the largest storm's
// growth or the configured what-if), the limit to set, and the headroom left.
import type { AdviceHeadline } from '../advisor/headline.js';
import type { Advice } from '../advisor/model.js';
import type { MonitorView } from '../monitor.js';
import type { Sample, ViewMetricSpec } from './view-metric.js';

/** A scrape never fails for the advice: without settings it has no samples. */
function guarded(headline: AdviceHeadline, pick: (a: Advice) => Sample[]): (v: MonitorView) => Sample[] {
  return (v) => {
    try {
      return pick(headline.of(v));
    } catch {
      return [];
    }
  };
}

export function adviceMetrics(headline: AdviceHeadline): ViewMetricSpec[] {
  const specs: ViewMetricSpec[] = [
    {
      name: 'ctstorm_advice_required_entries',
      help: 'Entries the fullest netns must hold: its steady state (Little\'s law, at least its census count) plus the larger of the largest storm\'s growth and the what-if (ctstorm advise).',
      type: 'gauge',
      samples: guarded(headline, (a) => [{ value: a.required }]),
    },
    {
      name: 'ctstorm_advice_recommended_max',
      help: 'nf_conntrack_max ctstorm advises: the required entries plus the configured headroom, never below the current limit.',
      type: 'gauge',
      samples: guarded(headline, (a) => [{ value: a.max.recommended }]),
    },
    {
      name: 'ctstorm_advice_headroom_ratio',
      help: '1 - required entries / nf_conntrack_max: the share of the limit left once the fullest netns holds what it needs (negative: it would overflow).',
      type: 'gauge',
      samples: guarded(headline, (a) => (a.max.current > 0 ? [{ value: a.max.headroomLeft }] : [])),
    },
  ];
  if (headline.whatIf) {
    specs.push({
      name: 'ctstorm_advice_what_if_entries',
      help: 'Entries the fullest netns would hold if the configured number of clients reconnected within the configured window (measured lifetimes).',
      type: 'gauge',
      samples: guarded(headline, (a) => (a.whatIf ? [{ value: a.whatIf.entries }] : [])),
    });
  }
  return specs;
}
