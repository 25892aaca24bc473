/**
 * Consul's HTTP error mapping (agent/http.go `wrap`, reference/consul-compat.md §4.8): a handler
 * throws an HttpError with the status and Consul's text; anything else is a 500 with the error's
 * text, as Consul answers `No path to datacenter` or `No cluster leader`.
 */
export class HttpError extends Error {
  override readonly name = 'HttpError';
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }
}

export const badRequest = (message: string) => new HttpError(400, message);
export const notFound = (message: string) => new HttpError(404, message);
export const methodNotAllowed = (method: string, allowed: readonly string[]) => new HttpError(405, `method ${method} not allowed`, { Allow: ['OPTIONS', ...allowed].join(',') });
export const tooLarge = (message: string) => new HttpError(413, message);
