import Collection
import Foundation
import MicrosoftSimulator
import Testing
import UTMStackReceiver

/// Several replicas on one database, and changes to tenants while collecting: everything arrives exactly once.
extension EndToEndTests {
    @Suite(.timeLimit(.minutes(3))) struct ReplicaTests {
        /// Live simulated data: a blob per content type every `interval` seconds, available at once, with duplicates.
        static func liveSimulation(tenants: Int, seed: UInt64, interval: Int, history: Double) -> SimulatorConfiguration {
            var simulated = SimulatorConfiguration.generated(tenants: tenants, seed: seed)
            simulated.historyHours = history
            simulated.blobIntervalSeconds = interval
            simulated.recordsPerBlob = 5
            simulated.pageSize = 7
            simulated.duplicateFraction = 0.2
            simulated.lateFraction = 0
            simulated.latencySeconds = 0
            simulated.live = true
            return simulated
        }

        static let fast = CollectionSettings(
            pollInterval: .milliseconds(300), backfill: 2 * 3600, trailingRelist: 600, leaseTTL: 6, tick: .milliseconds(500))

        @Test func twoReplicasShareTheUnitsAndTheSurvivorTakesOverWhenOneStops() async throws {
            let socket = temporarySocketPath()
            let received = ReceivedLogs(keepLogs: true)
            try await withSimulator(Self.liveSimulation(tenants: 3, seed: 71, interval: 20, history: 0.25)) { simulator, url in
                try await withReceiver(path: socket, received: received) {
                    try await GatewayHarness.run(microsoft: url, utmstackSocket: socket, collection: Self.fast) { a in
                        let tenants = try await onboardAll(simulator, a)
                        try await GatewayHarness.run(microsoft: url, utmstackSocket: socket, collection: Self.fast, sharing: a) { b in
                            // The joining replica gets its fair share of the 15 units: 8 and 7.
                            let shared = try await eventually(timeout: .seconds(30)) {
                                let owners = (try? await unitOwners(b, tenants: tenants)) ?? [:]
                                return owners["none"] == nil && owners.values.sorted() == [7, 8]
                            }
                            let owners = try await unitOwners(b, tenants: tenants)
                            #expect(shared, "replicas share fairly: \(owners)")
                            #expect(received.total > 0)
                        }
                        // B stopped gracefully and released its leases: A takes all of them well within 30 s.
                        let stoppedAt = ContinuousClock.now
                        let receivedWhenBStopped = received.total
                        let tookOver = try await eventually(timeout: .seconds(30)) {
                            let owners = (try? await unitOwners(a, tenants: tenants)) ?? [:]
                            return owners.count == 1 && owners.values.first == 15 && owners["none"] == nil
                        }
                        let owners = try await unitOwners(a, tenants: tenants)
                        #expect(tookOver, "the survivor holds every unit: \(owners)")
                        #expect(ContinuousClock.now - stoppedAt < .seconds(30))
                        // Exactly once, across both replicas and the hand-over.
                        // The gateway lists up to a minute before now (Microsoft's own latency); expect that much.
                        let expected = expectedRecordIDs(simulator, now: Date() - 61)
                        #expect(expected.count > 300)
                        let complete = try await eventually(timeout: .seconds(60)) { expected.isSubset(of: Set(received.recordIDs)) }
                        #expect(complete, "every simulated record arrived")
                        let ids = received.recordIDs
                        #expect(
                            ids.count == Set(ids).count,
                            "no record forwarded twice (\(ids.count - Set(ids).count) duplicates, B stopped at log \(receivedWhenBStopped)): \(received.duplicateReport)")
                        #expect(Set(ids).isSubset(of: expectedRecordIDs(simulator)))
                    }
                }
            }
        }

        @Test func disablingDeletingAndChangingContentTypesTakeEffectWithoutARestart() async throws {
            let socket = temporarySocketPath()
            let received = ReceivedLogs(keepLogs: true)
            try await withSimulator(Self.liveSimulation(tenants: 3, seed: 72, interval: 3, history: 0.05)) { simulator, url in
                // Which tenant and content type each simulated record belongs to.
                @Sendable func origin(_ id: String) -> (tenant: Int, type: String)? {
                    for tenant in 0..<3 {
                        for type in ContentGenerator.contentTypes
                        where simulator.generator.expectedRecordIDs(tenant: tenant, contentType: type, now: Date()).contains(id) {
                            return (tenant, type)
                        }
                    }
                    return nil
                }
                try await withReceiver(path: socket, received: received) {
                    try await GatewayHarness.run(microsoft: url, utmstackSocket: socket, collection: Self.fast) { gw in
                        let tenants = try await onboardAll(simulator, gw)
                        let backfilled = try await eventually(timeout: .seconds(60)) {
                            expectedRecordIDs(simulator, now: Date() - 62).isSubset(of: Set(received.recordIDs))
                        }
                        #expect(backfilled)
                        // Tenant 0 keeps only Exchange, tenant 1 is disabled, tenant 2 is deleted.
                        let narrowed = try await gw.request(.PATCH, "/api/v1/tenants/\(tenants[0])", json: #"{"contentTypes": ["Audit.Exchange"]}"#)
                        #expect(narrowed.status == 200)
                        let disabled = try await gw.request(.PATCH, "/api/v1/tenants/\(tenants[1])", json: #"{"enabled": false}"#)
                        #expect(disabled.status == 200)
                        let deleted = try await gw.request(.DELETE, "/api/v1/tenants/\(tenants[2])")
                        #expect(deleted.status == 204)
                        // One lease round and the blob at hand later, nothing more arrives for what was removed...
                        try await Task.sleep(for: .seconds(3))
                        let settled = received.recordIDs.count
                        try await Task.sleep(for: .seconds(4))
                        let after = received.recordIDs.dropFirst(settled).compactMap(origin)
                        #expect(!after.isEmpty, "tenant 0's Exchange data keeps arriving")
                        #expect(after.allSatisfy { $0.tenant == 0 && $0.type == "Audit.Exchange" }, "only what is still selected: \(Set(after.map { "\($0.tenant)/\($0.type)" }))")
                        // ...and what is still selected is complete, without duplicates.
                        let exchange = simulator.generator.expectedRecordIDs(tenant: 0, contentType: "Audit.Exchange", now: Date() - 62)
                        let caughtUp = try await eventually(timeout: .seconds(20)) { exchange.isSubset(of: Set(received.recordIDs)) }
                        #expect(caughtUp)
                        let ids = received.recordIDs
                        #expect(ids.count == Set(ids).count, "no record forwarded twice: \(received.duplicateReport)")
                    }
                }
            }
        }
}
}
