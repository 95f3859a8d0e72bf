import Dispatch
import Synchronization

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
            try await deadlineSleep(for: limit)
            throw TimeoutError()
        }
        defer { group.cancelAll() }
        return try await group.next()!
    }
}

/// Sleeps for `duration`, or until the task is cancelled (then throws `CancellationError`), like `Task.sleep`, for
/// the waits that are almost always cancelled: deadlines on work that normally ends first.
///
/// A cancelled `Task.sleep` keeps its timer, a task and a dispatch source of about 150 bytes, until the time it
/// was to wake (swiftlang/swift#60441). A deadline on every database operation, at a thousand operations a second
/// with a 10 s limit, held ten thousand of them. This wait's dispatch timer is cancelled, and freed, with it.
public func deadlineSleep(for duration: Duration) async throws {
    let wait = DeadlineWait()
    try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            wait.start(duration, continuation)
        }
    } onCancel: {
        wait.finish(CancellationError())
    }
}

private final class DeadlineWait: Sendable {
    private enum State {
        case idle
        case waiting(CheckedContinuation<Void, any Error>, UncheckedTimer)
        case cancelled
        case finished
    }

    /// A dispatch timer source: thread-safe, but not marked `Sendable`.
    private struct UncheckedTimer: @unchecked Sendable { let source: any DispatchSourceTimer }

    private let state = Mutex(State.idle)

    func start(_ duration: Duration, _ continuation: CheckedContinuation<Void, any Error>) {
        let (seconds, attoseconds) = duration.components
        let nanoseconds = max(0, seconds) * 1_000_000_000 + max(0, attoseconds) / 1_000_000_000
        // Made only when the wait is not cancelled yet: a dispatch source must not be released before it runs.
        let timer = state.withLock { state -> (any DispatchSourceTimer)? in
            guard case .idle = state else { return nil }
            let source = DispatchSource.makeTimerSource(queue: .global())
            source.schedule(deadline: .now() + .nanoseconds(Int(clamping: nanoseconds)), leeway: .milliseconds(10))
            source.setEventHandler { [self] in finish(nil) }
            state = .waiting(continuation, UncheckedTimer(source: source))
            return source
        }
        if let timer { timer.resume() } else { continuation.resume(throwing: CancellationError()) }
    }

    /// Ends the wait: on time (`error` nil) or cancelled.
    func finish(_ error: (any Error)?) {
        let waiting = state.withLock { state -> (CheckedContinuation<Void, any Error>, UncheckedTimer)? in
            switch state {
            case .idle:
                state = .cancelled
                return nil
            case .waiting(let continuation, let timer):
                state = .finished
                return (continuation, timer)
            case .cancelled, .finished:
                return nil
            }
        }
        guard let (continuation, timer) = waiting else { return }
        timer.source.cancel()
        if let error { continuation.resume(throwing: error) } else { continuation.resume() }
    }
}

extension Duration {
    /// The duration in seconds, with its fraction.
    public var seconds: Double { Double(components.seconds) + Double(components.attoseconds) / 1e18 }
}
