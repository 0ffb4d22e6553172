// Writes ctstorm.json from dashboard.ts (npm run dashboard; compiled to build/deploy/deploy/grafana/).
import { writeFileSync } from 'node:fs';
import { dashboard } from './dashboard.js';

writeFileSync(new URL('../../../../deploy/grafana/ctstorm.json', import.meta.url), `${JSON.stringify(dashboard, null, 2)}\n`);
