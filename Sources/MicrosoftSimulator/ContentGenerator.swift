import Foundation

/// The simulated audit content, as a pure function of the configuration: blob `k` of (tenant, content type) has a
/// nominal time `k × interval`, a `contentCreated` a little after it, becomes listable after the latency (much
/// later for late blobs), and holds records derived from its coordinates, so regenerating a blob gives the same
/// bytes. Some blobs repeat the last record of the blob before them, as Microsoft's pipeline does.
public struct ContentGenerator: Sendable {
    public static let contentTypes = ["Audit.AzureActiveDirectory", "Audit.Exchange", "Audit.SharePoint", "Audit.General", "DLP.All"]

    public struct Blob: Sendable, Equatable {
        public var tenantIndex: Int
        public var contentType: String
        public var index: Int64
        public var contentCreated: Date
        public var availableAt: Date
        public var contentID: String
    }

    let configuration: SimulatorConfiguration
    /// Blobs before this nominal time do not exist (start − history).
    let firstIndex: Int64
    /// The same for the backlog's tenant and content type, when there is one.
    let backlogFirstIndex: Int64?
    /// When not live, blobs after this nominal time do not exist.
    let lastIndex: Int64?

    public init(configuration: SimulatorConfiguration, startedAt: Date) {
        self.configuration = configuration
        let interval = Double(configuration.blobIntervalSeconds)
        firstIndex = Int64(((startedAt.timeIntervalSince1970 - configuration.historyHours * 3600) / interval).rounded(.up))
        backlogFirstIndex = configuration.backlog.map {
            Int64(((startedAt.timeIntervalSince1970 - $0.hours * 3600) / interval).rounded(.up))
        }
        lastIndex = configuration.live ? nil : Int64((startedAt.timeIntervalSince1970 / interval).rounded(.down))
    }

    /// The first blob of (tenant, type).
    func firstIndex(_ tenant: Int, _ type: String) -> Int64 {
        guard let backlogFirstIndex, let backlog = configuration.backlog, tenant == 0, type == backlog.contentType else { return firstIndex }
        return backlogFirstIndex
    }

    func seedParts(_ tenant: Int, _ type: String, _ index: Int64) -> [UInt64] {
        [UInt64(tenant), Deterministic.stringHash(type), UInt64(bitPattern: index)]
    }

    public func blob(tenant: Int, contentType: String, index: Int64) -> Blob {
        let seed = configuration.seed
        let parts = seedParts(tenant, contentType, index)
        let interval = Double(configuration.blobIntervalSeconds)
        let jitter = Deterministic.unit(seed, parts + [1]) * interval / 2
        let created = Date(timeIntervalSince1970: (Double(index) * interval + jitter).rounded(.down) + 0.123)
        let late = Deterministic.unit(seed, parts + [2]) < configuration.lateFraction
        let delay = Double(late ? configuration.lateDelaySeconds : configuration.latencySeconds)
        let stamp = Self.compactStamp(created)
        let id = "\(stamp)$\(stamp)$audit_\(contentType.lowercased().replacingOccurrences(of: ".", with: "_"))$\(contentType.replacingOccurrences(of: ".", with: "_"))$sim\(tenant)-\(index)"
        return Blob(
            tenantIndex: tenant, contentType: contentType, index: index, contentCreated: created,
            availableAt: created.addingTimeInterval(delay), contentID: id)
    }

    /// Blobs of (tenant, type) listable at `now` whose `contentCreated` is in `[start, end)`, ordered by when they
    /// became available.
    public func blobs(tenant: Int, contentType: String, start: Date, end: Date, now: Date) -> [Blob] {
        let interval = Double(configuration.blobIntervalSeconds)
        let firstIndex = firstIndex(tenant, contentType)
        var low = max(firstIndex, Int64((start.timeIntervalSince1970 / interval).rounded(.down)) - 1)
        var high = Int64((end.timeIntervalSince1970 / interval).rounded(.up)) + 1
        high = min(high, Int64((now.timeIntervalSince1970 / interval).rounded(.up)))
        if let lastIndex { high = min(high, lastIndex) }
        low = max(low, firstIndex)
        guard low <= high else { return [] }
        return (low...high).map { blob(tenant: tenant, contentType: contentType, index: $0) }
            .filter { $0.contentCreated >= start && $0.contentCreated < end && $0.availableAt <= now }
            .sorted { ($0.availableAt, $0.index) < ($1.availableAt, $1.index) }
    }

    /// Parses a content id back into its blob, if this simulator made it.
    public func blob(contentID: String) -> Blob? {
        guard let marker = contentID.range(of: "$sim", options: .backwards) else { return nil }
        let tail = contentID[marker.upperBound...].split(separator: "-")
        let pieces = contentID.split(separator: "$")
        guard tail.count == 2, let tenant = Int(tail[0]), let index = Int64(tail[1]), pieces.count == 5 else { return nil }
        let type = pieces[3].replacingOccurrences(of: "_", with: ".")
        guard Self.contentTypes.contains(type), tenant < configuration.tenants.count, index >= firstIndex(tenant, type) else { return nil }
        if let lastIndex, index > lastIndex { return nil }
        let blob = blob(tenant: tenant, contentType: type, index: index)
        return blob.contentID == contentID ? blob : nil
    }

    /// The records of a blob, each as its exact JSON text.
    public func records(of blob: Blob) -> [(id: String, json: String)] {
        var records = (0..<configuration.recordsPerBlob).map { record(blob, $0) }
        if blob.index > firstIndex,
            Deterministic.unit(configuration.seed, seedParts(blob.tenantIndex, blob.contentType, blob.index) + [3]) < configuration.duplicateFraction,
            configuration.recordsPerBlob > 0
        {
            let previous = self.blob(tenant: blob.tenantIndex, contentType: blob.contentType, index: blob.index - 1)
            records.insert(record(previous, configuration.recordsPerBlob - 1), at: 0)
        }
        return records
    }

