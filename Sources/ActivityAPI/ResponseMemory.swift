import Metrics
import Synchronization

/// One process-wide budget for the bytes of blobs fetched from Microsoft and not yet handed to the forwarder
/// (`O365GW_BLOB_BUFFER_BYTES`), so memory is bounded by bytes, whatever the blob sizes, workers and fetch-ahead.
///
/// A fetch takes a ``MemoryClaim`` and acquires each chunk of the response body as it arrives; when the budget is
/// used up it waits, with one exception, the *overdraft*: when nobody holds it, the oldest fetch still receiving may
/// take it and go on beyond the budget, until its claim is released. Every fetch older than it has its response
/// complete, so its collector (which handles a unit's blobs in order) gets to it, forwards it and releases it; then
/// the next oldest may take the overdraft. So fetches that each hold part of the budget never wait on each other for
/// ever, and the most held is the budget plus one response (itself bounded by `O365GW_MAX_BLOB_BYTES`).
public final class ResponseMemoryBudget: Sendable {
    public let limit: Int

    private struct Waiter {
        var claim: UInt64
        var bytes: Int
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var used = 0
        var nextClaim: UInt64 = 0
        /// Claims still receiving their response.
        var receiving: Set<UInt64> = []
        /// The claim allowed beyond the budget, until it is released.
        var overdraft: UInt64?
        var waiters: [UInt64: Waiter] = [:]
        var nextWaiter: UInt64 = 0
    }

    private let state = Mutex(State())
    private let heldGauge = Gauge(label: "o365gw_microsoft_blob_bytes_held")

    public init(limit: Int) {
        precondition(limit > 0)
        self.limit = limit
    }

    /// Bytes held now.
    public var used: Int { state.withLock { $0.used } }

    /// A claim for one fetch, oldest first.
    public func claim() -> MemoryClaim {
        let id = state.withLock { state in
            state.nextClaim += 1
            state.receiving.insert(state.nextClaim)
            return state.nextClaim
        }
        return MemoryClaim(budget: self, id: id)
    }

    func acquire(_ bytes: Int, claim: UInt64) async throws {
        let key = state.withLock { state -> UInt64? in
            if Self.take(bytes, claim: claim, in: &state, limit: limit) { return nil }
            state.nextWaiter += 1
            return state.nextWaiter
        }
        guard let key else { return record() }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let resumeNow = state.withLock { state -> Bool in
                    // Freed meanwhile, or cancelled before waiting.
                    if Task.isCancelled { return true }
                    if Self.take(bytes, claim: claim, in: &state, limit: limit) { return true }
                    state.waiters[key] = Waiter(claim: claim, bytes: bytes, continuation: continuation)
                    return false
                }
                if resumeNow {
                    if Task.isCancelled { continuation.resume(throwing: CancellationError()) } else { continuation.resume() }
                }
            }
        } onCancel: {
            state.withLock { $0.waiters.removeValue(forKey: key) }?.continuation.resume(throwing: CancellationError())
        }
        record()
    }

    func finishReceiving(claim: UInt64) {
        let woken = state.withLock { state -> [Waiter] in
            state.receiving.remove(claim)
            return grant(&state)
        }
        woken.forEach { $0.continuation.resume() }
    }

    func release(_ bytes: Int, claim: UInt64, done: Bool) {
        guard bytes > 0 || done else { return }
        let woken = state.withLock { state -> [Waiter] in
            state.used -= bytes
            if done {
                state.receiving.remove(claim)
                if state.overdraft == claim { state.overdraft = nil }
            }
            return grant(&state)
        }
        woken.forEach { $0.continuation.resume() }
        record()
    }

    /// Takes `bytes` for `claim` if they fit in the budget, or under the overdraft (held by this claim, or free and
    /// this claim the oldest still receiving).
    private static func take(_ bytes: Int, claim: UInt64, in state: inout State, limit: Int) -> Bool {
        if state.used + bytes > limit {
            if state.overdraft == nil && claim == state.receiving.min() { state.overdraft = claim }
            guard state.overdraft == claim else { return false }
        }
        state.used += bytes
        return true
    }

    /// Grants the waiters that can go on now, oldest claim first; returns them to resume outside the lock.
    private func grant(_ state: inout State) -> [Waiter] {
        var granted: [Waiter] = []
        for (key, waiter) in state.waiters.sorted(by: { $0.value.claim < $1.value.claim })
        where Self.take(waiter.bytes, claim: waiter.claim, in: &state, limit: limit) {
            state.waiters.removeValue(forKey: key)
            granted.append(waiter)
        }
        return granted
    }

    private func record() { heldGauge.record(used) }
}

/// One fetch's share of the ``ResponseMemoryBudget``: grows as its response arrives, and is given back when the
/// blob is handed to the forwarder (``release()``), or when the claim is dropped.
public final class MemoryClaim: Sendable {
    let budget: ResponseMemoryBudget
    let id: UInt64
    private let held = Mutex((bytes: 0, done: false))

    init(budget: ResponseMemoryBudget, id: UInt64) {
        self.budget = budget
        self.id = id
    }

    /// Waits until `bytes` more may be held (cancellable).
    func acquire(_ bytes: Int) async throws {
        try await budget.acquire(bytes, claim: id)
        held.withLock { $0.bytes += bytes }
    }

    /// The response is complete: it will not grow (so it no longer counts as the oldest receiving fetch).
    func finishReceiving() { budget.finishReceiving(claim: id) }

    /// Gives back what a failed attempt held, before the request is sent again.
    func restart() {
        let bytes = held.withLock { held in
            defer { held.bytes = 0 }
            return held.bytes
        }
        budget.release(bytes, claim: id, done: false)
    }

    /// Gives everything back; the claim is over.
    public func release() {
        let (bytes, first) = held.withLock { held in
            defer { held = (0, true) }
            return (held.bytes, !held.done)
        }
        if first || bytes > 0 { budget.release(bytes, claim: id, done: first) }
    }

    deinit { release() }
}
