import GatewayCore
import Synchronization

/// The tenants and credentials that polls read, kept between polls: an idle poll costs one listing request and
/// one statement, not three reads of the registry. The lease round calls ``refresh()`` (one aggregate statement);
/// when the registry's ``TenantChangeStamp`` moved, every entry is dropped and read again on its next use, so an
/// operator's change (pause, content types, rotated secret, deletion) reaches the polls within one round.
///
/// A credential is held unsealed, like the token it obtains (``TokenProvider`` holds that too); it is only ever
/// returned to the poll of its own tenant and never logged (``Credential`` redacts itself).
final class TenantCache: Sendable {
    let store: any TenantStore
    private let state = Mutex(State())

    struct State {
        var stamp: TenantChangeStamp?
        /// Raised by every drop: a read that began before it does not fill the cache.
        var generation = 0
        var tenants: [TenantID: Tenant?] = [:]
        var credentials: [TenantID: Credential] = [:]
    }

    init(store: any TenantStore) { self.store = store }

    /// Reads the registry's stamp and drops everything when it moved; returns the stamp.
    @discardableResult
    func refresh() async throws -> TenantChangeStamp {
        let stamp = try await store.changeStamp()
        state.withLock { state in
            if state.stamp != stamp { state = State(stamp: stamp, generation: state.generation + 1) }
        }
        return stamp
    }

    func tenant(_ id: TenantID) async throws -> Tenant? {
        try await cached(id, \.tenants) { try await self.store.get(id) }
    }

    func credential(of id: TenantID) async throws -> Credential {
        try await cached(id, \.credentials) { try await self.store.credential(of: id) }
    }

    private func cached<Value: Sendable>(
        _ id: TenantID, _ entries: WritableKeyPath<State, [TenantID: Value]> & Sendable,
        read: @Sendable () async throws -> Value
    ) async throws -> Value {
        let (hit, generation) = state.withLock { ($0[keyPath: entries][id], $0.generation) }
        if let hit { return hit }
        let value = try await read()
        state.withLock { if $0.generation == generation { $0[keyPath: entries][id] = value } }
        return value
    }
}
