/**
 * A Peer (peer-clients.ts) over a plain FederationServiceClient, for tests that talk plaintext
 * to a FederationService: its unary calls as the generated client makes them, Forward with its
 * messages left encoded as the routers send it.
 */
import { encodedUnary } from '../../lib/call-stream';
import { FederationServiceClient, FederationServiceService } from '../../gen/consulate/router/v1/federation';
import { encodedMethod } from '../forward-wire';
import { Peer } from '../peer-clients';

export function peerOf(client: FederationServiceClient): Peer {
  return {
    forward: encodedUnary(client, encodedMethod(FederationServiceService.forward)),
    forwardWatch: (request, metadata) => client.forwardWatch(request, metadata),
    packet: (request, metadata, options, callback) => client.packet(request, metadata, options, callback),
    pushPull: (request, metadata, options, callback) => client.pushPull(request, metadata, options, callback),
    ping: (request, metadata, options, callback) => client.ping(request, metadata, options, callback),
  };
}
