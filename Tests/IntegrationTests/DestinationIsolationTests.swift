import Collection
import Foundation
import GatewayApp
import GatewayCore
import MicrosoftSimulator
import Testing

/// Two UTMStack destinations (two grpc-go engines), a tenant on each (issue 15): when one engine is stopped or
/// frozen, only its tenant waits; the other keeps its poll interval, `/readyz` stays ready, and once the engine is
/// back its tenant's records all arrive there, and only there.
extension EndToEndTests {
    @Suite(.timeLimit(.minutes(4))) struct DestinationIsolationTests {
        enum Failure: String, CaseIterable, Sendable { case stopped, frozen }

        /// Two workers for ten units: without isolation, the polls of the tenant whose engine is down take both and
        /// wait for acknowledgements that never come, and the other tenant is not polled at all.
        // A backfill well beyond the 65 s of history: a first poll delayed by a loaded machine still lists its start.
        static let settings = CollectionSettings(
            pollInterval: .milliseconds(500), backfill: 600, trailingRelist: 0, workers: 2, leaseTTL: 20, tick: .milliseconds(200))

        /// A destination that acknowledges nothing for 2 s is unavailable; a PING unanswered for a second gives a
        /// frozen connection up.
        @Sendable static func fastDeadlines(_ configuration: inout GatewayConfiguration) {
            configuration.forwarder.ackTimeout = .seconds(2)
            configuration.forwarder.keepaliveInterval = .seconds(1)
            configuration.forwarder.keepaliveTimeout = .seconds(1)
        }

        @Test(arguments: Failure.allCases)
        func aDestinationDownOrHungHoldsBackOnlyItsOwnTenants(_ failure: Failure) async throws {
            let simulated = SimulatorConfiguration.steady(tenants: 2, seed: 89, history: 65.0 / 3600, interval: 2, records: 3, live: true)
            let socketDefault = temporarySocketPath()
            let socketEU = siblingSocketPath(of: socketDefault, "eu")
            let eu = try await GoEngine.start(socket: socketEU)
            defer { eu.stop() }
            let main = try await GoEngine.start(socket: socketDefault)
            defer { main.stop() }
            try await withSimulator(simulated) { simulator, url in
                try await GatewayHarness.run(
                    microsoft: url, utmstackSocket: socketDefault, collection: Self.settings, adjust: Self.fastDeadlines
                ) { gw in
                    let created = try await gw.request(
                        .POST, "/api/v1/destinations", json: #"{"name": "eu", "kind": "socket", "socketPath": "\#(socketEU)"}"#)
                    try #require(created.status == 201, "\(created.body)")
                    let tenants = simulator.configuration.tenants
                    var onboarded: [String] = []
                    for (index, tenant) in tenants.enumerated() {
                        let response = try await gw.request(
                            .POST, "/api/v1/tenants",
                            json: tenantBody(tenantId: tenant.tenantId.uuidString, secret: tenant.clientSecret!, [
                                "clientId": tenant.clientId.uuidString, "name": tenant.name,
                                "destination": index == 0 ? "eu" : "default",
                            ]))
                        try #require(response.status == 201, "\(response.body)")
                        onboarded.append(try #require(response.json["id"] as? String))
                    }
                    let ids = onboarded
                    @Sendable func expected(_ tenant: Int, listableBefore lag: TimeInterval) -> Set<String> {
                        ContentGenerator.contentTypes.reduce(into: Set<String>()) { all, type in
                            all.formUnion(simulator.generator.expectedRecordIDs(tenant: tenant, contentType: type, now: Date() - lag))
                        }
                    }
                    @Sendable func records(_ engine: GoEngine) -> [String] { engine.lines.filter { $0.kind == "log" }.map(\.recordID) }
                    let caughtUp = try await eventually(timeout: .seconds(60)) {
                        Set(records(eu)).isSuperset(of: expected(0, listableBefore: 62))
                            && Set(records(main)).isSuperset(of: expected(1, listableBefore: 62))
                    }
                    try #require(caughtUp, "both tenants collected before the failure")

                    switch failure {
                    case .stopped: eu.stop()
                    case .frozen: eu.freeze()
                    }
                    let failedAt = ContinuousClock.now
                    // Its tenant's units say why, naming the destination; the destination's state says it too.
                    let degraded = try await eventually(timeout: .seconds(30)) {
                        let status = try await gw.request(.GET, "/api/v1/tenants/\(ids[0])").json["status"] as? [[String: Any]] ?? []
                        return status.count == 5 && status.allSatisfy {
                            let error = $0["lastError"] as? [String: Any]
                            return $0["state"] as? String == "degraded" && error?["code"] as? String == "utmstack_unavailable"
                                && (error?["advice"] as? String)?.contains("destination eu") == true
                        }
                    }
                    #expect(degraded, "the eu tenant's units are degraded with utmstack_unavailable naming eu")
                    let state = try await gw.request(.GET, "/api/v1/destinations/eu").json["state"] as? [String: Any]
                    #expect(state?["connection"] as? String == "unavailable", "\(state ?? [:])")
                    // In fixed words: never the error's description (the socket's path, the service's name).
                    let lastFailure = try #require(state?["lastFailure"] as? String, "\(state ?? [:])")
                    #expect(DestinationHealth.Failure(rawValue: lastFailure) != nil && !lastFailure.contains("/"), "\(lastFailure)")
                    let healthy = try await gw.request(.GET, "/api/v1/destinations/default").json["state"] as? [String: Any]
                    #expect(healthy?["connection"] as? String != "unavailable", "\(healthy ?? [:])")
                    #expect(try await gw.request(.GET, "/readyz", auth: .none).status == 200, "one destination down is no reason to be unready")

                    // The other tenant kept its poll interval: 20 s into the outage, what became listable up to
                    // 10 s ago has arrived (without isolation it stops at what was listable at the failure).
                    try await Task.sleep(until: failedAt + .seconds(20))
                    let kept = expected(1, listableBefore: 72)
                    let missing = kept.subtracting(records(main))
                    #expect(missing.isEmpty, "\(missing.count) of \(kept.count) records of the default tenant missing during the eu outage")

                    let atFailure = records(eu)
                    let back: GoEngine
                    switch failure {
                    case .stopped: back = try await GoEngine.start(socket: socketEU)
                    case .frozen:
                        eu.thaw()
                        back = eu
                    }
                    defer { back.stop() }
                    @Sendable func arrived() -> [String] { failure == .stopped ? atFailure + records(back) : records(back) }
                    let complete = try await eventually(timeout: .seconds(90)) {
                        Set(arrived()).isSuperset(of: expected(0, listableBefore: 62))
                    }
                    #expect(complete, "\(expected(0, listableBefore: 62).subtracting(arrived()).count) records of the eu tenant missing after it came back")
                    let euTenant = expected(0, listableBefore: 0)
                    let mainTenant = expected(1, listableBefore: 0)
                    #expect(arrived().allSatisfy { euTenant.contains($0) }, "only the eu tenant's records reach eu")
                    #expect(records(main).allSatisfy { mainTenant.contains($0) }, "only the default tenant's records reach default")
                    #expect(records(main).count == Set(records(main)).count, "nothing twice at the destination that stayed up")
                    // Polls that gave up withdrew what they had queued, and no connection opens on an engine that
                    // does not start HTTP/2: only logs already written to the failed connection can come twice (a
                    // killed engine's last blob per unit; a frozen one also reads what reached its socket until the
                    // keepalive gave the connection up, about one more blob per unit).
                    let twice = arrived().count - Set(arrived()).count
                    #expect(twice <= (failure == .stopped ? 15 : 30), "\(twice) records of the eu tenant arrived twice")
                    print("destination \(failure.rawValue): \(atFailure.count) records at eu before, \(twice) twice, \(kept.count) default records on time")
                }
            }
        }
    }
}
