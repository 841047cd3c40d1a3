/**
 * The settings table (src/config/definitions.ts) and what is derived from it: every row resolved
 * with one precedence, every bad value refused with the name of what set it, config.json checked
 * by the rows' types, and the global options' flags, names and help taken from the rows.
 */
import { Option } from 'commander';
import { describe, expect, it } from 'vitest';
import { GLOBAL_OPTIONS } from '../../src/app/program.js';
import { FLAG_SETTINGS, SETTINGS, type SettingDefinition, type SettingName } from '../../src/config/definitions.js';
import { resolveSetting, resolveSettings } from '../../src/config/settings.js';
import { type ConfigFile, validateConfig } from '../../src/config/store.js';
import { ConfigError, UsageError } from '../../src/errors/index.js';
import { serverSessions } from '../../src/session/status.js';

const rows = Object.entries(SETTINGS) as Array<[SettingName, SettingDefinition]>;
const BASE = 'http://127.0.0.1:1';

/** Two distinct valid values of a row, as text (flag, variable) and as config values. */
function samples(name: SettingName, d: SettingDefinition): Array<{ text: string; value: unknown }> {
  const special: Partial<Record<SettingName, Array<{ text: string; value: unknown }>>> = {
    env: [
      { text: 'a', value: 'a' },
      { text: 'b', value: 'b' },
    ],
    baseUrl: [
      { text: 'http://127.0.0.1:2/', value: 'http://127.0.0.1:2' },
      { text: 'http://127.0.0.1:3', value: 'http://127.0.0.1:3' },
    ],
    sessionStore: [
      { text: 'redis://127.0.0.1:6379/1', value: 'redis://127.0.0.1:6379/1' },
      { text: 'redis://127.0.0.1:6379/2', value: 'redis://127.0.0.1:6379/2' },
    ],
    authentifyBody: [
      { text: '[{"u":"{user}","p":"{password}"}]', value: [{ u: '{user}', p: '{password}' }] },
      { text: '{"pw":"{password}"}', value: { pw: '{password}' } },
    ],
    logLevel: [
      { text: 'DEBUG', value: 'debug' },
      { text: 'warning', value: 'warn' },
    ],
    logFormat: [
      { text: 'json', value: 'json' },
      { text: 'text', value: 'text' },
    ],
    syncDb: [
      { text: '/tmp/a.sqlite', value: '/tmp/a.sqlite' },
      { text: 'postgres://127.0.0.1/x', value: 'postgres://127.0.0.1/x' },
    ],
    metricsFile: [
      { text: '/tmp/a.prom', value: '/tmp/a.prom' },
      { text: '/tmp/b.prom', value: '/tmp/b.prom' },
    ],
  };
  if (special[name]) return special[name]!;
  const expect = d.type.expect;
  if (expect.startsWith('a whole number')) {
    // Above the row's least value (`a whole number from 1000`).
    const least = Number(/from (\d+)/.exec(expect)?.[1] ?? 0);
    return [
      { text: String(least + 7), value: least + 7 },
      { text: ` ${least + 9} `, value: least + 9 },
    ];
  }
  if (expect === 'a number above 0')
    return [
      { text: '2.5', value: 2.5 },
      { text: '90', value: 90 },
    ];
  if (expect === '1 or 0')
    return [
      { text: 'off', value: false },
      { text: 'YES', value: true },
    ];
  return [
    { text: 'x1', value: 'x1' },
    { text: 'x2', value: 'x2' },
  ];
}

