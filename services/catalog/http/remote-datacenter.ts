import { refuseOtherDatacenter } from '../state/errors';

/**
 * `?dc=` on the endpoints that cannot leave this datacenter yet: Consul forwards them (§3.9), and
 * forwarding comes with the federation router. Until then another datacenter is one we have no
 * path to, in Consul's words (structs.ErrNoDCPath, a 500).
 */
export function refuseRemoteDatacenter(query: URLSearchParams, localDatacenter: string): void {
  refuseOtherDatacenter(query.get('dc') ?? '', localDatacenter);
}

