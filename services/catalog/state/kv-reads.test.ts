import { keys } from './keys';
import { readKvEntry } from './kv-reads';
import { CatalogView } from './view';

describe('readKvEntry', () => {
  test('reads of one stored row share one entry; a write stores a new row, read afresh', () => {
    const view = new CatalogView();
    const put = (value: string, revision: number) => view.apply([{ type: 'put', row: { key: keys.kv('web/config'), value: Buffer.from(value), createRevision: 2, modRevision: revision, lease: '' } }], revision);
    put('v1', 2);
    const first = readKvEntry(view, 'web/config');
    expect(first).toEqual({ value: { entry: { LockIndex: 0, Key: 'web/config', Flags: 0n, Value: Buffer.from('v1').toString('base64'), CreateIndex: 2, ModifyIndex: 2 }, raw: Buffer.from('v1') }, index: 2 });
    expect(readKvEntry(view, 'web/config').value).toBe(first.value);

    put('v2', 3);
    const second = readKvEntry(view, 'web/config');
    expect(second.value.entry).toMatchObject({ Value: Buffer.from('v2').toString('base64'), ModifyIndex: 3 });
    expect(second.index).toBe(3);
    expect(first.value.entry).toMatchObject({ Value: Buffer.from('v1').toString('base64'), ModifyIndex: 2 });
  });

  test('an absent key reads as nothing at the kvs table index', () => {
    const view = new CatalogView();
    view.apply([{ type: 'put', row: { key: keys.kv('other'), value: Buffer.from('x'), createRevision: 5, modRevision: 5, lease: '' } }], 5);
    expect(readKvEntry(view, 'web/config')).toEqual({ value: {}, index: 5 });
  });
});
