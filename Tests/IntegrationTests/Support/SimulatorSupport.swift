import ActivityAPI
import Foundation
import GatewayCore
import Logging
import MicrosoftSimulator

/// Runs a simulator on an ephemeral loopback port for the duration of `body`.
func withSimulator<R: Sendable>(
    _ configuration: SimulatorConfiguration, startedAt: Date = Date(),
    _ body: @escaping @Sendable (MicrosoftSimulator, URL) async throws -> R
) async throws -> R {
    let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
    let simulator = MicrosoftSimulator(
        configuration: configuration, startedAt: startedAt, logger: quietLogger, onListening: { continuation.yield($0) })
    return try await withThrowingTaskGroup(of: R?.self) { group in
        group.addTask { try await simulator.run(); return nil }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else { throw CancellationError() }
        let url = URL(string: "http://127.0.0.1:\(port)")!
        group.addTask { try await body(simulator, url) }
        defer { group.cancelAll() }
        while let result = try await group.next() {
            if let result { return result }
        }
        throw CancellationError()
    }
}

func activityClient(requestsPerMinute: Int = 60_000) -> ActivityClient {
    let exchange = AsyncHTTPExchange(timeoutSeconds: 20)
    return ActivityClient(
        exchange: exchange, tokens: TokenProvider(exchange: exchange, logger: quietLogger),
        configuration: .init(requestsPerMinute: requestsPerMinute), logger: quietLogger)
}

func simulatedAuth(_ tenant: SimulatorConfiguration.Tenant, _ url: URL, credential: Credential? = nil) -> TenantAuth {
    TenantAuth(
        tenant: TenantID(tenant.tenantId), microsoftTenantID: tenant.tenantId, clientID: tenant.clientId,
        cloud: .commercial, credential: credential ?? .clientSecret(Secret(tenant.clientSecret ?? "")),
        endpoints: .forCloud(.commercial, overrides: .init(login: url, manage: url, graph: url)),
        publisherID: UUID(uuidString: "a1b2c3d4-0000-4000-8000-000000000001"))
}

/// Lists and fetches everything of one content type the way a collector does, returning every record.
func collectAll(
    _ client: ActivityClient, _ auth: TenantAuth, _ type: ContentType, from: Date, until: Date
) async throws -> (records: [AuditRecord], skipped: Int) {
    var records: [AuditRecord] = []
    var skipped = 0
    for window in ContentWindows.plan(from: from, now: until, endLag: 0) {
        for blob in try await client.listContent(auth, type, window: window) {
            switch try await client.fetchBlob(auth, blob) {
            case .records(let got): records += got
            case .skipped: skipped += 1
            }
        }
    }
    return (records, skipped)
}

extension SimulatorConfiguration {
    /// Simulated content for end-to-end tests: `tenants` generated tenants, a blob per content type every `interval`
    /// seconds over `history` hours, each of `records` records, listable at once, with no late blobs and no repeated
    /// records (tests that want those traps set them).
    static func steady(tenants: Int, seed: UInt64, history: Double, interval: Int, records: Int, live: Bool = false) -> SimulatorConfiguration {
        var simulated = SimulatorConfiguration.generated(tenants: tenants, seed: seed)
        simulated.historyHours = history
        simulated.blobIntervalSeconds = interval
        simulated.recordsPerBlob = records
        simulated.duplicateFraction = 0
        simulated.lateFraction = 0
        simulated.latencySeconds = 0
        simulated.live = live
        return simulated
    }
}
