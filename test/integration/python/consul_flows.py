"""Drives a Consulate catalog with Debian's python3-consul (python-consul 0.7.1), as an application
would: catalog, health, KV (cas, recurse, keys, blocking), sessions and a lock, status and agent,
user events.

    /usr/bin/python3 test/integration/python/consul_flows.py <host> <port> <session-node> <datacenter> <join-address>

Prints one JSON object: what each flow saw, for test/integration/consul-clients.test.ts to check.
A client exception is a failed flow: it is printed as {"error": ...} with exit code 1, so the
test shows which call broke and how.
"""
import json
import sys
import threading
import time
import traceback

import consul


def text(value):
    """python-consul base64-decodes KV values into bytes; None stays None."""
    return None if value is None else value.decode()


def main(host, port, session_node, datacenter, join_address):
    c = consul.Consul(host=host, port=port)
    # The same client with a datacenter: python-consul then sends ?dc= (or "Datacenter") on every call.
    c_dc = consul.Consul(host=host, port=port, dc=datacenter)
    out = {}

    # status and agent
    out['status'] = {'leader': c.status.leader(), 'peers': c.status.peers()}
    members = c.agent.members()
    agent_self = c.agent.self()
    out['agent'] = {
        'members': sorted(m['Name'] for m in members),
        'member_segments': {m['Name']: m['Tags'].get('segment', '') for m in members},
        'self_datacenter': agent_self['Config']['Datacenter'],
        'self_node': agent_self['Config']['NodeName'],
        'self_member': agent_self['Member']['Name'],
        # One node ID everywhere, as with Consul: the agent's config, its gossip `id` tag, its catalog node.
        'self_node_id_is_member_id': agent_self['Config']['NodeID'] == agent_self['Member']['Tags']['id'],
        'self_node_id_is_catalog_id': agent_self['Config']['NodeID'] == c.catalog.node(agent_self['Config']['NodeName'])[1]['Node']['ID'],
        # python-consul joins with GET (Consul wants PUT; it accepts both, as Consul did when this client was written).
        'join': c.agent.join(join_address),
    }

    # catalog: register (python-consul sends lower-case keys), read every way, deregister
    registered = c.catalog.register(
        'py-node', '10.20.0.5',
        service={'Service': 'py-web', 'ID': 'py-web-1', 'Tags': ['v1', 'blue'], 'Port': 8080},
        check={'CheckID': 'service:py-web-1', 'Name': 'py-web alive', 'Status': 'passing', 'ServiceID': 'py-web-1'})
    registered_dc = c_dc.catalog.register(
        'py-node', '10.20.0.5',
        service={'Service': 'py-db', 'ID': 'py-db-1', 'Port': 5432},
        check={'CheckID': 'service:py-db-1', 'Name': 'py-db alive', 'Status': 'critical', 'ServiceID': 'py-db-1'})
    index, nodes = c.catalog.nodes()
    _, services = c.catalog.services()
    _, instances = c.catalog.service('py-web')
    _, tagged = c_dc.catalog.service('py-web', tag='blue')
    _, node = c_dc.catalog.node('py-node')
    _, missing_node = c.catalog.node('py-nowhere')
    _, dc_nodes = c_dc.catalog.nodes()
    out['catalog'] = {
        'register': registered,
        'register_dc': registered_dc,
        'datacenters': c.catalog.datacenters(),
        'index': int(index),
        'nodes': sorted(n['Node'] for n in nodes),
        'dc_nodes': sorted(n['Node'] for n in dc_nodes),
        'services': {name: sorted(tags) for name, tags in services.items()},
        'service': [{'Node': i['Node'], 'Address': i['Address'], 'ServiceID': i['ServiceID'], 'ServicePort': i['ServicePort'], 'ServiceTags': i['ServiceTags']} for i in instances],
        'service_tag_blue': [i['ServiceID'] for i in tagged],
        'node_address': node['Node']['Address'],
        'node_services': sorted(node['Services']),
        'missing_node': missing_node,
    }

    # health
    _, all_web = c.health.service('py-web')
    _, passing_web = c.health.service('py-web', passing=True)
    _, passing_db = c_dc.health.service('py-db', passing=True)
    _, node_checks = c_dc.health.node('py-node')
    _, service_checks = c.health.checks('py-db')
    _, critical = c_dc.health.state('critical')
    out['health'] = {
        'service': [{'Node': e['Node']['Node'], 'Service': e['Service']['ID'], 'Checks': sorted(k['CheckID'] for k in e['Checks'])} for e in all_web],
        'service_passing': [e['Service']['ID'] for e in passing_web],
        'db_passing': [e['Service']['ID'] for e in passing_db],
        'node': sorted((k['CheckID'], k['Status']) for k in node_checks),
        'checks': [(k['CheckID'], k['Status']) for k in service_checks],
        'critical': sorted(k['CheckID'] for k in critical if k['Node'] == 'py-node'),
    }

    # KV: put, get, recurse, keys, flags, cas, delete with cas, a blocking get woken by a put
    kv = {}
    kv['put'] = c.kv.put('py/config', 'one')
    kv['put_flags'] = c.kv.put('py/db/url', 'postgres://', flags=42)
    kv['put_dc'] = c_dc.kv.put('py/db/user', 'app')
    index, item = c.kv.get('py/config')
    kv['get'] = {'Key': item['Key'], 'Value': text(item['Value']), 'Flags': item['Flags'], 'index_is_modify': int(index) == item['ModifyIndex']}
    _, items = c_dc.kv.get('py/', recurse=True)
    kv['recurse'] = [(i['Key'], text(i['Value']), i['Flags']) for i in items]
    _, keys = c.kv.get('py/', keys=True, separator='/')
    kv['keys_separator'] = keys
    _, all_keys = c_dc.kv.get('py/', keys=True)
    kv['keys'] = all_keys
    missing_index, missing = c.kv.get('py/missing')
    kv['missing'] = {'value': missing, 'index': int(missing_index)}
    modify = item['ModifyIndex']
    kv['cas_create_existing'] = c.kv.put('py/config', 'two', cas=0)
    kv['cas_right'] = c.kv.put('py/config', 'two', cas=modify)
    kv['cas_stale'] = c.kv.put('py/config', 'three', cas=modify)
    _, now = c.kv.get('py/config')
    kv['after_cas'] = text(now['Value'])
    kv['delete_cas_stale'] = c.kv.delete('py/config', cas=modify)
    kv['delete_cas_right'] = c.kv.delete('py/config', cas=now['ModifyIndex'])
    _, gone = c.kv.get('py/config')
    kv['deleted'] = gone is None

    index, _ = c.kv.get('py/watch')
    timer = threading.Timer(0.5, lambda: c.kv.put('py/watch', 'changed'))
    started = time.monotonic()
    timer.start()
    woken_index, woken = c.kv.get('py/watch', index=index, wait='20s')
    timer.join()
    kv['blocking'] = {'value': text(woken['Value']), 'index_grew': int(woken_index) > int(index), 'seconds': round(time.monotonic() - started, 2)}
    kv['delete_recurse'] = c_dc.kv.delete('py/', recurse=True)
    _, left = c.kv.get('py/', recurse=True)
    kv['after_delete_recurse'] = left
    out['kv'] = kv

    # sessions and a lock
    s = {}
    # No node: the agent's own, as applications usually create them.
    sid = c.session.create(name='py-lock', ttl=10, lock_delay=0)
    other = c_dc.session.create(name='py-other', node=session_node, behavior='delete')
    _, info = c.session.info(sid)
    s['info'] = {'Name': info['Name'], 'Node': info['Node'], 'TTL': info['TTL'], 'Behavior': info['Behavior'], 'LockDelay': info['LockDelay']}
    renewed = c_dc.session.renew(sid)
    s['renew'] = {'ID': renewed['ID'] == sid, 'TTL': renewed['TTL']}
    _, listed = c_dc.session.list()
    s['list'] = sorted(x['Name'] for x in listed if x['ID'] in (sid, other))
    _, on_node = c.session.node(session_node)
    s['node'] = sorted(x['Name'] for x in on_node if x['ID'] in (sid, other))
    s['acquire'] = c.kv.put('py-lock/leader', 'me', acquire=sid)
    s['acquire_other'] = c.kv.put('py-lock/leader', 'them', acquire=other)
    _, held = c.kv.get('py-lock/leader')
    s['held'] = {'Session': held.get('Session') == sid, 'LockIndex': held['LockIndex'], 'Value': text(held['Value'])}
    s['release_other'] = c.kv.put('py-lock/leader', 'them', release=other)
    s['release'] = c.kv.put('py-lock/leader', 'me', release=sid)
    _, released = c.kv.get('py-lock/leader')
    s['released'] = {'Session': released.get('Session'), 'LockIndex': released['LockIndex']}
    s['acquire_after_release'] = c.kv.put('py-lock/leader', 'them', acquire=other)
    s['destroy_other'] = c.session.destroy(other)
    _, after_delete_behavior = c.kv.get('py-lock/leader')
    s['lock_key_after_destroy_delete_behavior'] = after_delete_behavior
    s['destroy'] = c_dc.session.destroy(sid)
    _, destroyed = c_dc.session.info(sid)
    s['info_after_destroy'] = destroyed
    out['session'] = s

    # deregister: one service, then the node and everything on it
    out['deregister'] = {
        'service': c.catalog.deregister('py-node', service_id='py-db-1'),
        'services_after': sorted(c.catalog.node('py-node')[1]['Services']),
        'node': c_dc.catalog.deregister('py-node'),
        'node_after': c.catalog.node('py-node')[1],
        'web_after': c.catalog.service('py-web')[1],
    }
    # events: fire one with a payload and one without, then a blocking list by name woken by a third
    e = {}
    fired = c.event.fire('py-deploy', body='v7')
    bare = c.event.fire('py-deploy')
    e['fired'] = {'Name': fired['Name'], 'Version': fired['Version'], 'LTime': fired['LTime'], 'bare_payload': bare['Payload']}
    events = []
    for _ in range(100):
        index, events = c.event.list(name='py-deploy')
        if any(x['ID'] == bare['ID'] for x in events):
            break
        time.sleep(0.1)
    e['listed'] = [(x['ID'] == fired['ID'], x['ID'] == bare['ID'], text(x['Payload'])) for x in events]
    e['index'] = index
    third = {}

    def fire_later():
        time.sleep(0.3)
        third['event'] = c.event.fire('py-deploy', body='v8')

    later = threading.Thread(target=fire_later)
    later.start()
    woken_index, woken = c.event.list(name='py-deploy', index=index, wait='20s')
    later.join()
    e['woken'] = [text(x['Payload']) for x in woken]
    e['woken_index_moved'] = woken_index != index
    out['event'] = e
    return out


if __name__ == '__main__':
    try:
        print(json.dumps(main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])))
    except Exception as err:  # noqa: BLE001 - the test shows the failing call
        print(json.dumps({'error': '%s: %s' % (type(err).__name__, err), 'traceback': traceback.format_exc()}))
        sys.exit(1)
