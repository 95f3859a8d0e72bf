/// The one backoff of the gateway, for every retry (Microsoft, UTMStack reconnects, collection polls, alert
/// deliveries): capped exponential with jitter. Attempt `n` (from 0) waits between half and all of
/// min(cap, base × 2ⁿ), so retries of many units spread out instead of arriving together.
public enum RetryBackoff {
    /// Seconds to wait before attempt `attempt + 1`.
    public static func delay(attempt: Int, base: Double = 1, cap: Double = 60, random: Double = .random(in: 0...1)) -> Double {
        let ceiling = min(cap, base * Double(1 << min(max(attempt, 0), 16)))
        return ceiling / 2 + ceiling / 2 * random
    }

    /// The same as a `Duration`.
    public static func delay(attempt: Int, base: Duration, cap: Duration) -> Duration {
        .milliseconds(Int64((delay(attempt: attempt, base: base.seconds, cap: cap.seconds) * 1000).rounded()))
    }
}
