/**
 * The router's pools (federation.ts): only the address rule here; the pools themselves run on the
 * shared SWIM shell, and the routes they feed are tested in routing/route-table.test.ts.
 * Consul gives an area join address without a port the server RPC port, 8300 (consul-compat.md,
 * network areas: `consul operator area join`).
 */
import { SERVER_RPC_PORT, withDefaultPort } from './federation';

describe('withDefaultPort', () => {
  test.each([
    ['10.0.0.1', '10.0.0.1:8300'],
    ['router-1.dc2.example', 'router-1.dc2.example:8300'],
    ['[2001:db8::1]', '[2001:db8::1]:8300'],
  ])('gives %s the server RPC port', (address, expected) => {
    expect(withDefaultPort(address)).toBe(expected);
  });

  test.each(['10.0.0.1:8805', 'host:8805', '[2001:db8::1]:8805'])('keeps the port of %s', (address) => {
    expect(withDefaultPort(address)).toBe(address);
  });

  test('the server RPC port is Consul\'s', () => {
    expect(SERVER_RPC_PORT).toBe(8300);
  });
});
