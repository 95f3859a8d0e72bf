import Foundation
import MicrosoftSimulator
import Testing
import UTMStackReceiver

/// Onboards every simulated tenant through the admin API; returns the gateway ids, in the simulator's order.
func onboardAll(_ simulator: MicrosoftSimulator, _ gw: GatewayHarness, contentTypes: [String]? = nil) async throws -> [String] {
    var ids: [String] = []
    for tenant in simulator.configuration.tenants {
        var fields: [String: Any?] = ["clientId": tenant.clientId.uuidString, "name": tenant.name]
        if let contentTypes { fields["contentTypes"] = contentTypes }
        let created = try await gw.request(
            .POST, "/api/v1/tenants", json: tenantBody(tenantId: tenant.tenantId.uuidString, secret: tenant.clientSecret!, fields))
        try #require(created.status == 201, "onboarding failed: \(created.body)")
        ids.append(created.json["id"] as! String)
    }
    return ids
}

/// Every record id the simulator has made available by `now`, over all tenants and content types.
func expectedRecordIDs(_ simulator: MicrosoftSimulator, now: Date = Date()) -> Set<String> {
    simulator.configuration.tenants.indices.reduce(into: Set<String>()) { all, tenant in
        for type in ContentGenerator.contentTypes {
            all.formUnion(simulator.generator.expectedRecordIDs(tenant: tenant, contentType: type, now: now))
        }
    }
}

/// The record `Id` inside a forwarded log's raw JSON.
func recordID(_ raw: String) -> String {
    ((try? JSONSerialization.jsonObject(with: Data(raw.utf8))) as? [String: Any])?["Id"] as? String ?? ""
}

extension ReceivedLogs {
    /// Record ids received so far, in arrival order (duplicates kept).
    var recordIDs: [String] { snapshot.logs.map { recordID($0.raw) } }

    /// The records received more than once, each with its arrival positions and data source: enough to tell a
    /// resend on one stream (positions close together) from a unit collected twice (far apart, across a hand-over).
    var duplicateReport: String {
        let logs = snapshot.logs
        var positions: [String: [Int]] = [:]
        for (index, log) in logs.enumerated() { positions[recordID(log.raw), default: []].append(index) }
        let repeated = positions.filter { $0.value.count > 1 }.sorted { $0.value[0] < $1.value[0] }
        return repeated.prefix(20).map { id, at in "\(id) at \(at) of \(logs.count) (\(logs[at[0]].dataSource))" }.joined(separator: "; ")
    }
}

/// How many units each replica holds now, by owner, read from the status API.
func unitOwners(_ gw: GatewayHarness, tenants: [String]) async throws -> [String: Int] {
    var owners: [String: Int] = [:]
    for id in tenants {
        let tenant = try await gw.request(.GET, "/api/v1/tenants/\(id)")
        for unit in tenant.json["status"] as? [[String: Any]] ?? [] {
            owners[unit["owner"] as? String ?? "none", default: 0] += 1
        }
    }
    return owners
}

/// The whole-pipeline tests (simulator, gateway, receiver, thousands of records) run one at a time: each is
/// CPU-heavy in a debug build, and run side by side on two cores they only slow each other past their deadlines.
@Suite(.serialized) enum EndToEndTests {}
