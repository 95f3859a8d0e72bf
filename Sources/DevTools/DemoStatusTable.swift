import Foundation
import GatewayApp
import GatewayCore
import Logging
import PostgresStorage
import ServiceLifecycle
import UTMStackReceiver

/// The demo's live view: per tenant, records received by the local UTMStack receiver, records per second, and the
/// collection lag (now − the oldest checkpoint of its content types).
public struct DemoStatusTable: Service {
    let received: ReceivedLogs
    let database: DatabaseURL
    let interval: Duration
    let logger: Logger

    public init(received: ReceivedLogs, database: DatabaseURL, interval: Duration = .seconds(5), logger: Logger) {
        self.received = received
        self.database = database
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        try await Gateway.withDatabase(database, logger: logger) { database in
            let store = PostgresCollectionStore(database: database, logger: logger)
            var last: [String: Int] = [:]
            var lastTime = ContinuousClock.now
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                guard (try? await cancelWhenGracefulShutdown({ try await Task.sleep(for: interval) })) != nil else { return }
                let now = ContinuousClock.now
                let seconds = max(0.001, (now - lastTime).seconds)
                lastTime = now
                let counts = received.snapshot.byDataSource
                let units = (try? await store.unitsWithNames()) ?? []
                var lines = [Self.row("tenant", "records", "records/s", "lag")]
                for name in Set(units.map(\.name)).union(counts.keys).sorted() {
                    let total = counts[name] ?? 0
                    let rate = Double(total - (last[name] ?? 0)) / seconds
                    let checkpoints = units.filter { $0.name == name }.map(\.checkpoint)
                    let lag = checkpoints.contains(nil) || checkpoints.isEmpty
                        ? "backfilling" : "\(Int(Date().timeIntervalSince(checkpoints.compactMap { $0 }.min()!)))s"
                    lines.append(Self.row(name, "\(total)", String(format: "%.0f", rate), lag))
                }
                last = counts
                let total = counts.values.reduce(0, +)
                lines.append(Self.row("all", "\(total)", "", ""))
                FileHandle.standardOutput.write(Data(("\n" + lines.joined(separator: "\n") + "\n").utf8))
            }
        }
    }

    static func row(_ a: String, _ b: String, _ c: String, _ d: String) -> String {
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? String(s.prefix(n)) : s + String(repeating: " ", count: n - s.count) }
        return pad(a, 24) + pad(b, 12) + pad(c, 12) + d
    }
}