    public func blobBody(_ blob: Blob) -> String {
        "[" + records(of: blob).map(\.json).joined(separator: ",") + "]"
    }

    func record(_ blob: Blob, _ j: Int) -> (id: String, json: String) {
        let seed = configuration.seed
        let parts = seedParts(blob.tenantIndex, blob.contentType, blob.index) + [100 + UInt64(j)]
        let id = Deterministic.uuid(seed, "record", Deterministic.hash(seed, parts)).uuidString.lowercased()
        let tenant = configuration.tenants[blob.tenantIndex]
        let created = blob.contentCreated.addingTimeInterval(-(Deterministic.unit(seed, parts + [1]) * 3600).rounded(.down))
        let user = "user\(Deterministic.hash(seed, parts + [2]) % 50)@\(tenant.name.lowercased().replacingOccurrences(of: " ", with: ""))\u{2E}onmicrosoft.com"
        let ip = "203.0.113.\(Deterministic.hash(seed, parts + [3]) % 250 + 1)"
        let pick = Deterministic.hash(seed, parts + [4])
        let org = tenant.tenantId.uuidString.lowercased()
        let time = Self.microsoftTime(created)
        let (recordType, operation, workload, extra): (Int, String, String, String) =
            switch blob.contentType {
            case "Audit.AzureActiveDirectory":
                (15, ["UserLoggedIn", "UserLoginFailed"][Int(pick % 2)], "AzureActiveDirectory",
                 #","AzureActiveDirectoryEventType":1,"ErrorCode":"\#(pick % 2 == 0 ? "0" : "50126")","ApplicationId":"\#(Deterministic.uuid(seed, "app", pick % 5).uuidString.lowercased())","ExtendedProperties":[{"Name":"UserAgent","Value":"Mozilla/5.0 (Windows NT 10.0; \"sim\")"}]"#)
            case "Audit.Exchange":
                (2, ["MailItemsAccessed", "Send", "HardDelete"][Int(pick % 3)], "Exchange",
                 #","MailboxOwnerUPN":"\#(user)","LogonType":0,"InternalLogonType":0"#)
            case "Audit.SharePoint":
                (6, ["FileAccessed", "FileDownloaded", "FileModified"][Int(pick % 3)], "SharePoint",
                 #","SiteUrl":"https://\#(tenant.name.lowercased().replacingOccurrences(of: " ", with: "")).sharepoint.com/sites/finance/","SourceFileName":"Q\#(pick % 4 + 1) report.xlsx","ItemType":"File""#)
            case "DLP.All":
                (13, "DlpRuleMatch", "Exchange",
                 #","PolicyDetails":[{"PolicyId":"\#(Deterministic.uuid(seed, "policy", 1).uuidString.lowercased())","PolicyName":"U.S. Financial Data","Rules":[{"RuleName":"Credit card","Severity":"High","ConditionsMatched":{"SensitiveInformation":[{"SensitiveType":"50842eb7-edc8-4019-85dd-5a5c1f2bb085","Count":\#(pick % 9 + 1),"Confidence":85}]}}]}],"SensitiveInfoDetectionIsIncluded":true"#)
            default:
                (25, ["TeamCreated", "MemberAdded", "MessageSent"][Int(pick % 3)], "MicrosoftTeams",
                 #","TeamName":"Project \#(pick % 7)","CommunicationType":"Team""#)
            }
        // Key order as Microsoft writes it, and a number beyond double precision to prove bytes are kept.
        let json = #"{"CreationTime":"\#(time)","Id":"\#(id)","Operation":"\#(operation)","OrganizationId":"\#(org)","RecordType":\#(recordType),"ResultStatus":"Succeeded","UserKey":"1003\#(pick % 100000)","UserType":0,"Version":1,"Workload":"\#(workload)","ClientIP":"\#(ip)","ObjectId":"\#(id.prefix(8))","UserId":"\#(user)","SimSequence":\#(9_007_199_254_740_993 + Int(pick % 1000))\#(extra)}"#
        return (id, json)
    }

    /// Every distinct record id listable at `now` for a tenant and type (the ground truth for tests).
    public func expectedRecordIDs(tenant: Int, contentType: String, now: Date) -> Set<String> {
        let start = Date(timeIntervalSince1970: Double(firstIndex(tenant, contentType)) * Double(configuration.blobIntervalSeconds) - 1)
        var ids = Set<String>()
        for blob in blobs(tenant: tenant, contentType: contentType, start: start, end: now.addingTimeInterval(1), now: now) {
            for record in records(of: blob) { ids.insert(record.id) }
        }
        return ids
    }

    /// `2015-06-29T20:03:19`: UTC without a zone, as Microsoft writes `CreationTime`.
    static func microsoftTime(_ date: Date) -> String {
        let text = Date(timeIntervalSince1970: date.timeIntervalSince1970.rounded(.down)).formatted(Date.ISO8601FormatStyle())
        return text.hasSuffix("Z") ? String(text.dropLast()) : text
    }

    /// RFC 3339 with milliseconds and `Z`, as Microsoft writes `contentCreated`.
    static func contentTime(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true))
    }

    static func compactStamp(_ date: Date) -> String {
        microsoftTime(date).filter(\.isNumber) + String(format: "%03d", Int(date.timeIntervalSince1970.truncatingRemainder(dividingBy: 1) * 1000))
    }
}
