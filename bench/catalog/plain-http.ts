/**
 * The ceiling for the catalog's HTTP reads: plain `node:http` answering every request with one
 * fixed JSON body (the bytes the catalog answered for the same GET), as
 * /work/shared/anchors/http-rr.mjs does. Run as its own process by run.ts:
 * `node plain-http.js <host> <port> <body file>`; says "ready" over IPC once it listens.
 */
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';

const [host, port, bodyFile] = process.argv.slice(2);
const body = readFileSync(bodyFile);
const server = createServer({ keepAliveTimeout: 30_000 }, (req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': body.length });
    res.end(body);
  });
});
server.listen(Number(port), host, () => process.send?.('ready'));
// Stop with the benchmark, however it ends (the IPC channel closes with it).
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
