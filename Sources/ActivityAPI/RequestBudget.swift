/// A per-tenant request budget (token bucket) shared by the tenant's content types: at most `perMinute`
/// requests a minute, with bursts up to `burst` (two seconds' worth by default: no more than Microsoft itself is
/// measured to allow at once). Pure; time is passed in (seconds on any monotonic scale).
///
/// Listings come first: a blob fetch leaves ``reserved`` requests in the bucket, so when one content type's backfill
/// spends the whole budget on blobs, the tenant's other content types still list at once and keep their poll
/// interval (no head-of-line blocking behind the backfill).
public struct RequestBudget: Sendable {
    public enum Priority: Sendable { case listing, blob }

    public let perMinute: Int
    public let burst: Int
    /// What a blob fetch leaves for listings: one per content type.
    public let reserved: Int
    private var tokens: Double
    private var updatedAt: Double

    public init(perMinute: Int, burst: Int? = nil, now: Double) {
        precondition(perMinute > 0)
        self.perMinute = perMinute
        self.burst = max(1, burst ?? max(6, perMinute / 30))
        self.reserved = min(5, self.burst - 1)
        self.tokens = Double(self.burst)
        self.updatedAt = now
    }

    /// Takes one request if the budget allows; otherwise returns how many seconds to wait before asking again.
    public mutating func take(now: Double, priority: Priority = .listing) -> Double? {
        refill(now: now)
        let needed = 1 + (priority == .blob ? Double(reserved) : 0)
        if tokens >= needed {
            tokens -= 1
            return nil
        }
        return (needed - tokens) * 60 / Double(perMinute)
    }

    /// Microsoft said we are throttled: spend what is left so the next requests wait a full refill.
    public mutating func drain(now: Double) {
        refill(now: now)
        tokens = min(tokens, 0)
    }

    private mutating func refill(now: Double) {
        let elapsed = max(0, now - updatedAt)
        tokens = min(Double(burst), tokens + elapsed * Double(perMinute) / 60)
        updatedAt = now
    }
}
