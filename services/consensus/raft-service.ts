/** gRPC adapter for consulate.consensus.v1.RaftService: messages from peers into the node. */
import { ServerReadableStream, sendUnaryData } from '@grpc/grpc-js';

import { RaftServiceServer, SendRequest, SendResponse } from '../gen/consulate/consensus/v1/raft';
import { Logger } from '../lib/log';
import { ConsensusNode } from './consensus-node';
import { messageFromWire } from './raft-codec';
import { RaftTransport } from './transport';

export function raftService(node: ConsensusNode, transport: Pick<RaftTransport, 'notePeer'>, selfId: string, logger: Logger): RaftServiceServer {
  return {
    send(call: ServerReadableStream<SendRequest, SendResponse>, callback: sendUnaryData<SendResponse>) {
      let malformed = 0;
      call.on('data', (request: SendRequest) => {
        for (const wire of request.messages) {
          try {
            const message = messageFromWire(wire);
            // A message for another server (a stale address after a membership change) is dropped.
            if (message.to !== selfId) continue;
            transport.notePeer(message.from, wire.fromAddress);
            node.receive(message);
          } catch (err) {
            if (malformed++ % 100 === 0) logger.warn({ event: 'raft-message-malformed', err }, `dropping a malformed Raft message: ${(err as Error).message}`);
          }
        }
      });
      call.on('end', () => callback(null, {}));
      call.on('error', () => undefined);
    },
  };
}
