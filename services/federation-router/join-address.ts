/**
 * What an area's RetryJoin and a join take (consul-compat.md, network areas): an IPv4 address, an
 * IPv6 address in brackets, or a host name, each with an optional port (8300 when none,
 * federation.ts `withDefaultPort`). An address that is none of these is refused when the area is
 * created, and reported against its row by a join, rather than retried every 30 s for the area's
 * life with a dial error in the log.
 */
import { isIPv4, isIPv6 } from 'node:net';

/**
 * A host name: labels of letters, digits, '-' (not first or last) and '_' (Docker's container
 * names have them, and resolvers take them), dots between, at most 253 characters.
 */
const HOST_NAME = /^(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;

/** Why `address` cannot be joined, or undefined when it can be. */
export function joinAddressProblem(address: string): string | undefined {
  if (address === '') return 'an empty address';
  const bracketed = /^\[([^\]]*)\](?::([^:]*))?$/.exec(address);
  if (bracketed !== null) {
    if (!isIPv6(bracketed[1])) return `"${bracketed[1]}" in brackets is not an IPv6 address`;
    return bracketed[2] === undefined ? undefined : portProblem(bracketed[2]);
  }
  const parts = address.split(':');
  if (parts.length > 2) return isIPv6(address) ? `an IPv6 address goes in brackets: "[${address}]" or "[${address}]:8300"` : 'too many colons';
  const [host, port] = parts;
  if (!isIPv4(host) && (!HOST_NAME.test(host) || /^[\d.]+$/.test(host))) return `"${host}" is not an IP address or a host name`;
  return port === undefined ? undefined : portProblem(port);
}

/** The first of `addresses` that cannot be joined, as `"<address>": <why>`; undefined when every one can. */
export function joinAddressesProblem(addresses: readonly string[]): string | undefined {
  for (const address of addresses) {
    const problem = joinAddressProblem(address);
    if (problem !== undefined) return `"${address}": ${problem}`;
  }
  return undefined;
}

function portProblem(port: string): string | undefined {
  const value = /^\d{1,5}$/.test(port) ? Number(port) : NaN;
  return value >= 1 && value <= 65_535 ? undefined : `"${port}" is not a port (1-65535)`;
}
