/** The addresses an area's RetryJoin and a join take (join-address.ts). */
import { loadConfig } from '../lib/config';
import { joinAddressProblem } from './join-address';
import { federationRouterRole } from './role';

describe('joinAddressProblem', () => {
  test.each(['10.1.2.3', '10.1.2.3:8300', '127.0.2.20:8805', 'router-1.dc2.example', 'router-1.dc2.example.', 'localhost:8300', 'consulate_dc2-router-1_1:8300', '[2001:db8::1]', '[::1]:8300', '[::ffff:10.0.0.1]:1'])('takes %s', (address) => {
    expect(joinAddressProblem(address)).toBeUndefined();
  });

  test.each([
    ['', 'an empty address'],
    ['::1', 'an IPv6 address goes in brackets: "[::1]" or "[::1]:8300"'],
    ['10.1.2.3:0', '"0" is not a port (1-65535)'],
    ['10.1.2.3:65536', '"65536" is not a port (1-65535)'],
    ['10.1.2.3:', '"" is not a port (1-65535)'],
    ['10.1.2.3:http', '"http" is not a port (1-65535)'],
    ['[10.1.2.3]:8300', '"10.1.2.3" in brackets is not an IPv6 address'],
    ['[::1]:99999', '"99999" is not a port (1-65535)'],
    ['10.1.2', '"10.1.2" is not an IP address or a host name'],
    ['999.1.2.3', '"999.1.2.3" is not an IP address or a host name'],
    ['bad host', '"bad host" is not an IP address or a host name'],
    ['-router.example', '"-router.example" is not an IP address or a host name'],
    ['a:b:c', 'too many colons'],
    [':8300', '"" is not an IP address or a host name'],
  ])('refuses %j: %s', (address, why) => {
    expect(joinAddressProblem(address)).toBe(why);
  });

  test('-retry-join-wan refuses such an address when the router starts, naming it', () => {
    const schema = { retryJoinWan: federationRouterRole.fields.retryJoinWan };
    expect(loadConfig(schema, { args: ['-retry-join-wan=10.0.0.1', '-retry-join-wan=[::1]:8300'] }).config.retryJoinWan).toEqual(['10.0.0.1', '[::1]:8300']);
    expect(() => loadConfig(schema, { args: ['-retry-join-wan=10.0.0.1', '-retry-join-wan=bad host'] })).toThrow('"bad host": "bad host" is not an IP address or a host name');
  });
});
