/** Types for services.mjs: a real redis-server / PostgreSQL on a free 127.0.0.1 port. */
export interface RunningRedis {
  /** redis://127.0.0.1:<port> */
  url: string;
  port: number;
  /** pid of the redis-server process itself */
  pid: number;
  /** SIGTERM, wait for exit, remove the temp dir. */
  stop(): Promise<void>;
  /** SIGKILL at once (simulate a crash); call stop() afterwards to clean up. */
  kill(): void;
}

export interface RunningPostgres {
  /** postgres://legacy@127.0.0.1:<port>/legacy */
  url: string;
  port: number;
  /** pid of the postmaster */
  pid: number;
  /** Create an empty database (default name: unique) and return its URL. */
  newDatabase(name?: string): Promise<string>;
  /** SIGINT (fast shutdown), wait for exit, remove the temp dir. */
  stop(): Promise<void>;
  /** SIGKILL the postmaster at once; call stop() afterwards to clean up. */
  kill(): void;
}

/** True when env LEGACY_REQUIRE_SERVICES=1: a missing server is then an error, not a skip. */
export function servicesRequired(): boolean;
/** undefined (after a loud stderr banner) when redis-server is not installed and not required. */
export function startRedis(): Promise<RunningRedis | undefined>;
/** undefined (after a loud stderr banner) when PostgreSQL is not installed and not required. */
export function startPostgres(): Promise<RunningPostgres | undefined>;
/** Path of a python3 that has openpyxl; undefined (after a loud banner) when there is none and it is not required. */
export function openpyxlPython(): string | undefined;
/** Path of promtool; undefined (after a loud banner) when it is not installed and not required. */
export function promtool(): string | undefined;
