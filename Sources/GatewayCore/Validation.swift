import Foundation

/// Field validation shared by every entry point (admin API, command line). Each failure is a
/// ``GatewayError`` naming the field and what a valid value looks like.
public enum Validation {
    public static let maxNameLength = 200
    public static let maxSecretLength = 1024

    /// A GUID in its 8-4-4-4-12 hexadecimal form.
    public static func guid(_ value: String, field: String) throws -> UUID {
        let parts = value.split(separator: "-", omittingEmptySubsequences: false)
        let shapeOK =
            value.utf8.count == 36 && parts.map(\.count) == [8, 4, 4, 4, 12]
            && parts.allSatisfy { $0.allSatisfy(\.isHexDigit) }
        guard shapeOK, let uuid = UUID(uuidString: value) else {
            throw GatewayError.invalidField(
                field, "must be a GUID such as 4a81a7c3-26fc-4aed-89c6-2e6039ab833b (got \(quoted(value))).")
        }
        return uuid
    }

    /// A display text: 1 to `maxLength` characters after trimming, no control characters. Characters are counted as
    /// PostgreSQL's `char_length` counts them (Unicode code points), not as Swift's `count` (grapheme clusters): an
    /// accent written as a combining mark is one more, so a text the check lets through is one the table takes.
    public static func text(_ value: String, field: String, maxLength: Int = maxNameLength) throws -> String {
        let trimmed = value.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else {
            throw GatewayError.invalidField(field, "must not be empty.")
        }
        let length = trimmed.unicodeScalars.count
        guard length <= maxLength else {
            throw GatewayError.invalidField(field, "must be at most \(maxLength) characters (Unicode code points; got \(length)).")
        }
        guard !trimmed.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw GatewayError.invalidField(field, "must not contain control characters such as tabs or line breaks.")
        }
        return trimmed
    }

    /// A client secret value. Never echoed in a message.
    public static func clientSecret(_ value: String, field: String = "clientSecret") throws -> Secret {
        guard !value.isEmpty else { throw GatewayError.invalidField(field, "must not be empty.") }
        guard value.count <= maxSecretLength else {
            throw GatewayError.invalidField(field, "must be at most \(maxSecretLength) characters.")
        }
        guard value.trimmingCharacters(in: .whitespacesAndNewlines) == value else {
            throw GatewayError.invalidField(
                field, "starts or ends with white space; copy the secret's Value again without surrounding blanks.")
        }
        guard !value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) else {
            throw GatewayError.invalidField(field, "must not contain control characters.")
        }
        if (try? guid(value, field: field)) != nil {
            throw GatewayError.invalidField(
                field,
                "looks like a GUID, which is the secret's ID, not its value; copy the Value column of the client "
                    + "secret in the app registration (Certificates & secrets).")
        }
        return Secret(value)
    }

    /// Content types: at least one, each one of the five; duplicates are folded, order made canonical.
    public static func contentTypes(_ values: [String], field: String = "contentTypes") throws -> [ContentType] {
        guard !values.isEmpty else {
            throw GatewayError.invalidField(field, "must name at least one content type; \(allowedContentTypes).")
        }
        var result = Set<ContentType>()
        for (index, value) in values.enumerated() {
            guard let type = ContentType(rawValue: value) else {
                throw GatewayError.invalidField(
                    "\(field)[\(index)]", "\(quoted(value)) is not a content type; \(allowedContentTypes) (case-exact).")
            }
            result.insert(type)
        }
        return result.sorted()
    }

    public static func cloud(_ value: String, field: String = "cloud") throws -> Cloud {
        guard let cloud = Cloud(rawValue: value) else {
            throw GatewayError.invalidField(
                field, "\(quoted(value)) is not a cloud; use one of \(Cloud.allCases.map(\.rawValue).joined(separator: ", ")).")
        }
        return cloud
    }

    static var allowedContentTypes: String {
        "use one or more of " + ContentType.allCases.map(\.rawValue).joined(separator: ", ")
    }

    /// Quotes a user-supplied value for a message, cut short so a message stays readable.
    static func quoted(_ value: String) -> String {
        let cut = value.count > 60 ? String(value.prefix(60)) + "…" : value
        return "\"\(cut)\""
    }
}

extension Validation {
    /// An RFC 3339 date-time with a zone (`Z` or an offset), with or without fractional seconds.
    public static func timestamp(_ value: String, field: String) throws -> Date {
        guard let date = RFC3339.parse(value) else {
            throw GatewayError.invalidField(
                field, "must be an RFC 3339 date-time with a zone, such as 2027-01-31T00:00:00Z (got \(quoted(value))).")
        }
        return date
    }
}

/// RFC 3339 timestamps as the API reads and writes them.
public enum RFC3339 {
    public static func parse(_ text: String) -> Date? {
        if let date = try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text) { return date }
        return try? Date.ISO8601FormatStyle().parse(text)
    }

    /// UTC with milliseconds: `2027-01-31T00:00:00.000Z`.
    public static func format(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }
}
