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

export const E = {
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
