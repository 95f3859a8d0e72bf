import Foundation
import GatewayCore
import PostgresStorage
import Scheduling
import Synchronization

/// Checkpoints that moved over windows without blobs, written for all units together: an idle poll then costs
/// Microsoft's listing and no statement of its own. Flushed every second (``CollectionScheduler``) and when the
/// replica stops; each row is still guarded by its unit's fencing token.
///
/// Only a checkpoint with nothing to remember is deferred (every blob before it was committed already), so the
/// guarantee stays: the checkpoint never passes a blob that is not remembered. A checkpoint lost in a crash only
/// means one window is listed again, and what it lists is known (`forwarded_content`).
final class CheckpointBatch: Sendable {
    let store: PostgresCollectionStore
    private let pending = Mutex<[CollectionUnit: (fencing: Int64, checkpoint: Date)]>([:])

    init(store: PostgresCollectionStore) { self.store = store }

    func add(_ unit: CollectionUnit, fencing: Int64, checkpoint: Date) {
        pending.withLock { $0[unit] = (fencing, checkpoint) }
    }

    /// Writes what was added since the last flush, in one statement. On a failure they are added back (unless a
    /// later poll of the unit added a newer one meanwhile) and the next flush tries again.
    func flush() async throws {
        let batch = pending.withLock { pending in
            defer { pending.removeAll(keepingCapacity: true) }
            return pending
        }
        guard !batch.isEmpty else { return }
        do {
            try await store.commitCheckpoints(batch.map {
                PostgresCollectionStore.CheckpointMove(
                    tenant: $0.key.tenant, contentType: $0.key.contentType, fencing: $0.value.fencing, checkpoint: $0.value.checkpoint)
            })
        } catch {
            pending.withLock { pending in
                for (unit, entry) in batch where pending[unit] == nil { pending[unit] = entry }
            }
            throw error
        }
    }
}
