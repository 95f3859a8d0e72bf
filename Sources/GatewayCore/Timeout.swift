public struct TimeoutError: Error, CustomStringConvertible {
    public init() {}
    public var description: String { "timed out" }
}

/// Runs `body`, failing with ``TimeoutError`` when it takes longer than `limit`.
public func withTimeout<R: Sendable>(
    _ limit: Duration, _ body: @escaping @Sendable () async throws -> R
) async throws -> R {
    try await withThrowingTaskGroup(of: R.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            throw TimeoutError()
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}

extension Duration {
    /// The duration in seconds, with its fraction.
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
