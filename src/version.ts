// ctstorm's version, in one place (the CLI's --version, the exporter's build info).
export const VERSION = '0.1.0';
