/**
 * 4D error stacks: `{"__ERROR":[{"message","componentSignature":"dbmg","errCode"}]}`, root cause first.
 * Clients must match on errCode and HTTP status, never on the message text.
 */

export interface FourDError {
  message: string;
  componentSignature: string;
  errCode: number;
}

export const fourD = (errCode: number, message: string): FourDError => ({ message, componentSignature: 'dbmg', errCode });

/** A request-level failure: HTTP status + error stack (+ extra headers). */
export class RestError extends Error {
  constructor(
    readonly status: number,
    readonly errors: FourDError[],
    readonly headers: Record<string, string> = {},
  ) {
    super(errors.map((e) => `${e.errCode} ${e.message}`).join('; '));
  }
}

/** The ORDA permission actions the emulator checks (roles.json: read, create, update, drop; execute for functions). */
export type PermissionAction = 'read' | 'update' | 'create' | 'delete';

/**
 * dbmg permission errors, codes and texts from the DB4D xlf (StephaneH/core-Components
 * DB4D/Resources/en.lproj/DB4DEN.xlf, ERR_dbmg_1557..1561, 1611; "datastore class" reworded "dataclass" as 4D
 * v18+ does). The 2014 source answers every permission error with rest::http_perm_error = 401 (DB4D/Sources/Web.h,
 * Rest.cpp: `if (fContext->PermErrorHappened()) SetHTTPError(rest::http_perm_error)`), and REST_requests.md lists
 * "401 Unauthorized: Permissions error"; `refusalStatus` offers 403 too.
 */
const PERMISSION_CODES: Record<PermissionAction, number> = { read: 1557, update: 1558, create: 1559, delete: 1560 };

export const E = {
  /** A privilege error on a dataclass (force-login guest, `readOnlyTables`): one stack entry per refused action. */
  noPermission: (status: number, dataClass: string, actions: PermissionAction[]) =>
    new RestError(
      status,
      actions.map((a) => fourD(PERMISSION_CODES[a], `No permission to ${a} for the ${dataClass} dataclass`)),
    ),
  /** `$info` refused (password system on, not an Admin user: `REST/$info.md`; source: VE_DB4D_GETINFO_PERM). */
  infoRefused: (status: number) => new RestError(status, [fourD(1611, 'You must log into the Admin group to obtain information regarding your project.')]),
  /** Any other request of a force-login guest session (`$directory/*`, other functions): "execute" refused. */
  noPermissionToExecute: (status: number, what: string) =>
    new RestError(status, [fourD(1561, `No permission to execute ${what}: this guest session has no privileges (force login)`)]),
  /** A documented REST keyword the emulator does not implement: 400 with 1811 rather than an ordinary page. */
  notImplemented: (keyword: string) => new RestError(400, [fourD(1811, `"${keyword}" is a REST keyword this server does not support`)]),
  loginFailed: () => new RestError(401, [fourD(1822, 'REST login failed')], { 'WWW-Authenticate': '', '4D-CREDENTIALS': '1.0' }),
  maxSessions: () => new RestError(402, [fourD(1823, 'Maximum number of sessions has been reached')], { '4D-CREDENTIALS': '1.0' }),
  dataClassNotFound: (name: string) => new RestError(404, [fourD(1800, `The "${name}" dataclass cannot be found`)]),
  entitySetNotFound: (id: string) => new RestError(404, [fourD(1802, `The "${id}" entity set cannot be found`)]),
  entitySetOtherClass: (id: string, dc: string) => new RestError(404, [fourD(1803, `The "${id}" entity set does not belong to the "${dc}" dataclass`)]),
  entityNotFound: (key: string, dc: string) => new RestError(404, [fourD(1543, `Cannot load entity# ${key} in the "${dc}" dataclass`)]),
  /** 400/1806, preceded by 1808 (single) or 1809 (double) when a quote was left open. */
  malformedUrl: (openQuote?: string) =>
    new RestError(400, [
      ...(openQuote
        ? [fourD(openQuote === "'" ? 1808 : 1809, `Opening ${openQuote === "'" ? 'single' : 'double'} quote does not have a matching closing one in the URL`)]
        : []),
      fourD(1806, 'URL is not well formed'),
    ]),
  badAttributeList: (attr: string, dc: string) =>
    new RestError(404, [
      fourD(1500, `The "${attr}" attribute cannot be found in the "${dc}" dataclass`),
      fourD(1804, `Cannot completely build a list of attributes with "${attr}" for the "${dc}" dataclass`),
    ]),
  badOrderBy: (attr: string, dc: string) => new RestError(404, [fourD(1810, `Cannot order by "${attr}" for the "${dc}" dataclass`)]),
  unknownMethod: (m: string) => new RestError(400, [fourD(1812, `"${m}" is an unknown REST method`)]),
  methodNotApplicable: (m: string) => new RestError(400, [fourD(1813, `"${m}" REST method is not applicable here`)]),
  badJsonBody: (detail: string) => new RestError(400, [fourD(1806, `The request body is not valid JSON: ${detail}`)]),
  // query errors: the real server answers them with HTTP 500
  attributeNotFound: (attr: string, dc: string) => new RestError(500, [fourD(1500, `The "${attr}" attribute cannot be found in the "${dc}" dataclass`)]),
  queryInvalid: (detail: string) => new RestError(500, [fourD(1162, `Query is invalid: ${detail}`)]),
  placeholderMissing: (n: number) => new RestError(500, [fourD(1279, `The query placeholder :${n} is missing or null`)]),
  badQueryValue: (detail: string) => new RestError(500, [fourD(1280, `The query value is not valid: ${detail}`)]),
};

/** Body of an error response. */
export function errorBody(errors: FourDError[]): { __ERROR: FourDError[] } {
  return { __ERROR: errors };
}
