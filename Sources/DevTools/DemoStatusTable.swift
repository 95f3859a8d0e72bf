import Foundation
import GatewayApp
import GatewayCore
import Logging
import PostgresStorage
import ServiceLifecycle
import UTMStackReceiver

/// The demo's live view: per tenant, the destination (local UTMStack receiver) its records reached, how many,
/// records per second, and the collection lag (now − the oldest checkpoint of its content types).
public struct DemoStatusTable: Service {
    /// Each destination's name and what its receiver got.
    let receivers: [(name: String, received: ReceivedLogs)]
    let database: DatabaseURL
    let interval: Duration
    let logger: Logger

    public init(receivers: [(name: String, received: ReceivedLogs)], database: DatabaseURL, interval: Duration = .seconds(5), logger: Logger) {
        self.receivers = receivers
        self.database = database
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        try await Gateway.withDatabase(database, logger: logger) { database in
            let store = PostgresCollectionStore(database: database, logger: logger)
            var last: [String: Int] = [:]
            @Sendable func counts() -> (total: [String: Int], destinations: [String: String]) {
                var total: [String: Int] = [:]
                var destinations: [String: String] = [:]
                for (destination, received) in receivers {
                    for (name, count) in received.snapshot.byDataSource {
                        total[name, default: 0] += count
                        destinations[name] = destinations[name].map { "\($0),\(destination)" } ?? destination
                    }
                }
                return (total, destinations)
            }
            var lastTime = ContinuousClock.now
            while !Task.isShuttingDownGracefully && !Task.isCancelled {
                guard (try? await cancelWhenGracefulShutdown({ try await Task.sleep(for: interval) })) != nil else { return }
                let now = ContinuousClock.now
                let seconds = max(0.001, (now - lastTime).seconds)
                lastTime = now
                let (counts, destinations) = counts()
                let units = (try? await store.unitsWithNames()) ?? []
                var lines = [Self.row("tenant", "destination", "records", "records/s", "lag")]
                for name in Set(units.map(\.name)).union(counts.keys).sorted() {
                    let total = counts[name] ?? 0
                    let rate = Double(total - (last[name] ?? 0)) / seconds
                    let checkpoints = units.filter { $0.name == name }.map(\.checkpoint)
                    let lag = checkpoints.contains(nil) || checkpoints.isEmpty
                        ? "backfilling" : "\(Int(Date().timeIntervalSince(checkpoints.compactMap { $0 }.min()!)))s"
                    lines.append(Self.row(name, destinations[name] ?? "-", "\(total)", String(format: "%.0f", rate), lag))
                }
                last = counts
                let total = counts.values.reduce(0, +)
                lines.append(Self.row("all", "", "\(total)", "", ""))
                FileHandle.standardOutput.write(Data(("\n" + lines.joined(separator: "\n") + "\n").utf8))
            }
        }
    }

    static func row(_ tenant: String, _ destination: String, _ records: String, _ rate: String, _ lag: String) -> String {
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? String(s.prefix(n)) : s + String(repeating: " ", count: n - s.count) }
        return pad(tenant, 24) + pad(destination, 14) + pad(records, 12) + pad(rate, 12) + lag
    }
}
