import GatewayCore
import Testing

/// `deadlineSleep` stands in for `Task.sleep` under every deadline: it must wake on time and end at once, with
/// `CancellationError`, when its task is cancelled, before or while it waits.
@Suite(.timeLimit(.minutes(1))) struct TimeoutTests {
    @Test func aDeadlineWakesOnTime() async throws {
        let start = ContinuousClock.now
        try await deadlineSleep(for: .milliseconds(50))
        #expect(ContinuousClock.now - start >= .milliseconds(50))
    }

    @Test func aCancelledWaitEndsAtOnce() async throws {
        let waiting = Task { try await deadlineSleep(for: .seconds(3600)) }
        try await Task.sleep(for: .milliseconds(20))
        waiting.cancel()
        await #expect(throws: CancellationError.self) { try await waiting.value }
    }

    @Test func aWaitCancelledBeforeItStartsDoesNotWait() async throws {
        let waiting = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await deadlineSleep(for: .seconds(3600))
        }
        await #expect(throws: CancellationError.self) { try await waiting.value }
    }

    @Test func withTimeoutFailsAfterItsLimitAndReturnsWhatEndsFirst() async throws {
        await #expect(throws: TimeoutError.self) {
            try await withTimeout(.milliseconds(20)) { try await deadlineSleep(for: .seconds(3600)) }
        }
        #expect(try await withTimeout(.seconds(3600)) { 42 } == 42)
    }
}
