import Collection
import Foundation
import GatewayCore
import MicrosoftSimulator
import Testing
import UTMStackReceiver

/// The whole pipeline: PostgreSQL, the simulator over HTTP, the gateway, the receiver over a Unix socket.
extension EndToEndTests {
    @Suite(.timeLimit(.minutes(3))) struct PipelineTests {
        @Test func everySimulatedRecordArrivesExactlyOnce() async throws {
            var simulated = SimulatorConfiguration.generated(tenants: 3, seed: 31)
            simulated.historyHours = 2
            simulated.blobIntervalSeconds = 300
            simulated.recordsPerBlob = 6
            simulated.pageSize = 4
            simulated.duplicateFraction = 0.3
            simulated.lateFraction = 0.2
            simulated.latencySeconds = 0
            simulated.lateDelaySeconds = 3
            simulated.live = false
            let startedAt = Date()
            let socket = temporarySocketPath()
            let received = ReceivedLogs(keepLogs: true)
            let settings = CollectionSettings(
                pollInterval: .milliseconds(500), backfill: 3 * 3600, trailingRelist: 3600, leaseTTL: 5, tick: .milliseconds(200))
            try await withSimulator(simulated, startedAt: startedAt) { simulator, url in
                try await withReceiver(path: socket, received: received) {
                    try await GatewayHarness.run(microsoft: url, utmstackSocket: socket, collection: settings) { gw in
                        for tenant in simulator.configuration.tenants {
                            let created = try await gw.request(
                                .POST, "/api/v1/tenants",
                                json: tenantBody(tenantId: tenant.tenantId.uuidString, secret: tenant.clientSecret!, [
                                    "clientId": tenant.clientId.uuidString, "name": tenant.name,
                                ]))
                            #expect(created.status == 201)
                        }
                        // Late blobs appear 3 s after their contentCreated; the ground truth is fixed after that.
                        try await Task.sleep(for: .seconds(4))
                        let expected = (0..<3).reduce(into: Set<String>()) { all, tenant in
                            for type in ContentGenerator.contentTypes {
                                all.formUnion(simulator.generator.expectedRecordIDs(tenant: tenant, contentType: type, now: Date()))
                            }
                        }
                        #expect(expected.count > 300)
                        let complete = try await eventually(timeout: .seconds(90)) {
                            Set(received.snapshot.logs.map { recordID($0.raw) }) == expected
                        }
                        #expect(complete, "every simulated record arrived")
                        // Keep polling a few rounds: relisting must not forward anything again.
                        try await Task.sleep(for: .seconds(2))
                        let logs = received.snapshot.logs
                        let ids = logs.map { recordID($0.raw) }
                        #expect(ids.count == Set(ids).count, "no record forwarded twice (\(ids.count - Set(ids).count) duplicates)")
                        #expect(Set(ids) == expected)
                        #expect(Set(logs.map(\.id)).count == logs.count)
                        // Status per content type, and the counts agree with what arrived.
                        let listed = try await gw.request(.GET, "/api/v1/tenants")
                        var forwarded = 0
                        for item in listed.json["items"] as? [[String: Any]] ?? [] {
                            let tenant = try await gw.request(.GET, "/api/v1/tenants/\(item["id"] as! String)")
                            let status = try #require(tenant.json["status"] as? [[String: Any]])
                            #expect(status.count == 5)
                            #expect(status.allSatisfy { $0["state"] as? String == "ok" && $0["subscription"] as? String == "enabled" })
                            #expect(status.allSatisfy { ($0["lagSeconds"] as? Int ?? 9999) < 300 && $0["checkpoint"] != nil })
                            forwarded += status.reduce(0) { $0 + ($1["recordsForwarded"] as? Int ?? 0) }
                        }
                        #expect(forwarded == expected.count)
                    }
                }
            }
        }
}
}
