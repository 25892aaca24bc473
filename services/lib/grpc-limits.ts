/**
 * Limits every role's gRPC server starts with (a role may raise the message size: snapshots) and
 * its clients match: here, apart, so grpc-server.ts, grpc-client.ts and call-stream.ts all import
 * them without an import cycle.
 */
export const GRPC_SERVER_DEFAULTS = {
  /** Largest message accepted or sent. Consul caps RPC bodies similarly; KV values stay ≤ 512 KiB. */
  maxMessageBytes: 4 * 1024 * 1024,
  /** Streams one client connection may hold open at once (watches are streams). */
  maxConcurrentStreams: 1024,
  /** Ping an idle connection this often, to find dead peers behind silent networks. */
  keepaliveTimeMs: 30_000,
  /** And drop it when the ping is not answered within this long. */
  keepaliveTimeoutMs: 10_000,
  /** Refuse client pings more frequent than this (grpc-js answers GOAWAY "too_many_pings"). */
  minPingIntervalMs: 10_000,
  /** How long calls in flight may run after shutdown starts before they are cut. */
  shutdownGraceMs: 5_000,
};
