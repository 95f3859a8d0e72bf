import Crypto
import Foundation
import GatewayCore

/// A log ready for UTMStack: the fields of `plugins.Log`.
public struct OutboundLog: Sendable, Equatable {
    public var id: String
    public var dataType: String
    public var dataSource: String
    public var timestamp: String
    public var tenantID: String
    public var raw: String

    public init(id: String, dataType: String, dataSource: String, timestamp: String, tenantID: String, raw: String) {
        self.id = id
        self.dataType = dataType
        self.dataSource = dataSource
        self.timestamp = timestamp
        self.tenantID = tenantID
        self.raw = raw
    }
}

/// Turns audit records into UTMStack logs (gateway-contract.md, "What reaches UTMStack"). Pure.
public enum EventShaper {
    public static let dataType = "o365"

    /// - Parameter fallbackTimestamp: used when the record's `CreationTime` is missing or unreadable (the blob's
    ///   `contentCreated`), so UTMStack never stamps the event with its arrival time.
    public static func log(_ record: AuditRecord, route: TenantRoute, fallbackTimestamp: String) -> OutboundLog {
        OutboundLog(
            id: logID(tenant: route.tenantID, recordID: record.id),
            dataType: dataType,
            dataSource: route.dataSource,
            timestamp: timestamp(record.creationTime) ?? timestamp(fallbackTimestamp) ?? fallbackTimestamp,
            tenantID: route.utmTenantID,
            raw: record.raw)
    }

    /// A name-based UUID (version 5, SHA-1) of the record id in the namespace of the gateway tenant: the same
    /// record forwarded again carries the same id, and equal record ids of two tenants differ.
    public static func logID(tenant: TenantID, recordID: String) -> String {
        var hasher = Insecure.SHA1()
        withUnsafeBytes(of: tenant.uuid.uuid) { hasher.update(bufferPointer: $0) }
        var recordID = recordID
        recordID.withUTF8 { hasher.update(bufferPointer: UnsafeRawBufferPointer($0)) }
        return hasher.finalize().withUnsafeBytes { digest in
            // Written straight into the string (once per record): version 5 and the RFC 9562 variant set.
            String(unsafeUninitializedCapacity: 36) { out in
                let hex: StaticString = "0123456789abcdef"
                var o = 0
                for i in 0..<16 {
                    if i == 4 || i == 6 || i == 8 || i == 10 {
                        out[o] = 45
                        o += 1
                    }
                    var byte = digest[i]
                    if i == 6 { byte = byte & 0x0F | 0x50 }
                    if i == 8 { byte = byte & 0x3F | 0x80 }
                    out[o] = hex.utf8Start[Int(byte >> 4)]
                    out[o + 1] = hex.utf8Start[Int(byte & 0x0F)]
                    o += 2
                }
                return o
            }
        }
    }

    /// `CreationTime` as RFC 3339 UTC. Microsoft writes UTC without a zone (`2015-06-29T20:03:19`), so a missing zone
    /// means UTC and gains a `Z`; fractional seconds are kept as written; an explicit offset is converted to UTC.
    /// Returns nil for text that is not such a timestamp.
    public static func timestamp(_ text: String) -> String? {
        let b = Array(text.utf8)
        func digits(_ range: Range<Int>) -> Int? {
            guard range.upperBound <= b.count else { return nil }
            var value = 0
            for i in range {
                guard b[i] >= 48 && b[i] <= 57 else { return nil }
                value = value * 10 + Int(b[i] - 48)
            }
            return value
        }
        guard b.count >= 19, let year = digits(0..<4), b[4] == 45, let month = digits(5..<7), b[7] == 45,
            let day = digits(8..<10), b[10] == 84 || b[10] == 116 || b[10] == 32,
            let hour = digits(11..<13), b[13] == 58, let minute = digits(14..<16), b[16] == 58,
            let second = digits(17..<19),
            (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61
        else { return nil }
        var i = 19
        var fractionEnd = 19  // b[19..<fractionEnd] is "." and the digits, as written
        if i < b.count, b[i] == 46 {
            let start = i + 1
            i = start
            while i < b.count, b[i] >= 48 && b[i] <= 57 { i += 1 }
            guard i > start else { return nil }
            fractionEnd = i
        }
        var offsetMinutes = 0
        if i < b.count {
            switch b[i] {
            case 90, 122:  // Z z
                guard i + 1 == b.count else { return nil }
            case 43, 45:  // + -
                guard b.count == i + 6, let oh = digits((i + 1)..<(i + 3)), b[i + 3] == 58,
                    let om = digits((i + 4)..<(i + 6)), oh < 24, om < 60
                else { return nil }
                offsetMinutes = (oh * 60 + om) * (b[i] == 43 ? 1 : -1)
            default:
                return nil
            }
        }
        if offsetMinutes == 0 {
            // The common case (every record): the text itself, with a `T` and a `Z`; built byte by byte.
            return String(unsafeUninitializedCapacity: fractionEnd + 1) { out in
                for j in 0..<fractionEnd { out[j] = b[j] }
                out[10] = 84
                out[fractionEnd] = 90
                return fractionEnd + 1
            }
        }
        let fraction = String(decoding: b[19..<fractionEnd], as: UTF8.self)
        let days = daysFromCivil(year, month, day)
        let total = days * 86_400 + hour * 3600 + minute * 60 + second - offsetMinutes * 60
        let (d, r) = total.quotientAndRemainder(dividingBy: 86_400)
        let (dayIndex, secondOfDay) = r < 0 ? (d - 1, r + 86_400) : (d, r)
        let (y, m, dd) = civilFromDays(dayIndex)
        func pad(_ v: Int, _ n: Int) -> String { String(repeating: "0", count: max(0, n - String(v).count)) + String(v) }
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(dd, 2))T\(pad(secondOfDay / 3600, 2)):\(pad(secondOfDay / 60 % 60, 2)):"
            + "\(pad(secondOfDay % 60, 2))\(fraction)Z"
    }

    // Howard Hinnant's days-from-civil algorithms (proleptic Gregorian, day 0 = 1970-01-01).
    static func daysFromCivil(_ y0: Int, _ m: Int, _ d: Int) -> Int {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civilFromDays(_ z0: Int) -> (Int, Int, Int) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }
}
