import Foundation
import GatewayCore

/// One unit of collection work: a (tenant, content type) pair.
public struct CollectionUnit: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var tenant: TenantID
    public var contentType: ContentType

    public init(tenant: TenantID, contentType: ContentType) {
        self.tenant = tenant
        self.contentType = contentType
    }

    public static func < (a: CollectionUnit, b: CollectionUnit) -> Bool {
        (a.tenant.description, a.contentType) < (b.tenant.description, b.contentType)
    }

    public var description: String { "\(tenant)/\(contentType.rawValue)" }
}

/// A lease as stored: who holds the unit until when, and its fencing token, which grows on every takeover so a
/// checkpoint written by a stale owner can be refused.
public struct Lease: Sendable, Equatable {
    public var unit: CollectionUnit
    public var owner: String?
    public var expiresAt: Date
    public var fencing: Int64

    public init(unit: CollectionUnit, owner: String?, expiresAt: Date, fencing: Int64) {
        self.unit = unit
        self.owner = owner
        self.expiresAt = expiresAt
        self.fencing = fencing
    }

    public func isHeld(by owner: String, at now: Date) -> Bool { self.owner == owner && expiresAt > now }
    public func isFree(at now: Date) -> Bool { owner == nil || expiresAt <= now }
}

/// What a replica does with its leases on one tick. Executed against PostgreSQL with conditional updates
/// (`WHERE fencing = expected`), so two replicas racing for one unit cannot both win.
public enum LeaseAction: Sendable, Equatable {
    /// Extend a lease this replica holds.
    case renew(CollectionUnit, fencing: Int64)
    /// Take a free or expired unit: the stored fencing must still be `expectedFencing`; it becomes +1.
    case acquire(CollectionUnit, expectedFencing: Int64)
    /// Hand a unit back (over the fair share, or shutting down) after its collector stopped.
    case release(CollectionUnit, fencing: Int64)
}

/// The scheduling rule, as a pure function of the lease table: every replica aims at a fair share,
/// `ceil(units / live replicas)`; it renews what it holds up to that share, releases the rest, and acquires free
/// or expired units (lowest first, so replicas converge) until it reaches the share. A replica that dies stops
/// renewing; its leases expire after the TTL and the others take them on their next tick.
public enum LeaseBalancer {
    public static func plan(leases: [Lease], me: String, liveReplicas: Int, now: Date, shuttingDown: Bool = false) -> [LeaseAction] {
        let share = fairShare(units: leases.count, replicas: liveReplicas)
        // Sorted only where the order decides something (which to release, which to take): this runs every round
        // over tens of thousands of units.
        var held = leases.filter { $0.isHeld(by: me, at: now) }
        if shuttingDown { return held.map { .release($0.unit, fencing: $0.fencing) } }
        if held.count > share { held.sort { $0.unit < $1.unit } }
        var actions: [LeaseAction] = []
        for (index, lease) in held.enumerated() {
            actions.append(index < share ? .renew(lease.unit, fencing: lease.fencing) : .release(lease.unit, fencing: lease.fencing))
        }
        let room = share - min(held.count, share)
        guard room > 0 else { return actions }
        var free = leases.filter { $0.isFree(at: now) }
        if free.count > room { free.sort { $0.unit < $1.unit } }
        for lease in free.prefix(room) {
            actions.append(.acquire(lease.unit, expectedFencing: lease.fencing))
        }
        return actions
    }

    public static func fairShare(units: Int, replicas: Int) -> Int {
        guard units > 0 else { return 0 }
        let live = max(1, replicas)
        return (units + live - 1) / live
    }
}

/// A checkpoint write carries the writer's fencing token; the store keeps it only when the token is still current.
public enum CheckpointGuard {
    public static func accepts(writerFencing: Int64, currentFencing: Int64) -> Bool { writerFencing == currentFencing }
}
