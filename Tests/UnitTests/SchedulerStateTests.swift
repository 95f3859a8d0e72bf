import Foundation
import GatewayCore
import Scheduling
import Testing

@testable import Collection

/// The scheduler's bookkeeping of held units: workers bound concurrent polls, a unit being handed over gets no new
/// poll, a lost unit's running poll is told to stop.
@Suite struct SchedulerStateTests {
    let units = (0..<5).map { _ in CollectionUnit(tenant: TenantID(UUID()), contentType: .exchange) }

    func holding(_ count: Int) -> SchedulerState {
        var state = SchedulerState()
        _ = state.apply(renewed: [], handOver: [], released: [], acquired: units.prefix(count).map { ($0, 1) }, validUntil: .now + .seconds(20))
        return state
    }

    /// Due units come from a queue (a poll's dispatch must not cost a pass over 50,000 units): most overdue first,
    /// each once, and a lease round that rebuilds the queue never hands out a unit whose poll is running.
    @Test func dueUnitsComeMostOverdueFirstAndOnlyOnce() {
        var state = SchedulerState()
        let many = (0..<50).map { _ in CollectionUnit(tenant: TenantID(UUID()), contentType: .exchange) }
        _ = state.apply(renewed: [], handOver: [], released: [], acquired: many.map { ($0, 1) }, validUntil: .now + .seconds(60))
        let all = state.takeDue(now: .now, workers: 100)
        #expect(Set(all.map(\.0)) == Set(many))
        // The later a poll ended, the sooner it is due again (each is due 1 ms earlier than the one before).
        for (index, (unit, _)) in all.enumerated() { state.finished(unit, next: .milliseconds(50 - index)) }
        let later = ContinuousClock.now + .seconds(1)
        let again = state.takeDue(now: later, workers: 10)
        #expect(again.map(\.0) == all.suffix(10).reversed().map(\.0))
        _ = state.apply(renewed: many.map { ($0, 1) }, handOver: [], released: [], acquired: [], validUntil: .now + .seconds(60))
        let rest = state.takeDue(now: later, workers: 100)
        #expect(rest.count == 40 && Set(rest.map(\.0)).isDisjoint(with: again.map(\.0)), "the 10 running are not handed out twice")
        #expect(state.takeDue(now: later, workers: 100).isEmpty)
    }

    @Test func workersBoundConcurrentPollsAndEveryUnitGetsItsTurn() {
        var state = holding(5)
        let first = state.takeDue(now: .now, workers: 2)
        #expect(first.count == 2)
        #expect(state.takeDue(now: .now, workers: 2).isEmpty, "no worker free")
        for (unit, _) in first { state.finished(unit, next: .seconds(10)) }
        let second = state.takeDue(now: .now, workers: 2)
        #expect(second.count == 2)
        #expect(Set(second.map(\.0)).isDisjoint(with: first.map(\.0)), "units polled already wait for their interval")
        for (unit, _) in second { state.finished(unit, next: .seconds(10)) }
        #expect(state.takeDue(now: .now, workers: 2).count == 1)
        #expect(state.takeDue(now: .now + .seconds(11), workers: 8).count == 4, "due again after the poll interval")
    }

    @Test func aUnitHandedOverStopsAndGetsNoNewPoll() {
        var state = holding(2)
        let running = state.takeDue(now: .now, workers: 1)
        let unit = running[0].0
        #expect(state.shouldContinue(unit, fencing: 1))
        _ = state.apply(renewed: units.prefix(2).map { ($0, 1) }, handOver: [unit], released: [], acquired: [], validUntil: .now + .seconds(20))
        #expect(!state.shouldContinue(unit, fencing: 1), "the running poll stops at its next blob")
        state.finished(unit, next: .zero)
        #expect(!state.takeDue(now: .now + .seconds(1), workers: 4).contains { $0.0 == unit })
    }

    @Test func aLostUnitIsReportedAndItsPollStopped() {
        var state = holding(2)
        let running = state.takeDue(now: .now, workers: 2)
        #expect(running.count == 2)
        // Only the first lease was renewed: the second went to another replica (higher fencing there).
        let lost = state.apply(renewed: [(units[0], 1)], handOver: [], released: [], acquired: [], validUntil: .now + .seconds(20))
        #expect(lost == [units[1]])
        #expect(!state.shouldContinue(units[1], fencing: 1))
        #expect(state.runningCount == 2, "its poll still runs until it returns")
        state.finished(units[1], next: .seconds(1))
        #expect(state.units[units[1]] == nil)
        #expect(state.shouldContinue(units[0], fencing: 1))
    }

    @Test func pollsStopBeforeTheLeaseCouldExpire() {
        var state = holding(1)
        state.margin = .seconds(5)
        _ = state.apply(renewed: [(units[0], 1)], handOver: [], released: [], acquired: [], validUntil: .now + .seconds(4))
        #expect(!state.shouldContinue(units[0], fencing: 1), "within the margin of expiry: stop")
        #expect(state.takeDue(now: .now, workers: 4).isEmpty, "and start nothing")
        _ = state.apply(renewed: [(units[0], 1)], handOver: [], released: [], acquired: [], validUntil: .now + .seconds(20))
        #expect(state.shouldContinue(units[0], fencing: 1))
    }

    @Test func aUnitTakenBackWhileItsOldPollRunsGetsNoSecondPoll() {
        var state = holding(1)
        #expect(state.takeDue(now: .now, workers: 4).count == 1)
        // The lease expired and this replica acquired it again (fencing 2) while the old poll still runs.
        _ = state.apply(renewed: [], handOver: [], released: [], acquired: [(units[0], 2)], validUntil: .now + .seconds(20))
        #expect(!state.shouldContinue(units[0], fencing: 1))
        #expect(state.takeDue(now: .now, workers: 4).isEmpty)
        state.finished(units[0], next: .zero)
        #expect(state.takeDue(now: .now, workers: 4).map(\.1) == [2])
    }

    @Test func releasedUnitsAreNotReportedLostAndShutdownStopsEverything() {
        var state = holding(2)
        let lost = state.apply(renewed: [(units[0], 1)], handOver: [], released: [units[1]], acquired: [], validUntil: .now + .seconds(20))
        #expect(lost.isEmpty)
        state.stopping = true
        #expect(!state.shouldContinue(units[0], fencing: 1))
    }
}

/// `forwarded_records` keeps these hashes across releases: a change would forward every remembered record again.
@Suite struct RecordHashTests {
    @Test func recordHashesArePinned() {
        // Pinned to Python's hashlib (an independent implementation): the first 8 bytes of SHA-256, big-endian.
        #expect(Collector.hash("80c76bd2-9d81-4c57-a97a-accfc3443dca") == 6_979_503_704_974_020_647)
        #expect(Collector.hash("Ünïcode-ID") == -3_070_781_339_827_172_861)
    }
}
