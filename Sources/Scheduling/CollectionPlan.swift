import GatewayCore
import Foundation

/// Where a collector listing starts and which windows it lists, from its checkpoint. Pure.
///
/// The checkpoint is the `contentCreated` time up to which every listed blob has been delivered. Each poll lists
/// again from `checkpoint − trailingRelist` (late blobs appear with an old `contentCreated`); blobs already
/// forwarded are recognised by their content id and skipped. A new unit starts `backfill` before now.
///
/// Windows span at most `windowSpan` (2 h), not the API's 24 h: the checkpoint moves after each window, so a
/// backfill shows its progress (and a crash mid-backfill lists again at most one window), at the price of one more
/// listing request per 2 h of backfill.
public struct CollectionPlan: Sendable, Equatable {
    public var windows: [ContentWindow]
    /// The checkpoint after every window is delivered.
    public var checkpointAfter: Date?
    /// What can no longer be listed: from the checkpoint to the first window, when the checkpoint is older than
    /// Microsoft's 7 days (a tenant paused longer than that). Collection resumes after it; the gap is reported.
    public var gap: ContentWindow?

    public static let windowSpan: TimeInterval = 2 * 3600

    public static func make(
        checkpoint: Date?, now: Date, backfill: TimeInterval, trailingRelist: TimeInterval, endLag: TimeInterval = 60
    ) -> CollectionPlan {
        let from = checkpoint.map { $0.addingTimeInterval(-trailingRelist) } ?? now.addingTimeInterval(-backfill)
        let windows = ContentWindows.plan(from: from, now: now, endLag: endLag, maxSpan: windowSpan)
        var gap: ContentWindow?
        if let checkpoint, let first = windows.first, checkpoint < first.start {
            gap = ContentWindow(start: checkpoint, end: first.start)
        }
        return CollectionPlan(windows: windows, checkpointAfter: windows.last?.end ?? checkpoint, gap: gap)
    }
}
