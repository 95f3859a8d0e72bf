import Foundation
import GatewayCore
import Logging
import UTMStackForwarder
import UTMStackReceiver

/// A short, unique Unix socket path (paths are limited to 107 bytes).
func temporarySocketPath() -> String {
    "/tmp/o365gw-\(UUID().uuidString.prefix(8).lowercased())/engine.sock"
}

/// Another socket in the directory of `socket`: where the gateway allows destinations' sockets by default.
func siblingSocketPath(of socket: String, _ name: String) -> String {
    (socket as NSString).deletingLastPathComponent + "/\(name).sock"
}

/// Runs a receiver on `path` for the duration of `body`; cancelling it stops it abruptly (an engine crash).
func withReceiver<R: Sendable>(
    path: String, received: ReceivedLogs, ackDelay: Duration = .zero,
    _ body: @escaping @Sendable () async throws -> R
) async throws -> R {
    let receiver = EngineReceiver(socketPath: path, received: received, ackDelay: ackDelay, logger: quietLogger)
    return try await withThrowingTaskGroup(of: R?.self) { group in
        group.addTask { try await receiver.run(); return nil }
        try await waitForFile(path)
        group.addTask { try await body() }
        defer { group.cancelAll() }
        while let result = try await group.next() {
            if let result { return result }
        }
        throw CancellationError()
    }
}

/// Runs a forwarder for the duration of `body`.
func withForwarder<R: Sendable>(
    _ configuration: ForwarderConfiguration, deadLetters: any DeadLetterStore = MemoryDeadLetterStore(),
    _ body: @Sendable (UTMStackForwarder) async throws -> R
) async throws -> R {
    let forwarder = UTMStackForwarder(configuration: configuration, deadLetters: deadLetters, logger: quietLogger)
    return try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await forwarder.run() }
        defer { group.cancelAll() }
        return try await body(forwarder)
    }
}

func waitForFile(_ path: String, timeout: Duration = .seconds(10)) async throws {
    let deadline = ContinuousClock.now + timeout
    while !FileManager.default.fileExists(atPath: path) {
        guard ContinuousClock.now < deadline else {
            throw GatewayError(.unavailable, code: "timeout", "\(path) did not appear")
        }
        try await Task.sleep(for: .milliseconds(10))
    }
}

/// Polls `condition` until it holds or the timeout passes.
func eventually(timeout: Duration = .seconds(20), _ condition: @Sendable () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(20))
    }
    return try await condition()
}

/// Logs shaped from synthetic records of one tenant.
func syntheticLogs(_ range: Range<Int>, tenant: TenantID = TenantID(), rawSize: Int = 200) -> [OutboundLog] {
    let route = TenantRoute(tenantID: tenant, utmTenantID: "utm-tenant", dataSource: "Contoso")
    return range.map { i in
        let id = String(format: "%08d-0000-4000-8000-000000000000", i)
        let padding = String(repeating: "p", count: max(0, rawSize - 90))
        let raw = #"{"Id":"\#(id)","CreationTime":"2026-11-01T10:00:00","N":\#(i),"Pad":"\#(padding)"}"#
        return EventShaper.log(
            AuditRecord(id: id, creationTime: "2026-11-01T10:00:00", raw: raw), route: route,
            fallbackTimestamp: "2026-11-01T11:00:00.000Z")
    }
}
