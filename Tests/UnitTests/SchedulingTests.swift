import ActivityAPI
import Foundation
import GatewayCore
import Testing

@testable import Scheduling

/// The lease table in memory, updated with the same conditions the SQL uses (`WHERE fencing = expected`).
struct LeaseTable {
    var leases: [CollectionUnit: Lease]
    let ttl: TimeInterval

    init(units: [CollectionUnit], ttl: TimeInterval) {
        leases = Dictionary(uniqueKeysWithValues: units.map { ($0, Lease(unit: $0, owner: nil, expiresAt: .distantPast, fencing: 0)) })
        self.ttl = ttl
    }

    mutating func tick(_ me: String, replicas: Int, now: Date, shuttingDown: Bool = false) {
        let actions = LeaseBalancer.plan(leases: Array(leases.values), me: me, liveReplicas: replicas, now: now, shuttingDown: shuttingDown)
        for action in actions {
            switch action {
            case .renew(let unit, let fencing):
                if leases[unit]!.owner == me && leases[unit]!.fencing == fencing { leases[unit]!.expiresAt = now + ttl }
            case .acquire(let unit, let expected):
                if leases[unit]!.fencing == expected && leases[unit]!.isFree(at: now) {
                    leases[unit] = Lease(unit: unit, owner: me, expiresAt: now + ttl, fencing: expected + 1)
                }
            case .release(let unit, let fencing):
                if leases[unit]!.owner == me && leases[unit]!.fencing == fencing {
                    leases[unit]!.owner = nil
                    leases[unit]!.expiresAt = now
                }
            }
        }
    }

    func held(by owner: String, at now: Date) -> Int { leases.values.filter { $0.isHeld(by: owner, at: now) }.count }
}

@Suite struct LeaseBalancerTests {
    let units = (0..<10).flatMap { _ in [ContentType.exchange] }.enumerated().map { _, type in
        CollectionUnit(tenant: TenantID(), contentType: type)
    }
    let ttl: TimeInterval = 20
    let start = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func oneReplicaTakesEverything() {
        var table = LeaseTable(units: units, ttl: ttl)
        table.tick("a", replicas: 1, now: start)
        #expect(table.held(by: "a", at: start) == 10)
        #expect(table.leases.values.allSatisfy { $0.fencing == 1 })
    }

    @Test func replicasShareFairlyAndNeverHoldTheSameUnit() {
        var table = LeaseTable(units: units, ttl: ttl)
        var now = start
        for _ in 0..<4 {
            table.tick("a", replicas: 2, now: now)
            table.tick("b", replicas: 2, now: now)
            now += 5
        }
        #expect(table.held(by: "a", at: now) == 5 && table.held(by: "b", at: now) == 5)
    }

