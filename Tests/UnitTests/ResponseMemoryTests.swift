import Synchronization
import Testing

@testable import ActivityAPI

/// The process-wide budget for fetched blobs: bounded by bytes, and never a deadlock between fetches that each
/// hold part of it.
@Suite struct ResponseMemoryTests {
    @Test func withinTheBudgetNothingWaitsAndReleaseGivesItBack() async throws {
        let budget = ResponseMemoryBudget(limit: 100)
        let claim = budget.claim()
        try await claim.acquire(60)
        claim.finishReceiving()
        let other = budget.claim()
        try await other.acquire(40)
        #expect(budget.used == 100)
        claim.release()
        #expect(budget.used == 40)
        claim.release()
        #expect(budget.used == 40, "releasing twice gives back nothing more")
        withExtendedLifetime(other) {}
        try await budget.claim().acquire(10)
        #expect(budget.used == 40, "a claim dropped gives its bytes back")
    }

    /// Two fetches each hold half and both need more: the older one takes the overdraft and goes on (over the
    /// budget) until it is released; then the younger may take it. Without that exception both would wait for ever;
    /// with more than one overdraft at a time, memory would not be bounded.
    @Test func theOldestFetchStillReceivingTakesTheOneOverdraft() async throws {
        let budget = ResponseMemoryBudget(limit: 100)
        let older = budget.claim()
        let younger = budget.claim()
        try await older.acquire(50)
        try await younger.acquire(50)
        let youngerDone = Flag()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await younger.acquire(30)
                youngerDone.set()
            }
            try await older.acquire(30)
            #expect(budget.used == 130, "the oldest overdraws")
            older.finishReceiving()
            try await Task.sleep(for: .milliseconds(50))
            #expect(!youngerDone.isSet, "the younger, now the oldest receiving, still waits: the overdraft is taken")
            older.release()
            // The overdraft is free, and the younger may take it.
            try await group.waitForAll()
            #expect(youngerDone.isSet && budget.used == 80)
            younger.release()
            #expect(budget.used == 0)
        }
    }

    @Test func aWaiterIsGrantedWhenBytesAreReleased() async throws {
        let budget = ResponseMemoryBudget(limit: 100)
        let first = budget.claim()
        try await first.acquire(90)
        let second = budget.claim()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await second.acquire(50) }
            try await Task.sleep(for: .milliseconds(50))
            #expect(budget.used == 90, "the second waits while the first, older, still receives")
            first.release()
            try await group.waitForAll()
            #expect(budget.used == 50)
        }
    }

    @Test func aWaitingFetchCanBeCancelled() async throws {
        let budget = ResponseMemoryBudget(limit: 10)
        let first = budget.claim()
        try await first.acquire(10)
        let second = budget.claim()
        let task = Task { try await second.acquire(5) }
        try await Task.sleep(for: .milliseconds(50))
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(budget.used == 10)
    }
}

final class Flag: Sendable {
    private let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}
