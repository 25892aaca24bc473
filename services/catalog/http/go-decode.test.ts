/**
 * Bodies decoded as Consul's decodeBody (Go's encoding/json Decoder) decodes them, with Go's
 * error texts: what follows `Request decode failed: ` in Consul's 400 (agent/catalog_endpoint.go).
 */
import { GoJsonError, decodeGoJson, go, quoteChar } from './go-decode';

const request = go.struct('structs.RegisterRequest', {
  Node: go.string(),
  Port: go.int(),
  Skip: go.bool(),
  Tags: go.slice(go.string()),
  Meta: go.map(go.string()),
  Service: go.pointer('structs.NodeService', { ID: go.string(), Port: go.int(), Weights: go.pointer('structs.Weights', { Passing: go.int() }) }),
  Checks: go.slice(go.pointer('structs.HealthCheck', { CheckID: go.string('types.CheckID') }), 'structs.HealthChecks'),
  Extra: go.any(),
});

function failure(body: string): string {
  try {
    decodeGoJson(body, request);
  } catch (err) {
    if (err instanceof GoJsonError) return err.message;
    throw err;
  }
  throw new Error(`${body} decoded`);
}

describe("syntax errors: Go's scanner texts", () => {
  test.each([
    ['', 'EOF'],
    ['   \n', 'EOF'],
    ['{', 'unexpected EOF'],
    ['{"Node": "a"', 'unexpected EOF'],
    ['{"Node": "a', 'unexpected EOF'],
    ['nope', "invalid character 'o' in literal null (expecting 'u')"],
    ['x', "invalid character 'x' looking for beginning of value"],
    ['{Node: 1}', "invalid character 'N' looking for beginning of object key string"],
    ['{"Node" 1}', "invalid character '1' after object key"],
    ['{"Node": 1 "x": 2}', `invalid character '"' after object key:value pair`],
    ['{"Node": "a",}', "invalid character '}' looking for beginning of object key string"],
    ['{"Tags": [1 2]}', "invalid character '2' after array element"],
    ['{"Tags": [1,]}', "invalid character ']' looking for beginning of value"],
    ['{"Node": "a\tb"}', "invalid character '\\t' in string literal"],
    ['{"Node": "\\x"}', "invalid character 'x' in string escape code"],
    ['{"Node": "\\u12g4"}', "invalid character 'g' in \\u hexadecimal character escape"],
    ['{"Port": -x}', "invalid character 'x' in numeric literal"],
    ['{"Port": 1.}', "invalid character '}' after decimal point in numeric literal"],
    ['{"Port": 1e}', "invalid character '}' in exponent of numeric literal"],
    ['{"Port": 01}', "invalid character '1' after object key:value pair"],
    ["{'Node': 1}", "invalid character '\\'' looking for beginning of object key string"],
    ['{"Skip": tru}', "invalid character '}' in literal true (expecting 'e')"],
  ])('%j → %s', (body, message) => {
    expect(failure(body)).toBe(message);
  });

  test('only the first value is read (Decoder.Decode): trailing text is ignored', () => {
    expect(decodeGoJson('{"Node": "a"} trailing {', request)).toMatchObject({ Node: 'a' });
  });

  test('nesting past the depth limit is refused, not a stack overflow', () => {
    expect(failure(`{"Extra": ${'['.repeat(5000)}`)).toBe('exceeded max depth');
  });

  test('quoteChar escapes as strconv.Quote does', () => {
    expect(quoteChar('\n')).toBe("'\\n'");
    expect(quoteChar('\u0001')).toBe("'\\x01'");
    expect(quoteChar('"')).toBe(`'"'`);
    expect(quoteChar('é')).toBe("'Ã'"); // Go reports the first byte of the UTF-8 form, as a rune
  });
});

describe("type errors: Go's UnmarshalTypeError texts, the first one, after decoding the rest", () => {
  test.each([
    ['{"Node": 5}', 'json: cannot unmarshal number into Go struct field RegisterRequest.Node of type string'],
    ['{"Port": "80"}', 'json: cannot unmarshal string into Go struct field RegisterRequest.Port of type int'],
    ['{"Port": 1.5}', 'json: cannot unmarshal number 1.5 into Go struct field RegisterRequest.Port of type int'],
    ['{"Skip": "yes"}', 'json: cannot unmarshal string into Go struct field RegisterRequest.Skip of type bool'],
    ['{"Tags": "a"}', 'json: cannot unmarshal string into Go struct field RegisterRequest.Tags of type []string'],
    ['{"Meta": []}', 'json: cannot unmarshal array into Go struct field RegisterRequest.Meta of type map[string]string'],
    ['{"Service": "web"}', 'json: cannot unmarshal string into Go struct field RegisterRequest.Service of type structs.NodeService'],
    ['{"Service": {"Port": true}}', 'json: cannot unmarshal bool into Go struct field NodeService.Service.Port of type int'],
    ['{"Service": {"Weights": {"Passing": "1"}}}', 'json: cannot unmarshal string into Go struct field Weights.Service.Weights.Passing of type int'],
    ['{"Checks": {}}', 'json: cannot unmarshal object into Go struct field RegisterRequest.Checks of type structs.HealthChecks'],
    ['{"Checks": [{"CheckID": 1}]}', 'json: cannot unmarshal number into Go struct field HealthCheck.Checks.CheckID of type types.CheckID'],
    ['[]', 'json: cannot unmarshal array into Go value of type structs.RegisterRequest'],
    ['"x"', 'json: cannot unmarshal string into Go value of type structs.RegisterRequest'],
    ['{"Node": 1, "Port": "x"}', 'json: cannot unmarshal number into Go struct field RegisterRequest.Node of type string'],
  ])('%s', (body, message) => {
    expect(failure(body)).toBe(message);
  });
});

describe('values', () => {
  test("field names match case-insensitively; unknown fields are ignored; null keeps Go's zero value", () => {
    expect(decodeGoJson('{"node": "n1", "PORT": 80, "Unknown": {"x": 1}, "Skip": null, "Tags": null, "Service": null}', request)).toEqual({
      Node: 'n1',
      Port: 80,
      Skip: false,
      Tags: undefined,
      Meta: undefined,
      Service: undefined,
      Checks: undefined,
      Extra: undefined,
    });
  });

  test('nested structs, slices, maps and interface{} values', () => {
    const value = decodeGoJson('{"Service": {"ID": "web", "Weights": {"Passing": 3}}, "Checks": [{"CheckID": "c"}, null], "Meta": {"a": "1"}, "Extra": [1, {"b": true}]}', request) as Record<string, unknown>;
    expect(value.Service).toEqual({ ID: 'web', Port: 0, Weights: { Passing: 3 } });
    expect(value.Checks).toEqual([{ CheckID: 'c' }, undefined]);
    expect(value.Meta).toEqual({ a: '1' });
    expect(value.Extra).toEqual([1, { b: true }]);
  });

  test('a top-level null decodes to the zero struct (then "Must provide node" is the answer)', () => {
    expect(decodeGoJson('null', request)).toMatchObject({ Node: '', Port: 0 });
  });

  test('escapes and unicode in strings', () => {
    expect(decodeGoJson('{"Node": "a\\"b\\u00e9\\n"}', request)).toMatchObject({ Node: 'a"bé\n' });
    expect(decodeGoJson(Buffer.from('{"Node": "nœud"}'), request)).toMatchObject({ Node: 'nœud' });
  });
});
