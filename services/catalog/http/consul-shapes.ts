/**
 * The JSON Consul answers for catalog and health reads (reference/consul-compat.md §4.1-4.2),
 * field for field and in Go's field order: structs.Node, structs.NodeService, structs.ServiceNode
 * and structs.HealthCheck. CreateIndex and ModifyIndex are the row's create and mod revisions.
 * Connect is not supported yet, so ServiceKind is always typical and Proxy/Connect are the zero
 * values Consul prints for a typical service.
 */
import { Indexed } from '../state/catalog-rows';
import { StoredCheck, StoredNode, StoredService } from '../state/model';

/** structs.ConnectProxyConfig and structs.ServiceConnect of a typical service, as Consul prints them. */
function zeroProxy() {
  return { Mode: '', MeshGateway: {}, Expose: {} };
}

export function nodeJson(node: Indexed<StoredNode>) {
  const n = node.value;
  return {
    ID: n.ID,
    Node: n.Node,
    Address: n.Address,
    Datacenter: n.Datacenter,
    TaggedAddresses: n.TaggedAddresses ?? {},
    Meta: n.Meta ?? {},
    CreateIndex: node.createIndex,
    ModifyIndex: node.modifyIndex,
  };
}

/** structs.NodeService: `/v1/catalog/node/:node` Services and `/v1/health/service` Service. */
export function nodeServiceJson(service: Indexed<StoredService>) {
  const s = service.value;
  const taggedAddresses = s.TaggedAddresses ?? {};
  return {
    ID: s.ID,
    Service: s.Service,
    Tags: s.Tags ?? [],
    Address: s.Address,
    // `json:",omitempty"` in Consul: absent when there are none.
    ...(Object.keys(taggedAddresses).length > 0 ? { TaggedAddresses: taggedAddresses } : {}),
    Meta: s.Meta ?? {},
    Port: s.Port,
    Weights: s.Weights ?? { Passing: 1, Warning: 1 },
    EnableTagOverride: s.EnableTagOverride === true,
    Proxy: zeroProxy(),
    Connect: {},
    CreateIndex: service.createIndex,
    ModifyIndex: service.modifyIndex,
  };
}

/** structs.ServiceNode: `/v1/catalog/service/:service`, the node's fields beside the service's. */
export function serviceNodeJson(node: Indexed<StoredNode>, service: Indexed<StoredService>) {
  const n = node.value;
  const s = service.value;
  const taggedAddresses = s.TaggedAddresses ?? {};
  return {
    ID: n.ID,
    Node: n.Node,
    Address: n.Address,
    Datacenter: n.Datacenter,
    TaggedAddresses: n.TaggedAddresses ?? {},
    NodeMeta: n.Meta ?? {},
    ServiceKind: '',
    ServiceID: s.ID,
    ServiceName: s.Service,
    ServiceTags: s.Tags ?? [],
    // As stored: empty means "use the node's Address", which is the client's to do.
    ServiceAddress: s.Address,
    ...(Object.keys(taggedAddresses).length > 0 ? { ServiceTaggedAddresses: taggedAddresses } : {}),
    ServiceWeights: s.Weights ?? { Passing: 1, Warning: 1 },
    ServiceMeta: s.Meta ?? {},
    ServicePort: s.Port,
    ServiceEnableTagOverride: s.EnableTagOverride === true,
    ServiceProxy: zeroProxy(),
    ServiceConnect: {},
    CreateIndex: service.createIndex,
    ModifyIndex: service.modifyIndex,
  };
}

/** structs.HealthCheck. The catalog runs no checks: no Interval, Timeout or Definition to show. */
export function healthCheckJson(check: Indexed<StoredCheck>) {
  const c = check.value;
  return {
    Node: c.Node,
    CheckID: c.CheckID,
    Name: c.Name,
    Status: c.Status,
    Notes: c.Notes,
    Output: c.Output,
    ServiceID: c.ServiceID,
    ServiceName: c.ServiceName,
    ServiceTags: c.ServiceTags ?? [],
    Type: c.Type ?? '',
    Interval: '',
    Timeout: '',
    ExposedPort: 0,
    Definition: {},
    CreateIndex: check.createIndex,
    ModifyIndex: check.modifyIndex,
  };
}
