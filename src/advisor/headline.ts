// The advice for a live view, as the exporter serves it: the model run on the
// monitor's view with ctstorm's own netns settings (re-read at most every 10 s:
// a sysctl change shows within a scrape or two) and the entry cost read once.
import type { MonitorView } from '../monitor.js';
import { renderSnapshot } from '../snapshot.js';
import { measurementsOf } from './from-snapshot.js';
import { readEntryCost, type EntryCost } from './memory.js';
import { advise, type Advice, type AdviseOptions } from './model.js';
import { ownNetnsInode } from '../netns-live.js';
import { readOwnSettings, type ConntrackSettings } from './settings.js';

const SETTINGS_TTL_MS = 10_000;

export interface HeadlineOptions {
  headroom: number;
  whatIf?: AdviseOptions['whatIf'];
  /** For tests: settings and entry cost without /proc. */
  readSettings?: () => ConntrackSettings;
  entryCost?: EntryCost;
}

export class AdviceHeadline {
  private settings: { at: number; value: ConntrackSettings } | undefined;
  private cost: EntryCost | undefined;
  private last: { view: MonitorView; advice: Advice } | undefined;
  private readonly inode: number;

  constructor(private readonly o: HeadlineOptions) {
    this.inode = o.readSettings ? 0 : ownNetnsInode();
  }

  get whatIf(): AdviseOptions['whatIf'] {
    return this.o.whatIf;
  }

  /** The advice for this view (computed once per view however many metrics ask). */
  of(view: MonitorView): Advice {
    if (this.last?.view === view) return this.last.advice;
    const now = Date.now();
    if (!this.settings || now - this.settings.at > SETTINGS_TTL_MS) this.settings = { at: now, value: (this.o.readSettings ?? readOwnSettings)() };
    this.cost ??= this.o.entryCost ?? readEntryCost(this.settings.value);
    const m = measurementsOf(renderSnapshot(view, Math.max(1e-3, view.uptimeSeconds)));
    const advice = advise(m, this.settings.value, this.settings.value, this.cost, { headroom: this.o.headroom, whatIf: this.o.whatIf, targetInode: this.inode });
    this.last = { view, advice };
    return advice;
  }
}