    @Test func aDeadReplicasUnitsMoveWithinTheTTLWithHigherFencing() {
        var table = LeaseTable(units: units, ttl: ttl)
        var now = start
        for _ in 0..<3 {
            table.tick("a", replicas: 2, now: now)
            table.tick("b", replicas: 2, now: now)
            now += 5
        }
        let bUnits = table.leases.values.filter { $0.owner == "b" }.map(\.unit)
        let fencingBefore = Dictionary(uniqueKeysWithValues: bUnits.map { ($0, table.leases[$0]!.fencing) })
        // b dies; a sees one live replica and keeps ticking every 5 s.
        let died = now
        var takenOver: Date?
        while now < died + 60 {
            table.tick("a", replicas: 1, now: now)
            if table.held(by: "a", at: now) == 10 { takenOver = now; break }
            now += 5
        }
        let moved = try! #require(takenOver)
        #expect(moved.timeIntervalSince(died) <= ttl + 5, "resumed elsewhere within the TTL plus one tick")
        for unit in bUnits { #expect(table.leases[unit]!.fencing == fencingBefore[unit]! + 1) }
        // b's late checkpoint write carries its old fencing token and is refused.
        let unit = bUnits[0]
        #expect(!CheckpointGuard.accepts(writerFencing: fencingBefore[unit]!, currentFencing: table.leases[unit]!.fencing))
        #expect(CheckpointGuard.accepts(writerFencing: table.leases[unit]!.fencing, currentFencing: table.leases[unit]!.fencing))
    }

    @Test func aJoiningReplicaGetsItsShare() {
        var table = LeaseTable(units: units, ttl: ttl)
        var now = start
        table.tick("a", replicas: 1, now: now)
        for _ in 0..<4 {
            now += 5
            table.tick("a", replicas: 3, now: now)
            table.tick("b", replicas: 3, now: now)
            table.tick("c", replicas: 3, now: now)
        }
        let counts = ["a", "b", "c"].map { table.held(by: $0, at: now) }
        #expect(counts.reduce(0, +) == 10)
        #expect(counts.max()! - counts.min()! <= 2 && counts.allSatisfy { $0 <= 4 })
    }

    @Test func shuttingDownReleasesEverything() {
        var table = LeaseTable(units: units, ttl: ttl)
        table.tick("a", replicas: 1, now: start)
        table.tick("a", replicas: 1, now: start + 1, shuttingDown: true)
        #expect(table.held(by: "a", at: start + 1) == 0)
        table.tick("b", replicas: 1, now: start + 2)
        #expect(table.held(by: "b", at: start + 2) == 10, "released units are taken at once, without waiting for expiry")
    }
}

@Suite struct CollectionPlanTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    @Test func aNewUnitBackfillsAndAKnownUnitRelistsATrailingPeriod() {
        let fresh = CollectionPlan.make(checkpoint: nil, now: now, backfill: 24 * 3600, trailingRelist: 3600)
        #expect(fresh.windows.first?.start == now.addingTimeInterval(-24 * 3600))
        #expect(fresh.checkpointAfter == now.addingTimeInterval(-60))
        #expect(fresh.windows.count == 12, "a day of backfill in 2-hour windows, so the checkpoint shows progress")
        #expect(zip(fresh.windows, fresh.windows.dropFirst()).allSatisfy { $0.end == $1.start }, "contiguous")
        let checkpoint = now.addingTimeInterval(-600)
        let known = CollectionPlan.make(checkpoint: checkpoint, now: now, backfill: 24 * 3600, trailingRelist: 3600)
        #expect(known.windows.first?.start == checkpoint.addingTimeInterval(-3600))
        #expect(known.windows.count == 1, "a routine poll lists one window")
        #expect(known.gap == nil && fresh.gap == nil)
        let ancient = CollectionPlan.make(checkpoint: now.addingTimeInterval(-30 * 86_400), now: now, backfill: 0, trailingRelist: 0)
        #expect(ancient.windows.first!.start >= now.addingTimeInterval(-7 * 86_400), "clamped inside the 7-day limit")
        #expect(ancient.gap == ContentWindow(start: now.addingTimeInterval(-30 * 86_400), end: ancient.windows.first!.start), "and the gap reported")
    }
}

/// The state shown per content type, from the stored facts.
@Suite struct UnitStateTests {
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func state(enabled: Bool = true, error: String? = nil, checkpointAgo: TimeInterval? = 30, progressAgo: TimeInterval = 10) -> UnitStatus.State {
        UnitStatus.state(
            enabled: enabled, lastErrorCode: error, checkpoint: checkpointAgo.map { now.addingTimeInterval(-$0) },
            progressAt: now.addingTimeInterval(-progressAgo), now: now, pollInterval: 60)
    }

    @Test func statesInOrderOfWhatAnOperatorMustKnowFirst() {
        #expect(state() == .ok)
        #expect(state(checkpointAgo: nil) == .backfilling)
        #expect(state(checkpointAgo: 3600) == .backfilling)
        #expect(state(error: "microsoft_unavailable") == .degraded)
        #expect(state(progressAgo: 299) == .ok, "five poll intervals of 60 s are the 5-minute floor")
        #expect(state(progressAgo: 301) == .stalled, "no progress for longer: a wedged pipeline shows")
        #expect(state(error: "microsoft_unavailable", progressAgo: 3600) == .stalled, "an error that keeps coming back stalls too")
        #expect(state(error: "client_secret_expired", progressAgo: 3600) == .authFailed, "what the admin must fix comes first")
        #expect(state(enabled: false, progressAgo: 86_400) == .disabled)
        #expect(UnitStatus.stallAfter(pollInterval: 600) == 3000)
    }
}
