/// A per-tenant request budget (token bucket) shared by the tenant's content types: at most `perMinute`
/// requests a minute, with bursts up to `burst`. Pure; time is passed in (seconds on any monotonic scale).
public struct RequestBudget: Sendable {
    public let perMinute: Int
    public let burst: Int
    private var tokens: Double
    private var updatedAt: Double

    public init(perMinute: Int, burst: Int? = nil, now: Double) {
        precondition(perMinute > 0)
        self.perMinute = perMinute
        self.burst = max(1, burst ?? max(1, perMinute / 6))
        self.tokens = Double(self.burst)
        self.updatedAt = now
    }

    /// Takes one request if the budget allows; otherwise returns how many seconds to wait before asking again.
    public mutating func take(now: Double) -> Double? {
        refill(now: now)
        if tokens >= 1 {
            tokens -= 1
            return nil
        }
        return (1 - tokens) * 60 / Double(perMinute)
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
