/** Listening addresses for the commands that serve (`serve`, `ui`): problems named up front. */

/** `host:port`, with an IPv6 host in brackets. */
export function address(host: string, port: number): string {
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}

/** What went wrong listening on host:port, as a user reads it (the error's own text otherwise). */
export function listenProblem(error: unknown, host: string, port: number): string {
  const where = address(host, port);
  if (error instanceof Deno.errors.AddrInUse) {
    return `${where} is already in use (another server listens there): choose another --port, ` +
      `or --port 0 for any free one`;
  }
  if (error instanceof Deno.errors.AddrNotAvailable) {
    return `cannot listen on ${where}: ${host} is not an address of this machine (--host)`;
  }
  if (error instanceof Deno.errors.PermissionDenied) {
    return `not allowed to listen on ${where} (ports below 1024 need privileges): choose another --port`;
  }
  return `cannot listen on ${where}: ${error instanceof Error ? error.message : error}`;
}

/**
 * Throws, naming the address, when host:port cannot be listened on (port 0, any free port,
 * always can): checked before slow work such as loading a model.
 */
export function ensureCanListen(host: string, port: number): void {
  if (port === 0) return;
  try {
    Deno.listen({ hostname: host, port }).close();
  } catch (error) {
    throw new Error(listenProblem(error, host, port));
  }
}
