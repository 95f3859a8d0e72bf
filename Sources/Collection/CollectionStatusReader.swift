import Foundation
import GatewayCore
import PostgresStorage

/// The per-content-type status shown by `GET /api/v1/tenants/{id}`.
public struct CollectionStatusReader: CollectionStatusSource {
    let store: PostgresCollectionStore
    let deadLetters: any DeadLetterStore
    let pollInterval: TimeInterval

    public init(store: PostgresCollectionStore, deadLetters: any DeadLetterStore, pollInterval: Duration) {
        self.store = store
        self.deadLetters = deadLetters
        self.pollInterval = pollInterval.seconds
    }

    public func status(of tenant: Tenant) async throws -> [UnitStatus] {
        let rows = try await store.units(of: tenant.id)
        let refused = try await deadLetters.counts(tenant: tenant.id)
        let now = Date()
        return tenant.contentTypes.map { type in
            let row = rows.first { $0.contentType == type }
            return UnitStatus(
                contentType: type,
                state: UnitStatus.state(
                    enabled: tenant.enabled, lastErrorCode: row?.lastErrorCode, checkpoint: row?.checkpoint,
                    progressAt: row?.progressAt, now: now, pollInterval: pollInterval),
                subscription: UnitStatus.subscription(lastErrorCode: row?.lastErrorCode, lastSuccessAt: row?.lastSuccessAt),
                checkpoint: row?.checkpoint, lagSeconds: row?.checkpoint.map { max(0, Int(now.timeIntervalSince($0))) },
                lastSuccessAt: row?.lastSuccessAt, lastErrorCode: row?.lastErrorCode, lastErrorAdvice: row?.lastErrorAdvice,
                recordsForwarded: row?.recordsForwarded ?? 0, blobsSkipped: row?.blobsSkipped ?? 0,
                recordsDeadLettered: refused[type] ?? 0,
                owner: (row?.expiresAt ?? .distantPast) > now ? row?.owner : nil)
        }
    }
}
