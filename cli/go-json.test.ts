// encoding/json's output, as `consul watch` prints it.
import { GoMap, GoUint, marshal, marshalIndent } from './go-json';

describe('go-json', () => {
  test('HTML-sensitive characters and line separators escaped as Go does; uint64 exact; maps sorted', () => {
    expect(marshal({ b: '<a href="x">&</a>\u2028', n: new GoUint('18446744073709551615'), m: new GoMap({ z: 1, a: 2 }) })).toBe(
      '{"b":"\\u003ca href=\\"x\\"\\u003e\\u0026\\u003c/a\\u003e\\u2028","n":18446744073709551615,"m":{"a":2,"z":1}}',
    );
  });

  test('MarshalIndent: four spaces, [] and {} for empty, null for nil', () => {
    expect(marshalIndent({ list: [], map: new GoMap({}), nil: null, one: [1] })).toBe('{\n    "list": [],\n    "map": {},\n    "nil": null,\n    "one": [\n        1\n    ]\n}');
    expect(marshalIndent(null)).toBe('null');
  });
});