describe('the settings table', () => {
  it("each global option's attribute name is its row's key, and the options are the rows with a flag, in order", () => {
    for (const name of FLAG_SETTINGS) expect(new Option(SETTINGS[name].flag!).attributeName(), name).toBe(name);
    expect(GLOBAL_OPTIONS.map((o) => o.flags)).toEqual(FLAG_SETTINGS.map((n) => SETTINGS[n].flag));
    // The help names the variable and the default of each option that has them.
    const timeout = GLOBAL_OPTIONS.find((o) => o.flags.includes('--timeout'))!;
    expect(timeout.description).toBe('per-request timeout in ms (LEGACY_TIMEOUT; default 60000)');
    expect(GLOBAL_OPTIONS.find((o) => o.flags === '--no-breaker')!.description).toContain('(LEGACY_BREAKER=0)');
  });

  it('every row resolves with one precedence: flag > variable > environment entry > defaults > default', () => {
    let checked = 0;
    for (const [name, d] of rows) {
      if (d.type.expect === 'a switch') continue;
      const [a, b] = samples(name, d);
      const key = d.configKey ?? name;
      const envEntry: Record<string, unknown> = { baseUrl: BASE };
      const config: ConfigFile = { defaults: {}, environments: { e: envEntry as ConfigFile['environments'][string] } };
      const setAt = (object: Record<string, unknown>, value: unknown) => {
        const parts = key.split('.');
        let o = object;
        for (const p of parts.slice(0, -1)) {
          o[p] ??= {};
          o = o[p] as Record<string, unknown>;
        }
        o[parts[parts.length - 1]!] = value;
      };
      if (d.config === 'both') setAt(config.defaults as Record<string, unknown>, b!.value);
      if (d.config === 'both' || d.config === 'environment') setAt(envEntry, a!.value);
      if (d.config === 'top') (config as unknown as Record<string, unknown>)[key] = a!.value;
      if (d.config === 'top') config.environments = { a: { baseUrl: BASE }, b: { baseUrl: BASE } };
      expect(validateConfig(config), name).toEqual([]);
      const negated = d.flag?.includes('--no-');
      const opts = d.flag && !negated ? { [name]: b!.text } : negated ? { [name]: false } : {};
      const env = d.env ? { [d.env]: a!.text } : {};
      const at = (o: object, e: object) => resolveSetting(name, { opts: o, env: e as Record<string, string>, config, envName: 'e' });

      if (d.flag) expect(at(opts, env), name).toMatchObject({ source: 'flag', value: negated ? false : b!.value });
      if (d.env) expect(at({}, env), name).toEqual({ source: 'env', origin: d.env, value: a!.value });
      if (d.config === 'both' || d.config === 'environment') {
        expect(at({}, {}), name).toEqual({ source: 'config', origin: `environments.e.${key}`, value: a!.value });
        setAt(envEntry, undefined);
      }
      if (d.config === 'both') expect(at({}, {}), name).toEqual({ source: 'config', origin: `defaults.${key}`, value: b!.value });
      if (d.config === 'top') expect(at({}, {}), name).toEqual({ source: 'config', origin: key, value: a!.value });
      const none = resolveSetting(name, { opts: {}, env: {}, envName: 'e' });
      expect(none?.source ?? 'none', name).toBe(d.default === undefined ? 'none' : 'default');
      checked++;
    }
    expect(checked).toBeGreaterThan(30);
  });

  it('a bad value is refused naming what set it: a flag exits 64, a variable or the config 78', () => {
    let refused = 0;
    for (const [name, d] of rows) {
      const bad = d.type.fromText('§ not this §');
      if ('value' in bad) continue; // free text: any value is one
      if (d.env) {
        const run = () => resolveSetting(name, { opts: {}, env: { [d.env!]: '§ not this §' } });
        expect(run, name).toThrow(ConfigError);
        expect(run, name).toThrow(d.env);
        refused++;
      }
      if (d.flag?.includes('<')) {
        const run = () => resolveSetting(name, { opts: { [name]: '§ not this §' }, env: {} });
        expect(run, name).toThrow(UsageError);
        expect(run, name).toThrow(/--[\w-]+/.exec(d.flag)![0]);
      }
      if (d.config === 'both') {
        expect(validateConfig({ defaults: { [name]: {} }, environments: {} }), name).toEqual([expect.stringMatching(new RegExp(`^defaults\\.${name}\\b`))]);
      }
    }
    expect(refused).toBeGreaterThan(20);
    expect(validateConfig({ environments: { a: { baseUrl: BASE, timeout: 0 } } })).toEqual(['environments.a.timeout must be a whole number from 1, got 0']);
    expect(validateConfig({ environments: { a: { baseUrl: BASE, sync: { db: 'relative.sqlite' } } } })).toEqual([
      'environments.a.sync.db must be an absolute path or a postgres:// URL',
    ]);
    expect(validateConfig({ environments: { a: {} } })).toEqual(['environments.a.baseUrl is missing']);
  });

  it('the settings of a run: variables the commands used to read themselves, and the breaker', () => {
    const config: ConfigFile = { environments: { live: { baseUrl: BASE, breakerCoolDownMs: 9000, breakerMaxCoolDownMs: 10 } } };
    const s = resolveSettings({}, { LEGACY_TRANSCODE: 'no', LEGACY_WEBHOOK_BACKOFF_MS: '20', LEGACY_SYNC_DB: '/tmp/x.sqlite' }, config);
    expect([s.transcode, s.webhookBackoffMs, s.webhookSecret, s.syncDb]).toEqual([false, 20, undefined, { db: '/tmp/x.sqlite', what: 'LEGACY_SYNC_DB' }]);
    // The maximum cool-down is never below the cool-down.
    expect(s.breaker).toMatchObject({ enabled: true, coolDownMs: 9000, maxCoolDownMs: 9000 });
    expect(resolveSettings({}, {}, config).syncDb).toEqual({ db: undefined, what: 'environments.live.sync.db' });
    expect(() => resolveSettings({}, { LEGACY_WEBHOOK_BACKOFF_MS: 'soon' }, config)).toThrow(
      /LEGACY_WEBHOOK_BACKOFF_MS must be a whole number from 1, got 'soon'/,
    );
    expect(resolveSettings({}, { LEGACY_DEBUG: '0' }, config).debug).toBe(false);
  });

  it('a secret is never quoted in a message, and an empty flag value is a usage error, not "not given"', () => {
    // A password of the wrong type in the config: the message says what it must be, not what it is.
    const problems = validateConfig({ environments: { a: { baseUrl: BASE, password: 12345, username: 67890 } } });
    expect(problems.sort()).toEqual(['environments.a.password must be text', 'environments.a.username must be text, got 67890']);
    expect(() => resolveSetting('timeout', { opts: { timeout: '' }, env: { LEGACY_TIMEOUT: '5' } })).toThrow(UsageError);
    expect(() => resolveSetting('env', { opts: { env: '' }, env: {} })).toThrow(/--env/);
    // A counter commander starts at 0 is not given; -v is.
    expect(resolveSetting('verbose', { opts: { verbose: 0 }, env: {} })).toBeUndefined();
    expect(resolveSetting('verbose', { opts: { verbose: 2 }, env: {} })).toMatchObject({ source: 'flag', value: 2 });
  });

  it('origins say what set the log level and each part of the breaker', () => {
    const config: ConfigFile = { environments: { live: { baseUrl: BASE } }, defaults: { breakerWindowMs: 5000 } };
    const quiet = resolveSettings({ quiet: true }, { LEGACY_LOG_LEVEL: 'debug', LEGACY_BREAKER_FAILURES: '7' }, config);
    expect(quiet.origins).toMatchObject({
      logLevel: '--quiet',
      breakerFailures: 'LEGACY_BREAKER_FAILURES',
      breakerWindowMs: 'defaults.breakerWindowMs',
      breaker: 'default',
    });
    expect(resolveSettings({}, { LEGACY_LOG_LEVEL: 'debug' }, config).origins.logLevel).toBe('LEGACY_LOG_LEVEL');
    expect(resolveSettings({ verbose: 2 }, {}, config).origins.logLevel).toBe('-vv');
  });
});

describe("the server's session list", () => {
  it('items that are not objects are left out, not a crash', () => {
    const sessions = serverSessions({ sessionInfo: [null, 'x', [1], { sessionID: 'ABCDEF12', userName: 'u', lifeTime: 3600 }] }, undefined);
    expect(sessions).toHaveLength(1);
    expect(sessions[0]).toMatchObject({ masked: 'ABCD…', userName: 'u' });
  });
});
