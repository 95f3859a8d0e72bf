import Foundation

/// A `[start, end)` window on `contentCreated`.
public struct ContentWindow: Sendable, Equatable, CustomStringConvertible {
    public var start: Date
    public var end: Date

    public init(start: Date, end: Date) {
        self.start = start
        self.end = end
    }

    public var description: String { "[\(ContentWindows.format(start)), \(ContentWindows.format(end)))" }
}

/// Plans listing windows (reference §3.4, §7): at most 24 h each, never starting further back than 7 days minus a
/// safety margin, ending a little before now (Microsoft's clock may differ from ours). Pure.
public enum ContentWindows {
    public static let maxSpan: TimeInterval = 24 * 3600
    /// Microsoft rejects starts older than 7 days; clients keep 5 minutes away from the edge (167 h 55 min).
    public static let oldestStart: TimeInterval = 7 * 24 * 3600 - 5 * 60

    /// Windows from `from` up to `now - endLag` cut to a whole second (Microsoft's precision: an end within the
    /// second of its start would be sent as an empty window, which Microsoft refuses with AF20055), each at most
    /// `maxSpan` long.
    public static func plan(from: Date, now: Date, endLag: TimeInterval = 60, maxSpan: TimeInterval = maxSpan) -> [ContentWindow] {
        let end = Date(timeIntervalSince1970: now.addingTimeInterval(-endLag).timeIntervalSince1970.rounded(.down))
        var start = max(from, now.addingTimeInterval(-oldestStart))
        var windows: [ContentWindow] = []
        while start < end {
            let next = min(end, start.addingTimeInterval(maxSpan))
            windows.append(ContentWindow(start: start, end: next))
            start = next
        }
        return windows
    }

    /// UTC at second precision, as Microsoft documents (`YYYY-MM-DDTHH:MM:SS`). Sub-second parts are cut, which
    /// for a start only widens the window; callers keep ends on whole seconds.
    public static func format(_ date: Date) -> String {
        let seconds = Int(date.timeIntervalSince1970.rounded(.down))
        let formatted = Date(timeIntervalSince1970: TimeInterval(seconds)).formatted(Date.ISO8601FormatStyle())
        return formatted.hasSuffix("Z") ? String(formatted.dropLast()) : formatted
    }
}
