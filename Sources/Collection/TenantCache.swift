import GatewayCore
import Synchronization

/// The tenants and credentials that polls read, kept between polls: an idle poll costs one listing request and
/// one statement, not three reads of the registry. The lease round calls ``refresh()`` (one aggregate statement);
/// when the registry's ``TenantChangeStamp`` moved, every entry is dropped and read again on its next use, so an
/// operator's change (pause, content types, rotated secret, deletion) reaches the polls within one round.
///
/// A credential is held unsealed, like the token it obtains (``TokenProvider`` holds that too); it is only ever
/// returned to the poll of its own tenant and never logged (``Credential`` redacts itself).
///
/// Concurrent misses of one tenant share one read: at a start, the five units of a tenant are polled at once, and
/// each used to read the tenant and its credential itself (ten statements where two do).
final class TenantCache: Sendable {
    let store: any TenantStore
    private let state = Mutex(State())

    /// A value read, or being read (the polls that miss meanwhile wait for that read).
    enum Entry<Value: Sendable>: Sendable {
        case loaded(Value)
        case loading(Task<Value, any Error>)
    }

    struct State {
        var stamp: TenantChangeStamp?
        var tenants: [TenantID: Entry<Tenant?>] = [:]
        var credentials: [TenantID: Entry<Credential>] = [:]
    }

    init(store: any TenantStore) { self.store = store }

    /// Reads the registry's stamp and drops everything when it moved; returns the stamp. A read in progress then
    /// does not fill the cache (its entry is gone).
    @discardableResult
    func refresh() async throws -> TenantChangeStamp {
        let stamp = try await store.changeStamp()
        state.withLock { state in
            if state.stamp != stamp { state = State(stamp: stamp) }
        }
        return stamp
    }

    func tenant(_ id: TenantID) async throws -> Tenant? {
        try await cached(id, \.tenants) { [store] in try await store.get(id) }
    }

    func credential(of id: TenantID) async throws -> Credential {
        try await cached(id, \.credentials) { [store] in try await store.credential(of: id) }
    }

    /// The read is bounded by the database's deadline, so a waiter's wait is too.
    private func cached<Value: Sendable>(
        _ id: TenantID, _ entries: WritableKeyPath<State, [TenantID: Entry<Value>]> & Sendable,
        read: @escaping @Sendable () async throws -> Value
    ) async throws -> Value {
        let found = state.withLock { state -> Entry<Value> in
            if let entry = state[keyPath: entries][id] { return entry }
            let loading = Entry<Value>.loading(Task { try await read() })
            state[keyPath: entries][id] = loading
            return loading
        }
        let read: Task<Value, any Error>
        switch found {
        case .loaded(let value): return value
        case .loading(let task): read = task
        }
        let isCurrent = { (state: State) in
            if case .loading(let current) = state[keyPath: entries][id] { return current == read }
            return false
        }
        do {
            let value = try await read.value
            state.withLock { if isCurrent($0) { $0[keyPath: entries][id] = .loaded(value) } }
            return value
        } catch {
            state.withLock { if isCurrent($0) { $0[keyPath: entries][id] = nil } }
            throw error
        }
    }
}
