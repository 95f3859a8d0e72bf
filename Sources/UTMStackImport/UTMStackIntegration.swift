import Crypto
import _CryptoExtras
import Foundation
import GatewayCore
import Yams

/// One Office 365 group of UTMStack's own integration, as its configuration holds it.
public struct UTMStackGroup: Sendable, Equatable {
    public var name: String
    /// The UTMStack tenant the group belongs to (UTMStack 11); nil in the module-details of earlier releases.
    public var utmTenantID: String?
    /// `office365_*` settings by key.
    public var settings: [String: String]
}

/// Reads the tenants of UTMStack's Office 365 integration from its configuration:
/// - UTMStack 11: the plugin's YAML file (`system_plugins_o365.yaml`: `plugins.o365.tenants[].{id, groups[].{name,
///   config}}`), whose `office365_client_secret` may be encrypted with UTMStack's `encryptionKey`;
/// - earlier releases: the module-details JSON of the O365 module (`moduleGroups[].{groupName,
///   moduleGroupConfigurations[].{confKey, confValue}}`), alone or in an array of modules.
public enum UTMStackIntegration {
    public static func groups(from data: Data) throws -> [UTMStackGroup] {
        if let json = try? JSONSerialization.jsonObject(with: data) {
            let modules: [[String: Any]] = (json as? [[String: Any]]) ?? [(json as? [String: Any]) ?? [:]]
            let office = modules.filter { module in
                guard let name = (module["moduleName"] as? String)?.lowercased() else { return true }
                return name.contains("o365") || name.contains("office")
            }
            return office.flatMap { module in
                ((module["moduleGroups"] as? [[String: Any]]) ?? []).map { group in
                    var settings: [String: String] = [:]
                    for entry in (group["moduleGroupConfigurations"] as? [[String: Any]]) ?? [] {
                        if let key = entry["confKey"] as? String { settings[key] = entry["confValue"] as? String ?? "" }
                    }
                    return UTMStackGroup(
                        name: group["groupName"] as? String ?? "", utmTenantID: group["utmTenantId"] as? String,
                        settings: settings)
                }
            }
        }
        guard let text = String(data: data, encoding: .utf8),
            let document = try Yams.load(yaml: text) as? [String: Any],
            let plugins = document["plugins"] as? [String: Any],
            let office = plugins["o365"] as? [String: Any]
        else {
            throw GatewayError(
                .invalidInput, code: "unknown_utmstack_file",
                "The file is neither UTMStack 11's plugin YAML (plugins.o365.tenants) nor an O365 module-details JSON.")
        }
        return ((office["tenants"] as? [[String: Any]]) ?? []).flatMap { tenant in
            ((tenant["groups"] as? [[String: Any]]) ?? []).map { group in
                let config = (group["config"] as? [String: Any]) ?? [:]
                return UTMStackGroup(
                    name: "\(group["name"] ?? "")", utmTenantID: tenant["id"].map { "\($0)" },
                    settings: config.mapValues { "\($0)" })
            }
        }
    }

    /// UTMStack's cipher for sensitive settings: AES-128-CBC, key and IV from PBKDF2-HMAC-SHA1 of its encryption key
    /// (salt: the key's SHA-1, 65,536 rounds, 16 bytes; the IV is the salt's first 16 bytes), base64. A value that is
    /// not base64 of whole blocks was stored in the clear and is returned as it is.
    public static func decrypt(_ value: String, key: String) throws -> String {
        guard let bytes = Data(base64Encoded: value), !bytes.isEmpty, bytes.count % 16 == 0 else { return value }
        let salt = Data(Insecure.SHA1.hash(data: Data(key.utf8)))
        let derived = try KDF.Insecure.PBKDF2.deriveKey(
            from: Data(key.utf8), salt: salt, using: .insecureSHA1, outputByteCount: 16, unsafeUncheckedRounds: 65_536)
        let plain = try AES._CBC.decrypt(bytes, using: derived, iv: try AES._CBC.IV(ivBytes: salt.prefix(16)))
        guard let text = String(data: plain, encoding: .utf8) else {
            throw GatewayError(
                .invalidInput, code: "undecryptable_secret",
                "A client secret does not decrypt with the given UTMStack encryption key.")
        }
        return text
    }

    /// UTMStack's cloud names (`office365_cloud_environment`) as the gateway's.
    public static func cloud(_ value: String?) -> Cloud? {
        switch value?.lowercased().replacingOccurrences(of: " ", with: "") {
        case nil, "", "commercial", "enterprise", "global": .commercial
        case "gcc": .gcc
        case "gcchigh", "gcc-high", "gcc_high": .gcchigh
        case "dod": .dod
        default: nil
        }
    }
}

/// What an import does with one group.
public enum ImportAction: Sendable, Equatable {
    /// Onboard it (the gateway's own validation still applies).
    case create(name: String, body: ImportedTenant)
    /// It is onboarded already (same Microsoft tenant): change what differs; `secret` when it is to be replaced.
    case update(id: String, name: String, changes: [String: String], secret: Secret?)
    case unchanged(id: String, name: String)
    case skip(group: String, reason: String)
}

/// A tenant onboarded now, as the admin API lists it: what an import compares.
public struct ExistingTenant: Sendable, Equatable {
    public var id: String
    public var microsoftTenantID: UUID
    public var name: String
    public var dataSource: String
    public var utmTenantID: String

    public init(id: String, microsoftTenantID: UUID, name: String, dataSource: String, utmTenantID: String) {
        self.id = id
        self.microsoftTenantID = microsoftTenantID
        self.name = name
        self.dataSource = dataSource
        self.utmTenantID = utmTenantID
    }
}

public struct ImportedTenant: Sendable, Equatable {
    public var name: String
    public var microsoftTenantID: String
    public var clientID: String
    public var secret: Secret
    public var cloud: Cloud
    public var utmTenantID: String
}

extension UTMStackIntegration {
    /// The plan for `groups` against the tenants onboarded now: idempotent (a tenant is matched by its Microsoft tenant
    /// id, so a second import updates and never duplicates); `replaceSecrets` rotates the secrets of matched tenants.
    public static func plan(
        _ groups: [UTMStackGroup], existing: [ExistingTenant], encryptionKey: String?, replaceSecrets: Bool
    ) -> [ImportAction] {
        var seen = Set<UUID>()
        return groups.map { group in
            let label = group.name.isEmpty ? "(unnamed group)" : group.name
            func skip(_ reason: String) -> ImportAction { .skip(group: label, reason: reason) }
            guard !group.name.trimmingCharacters(in: .whitespaces).isEmpty else { return skip("the group has no name") }
            guard let tenantText = group.settings["office365_tenant_id"], let tenantID = UUID(uuidString: tenantText) else {
                return skip("office365_tenant_id is missing or not a GUID")
            }
            guard let clientText = group.settings["office365_client_id"], UUID(uuidString: clientText) != nil else {
                return skip("office365_client_id is missing or not a GUID")
            }
            guard let raw = group.settings["office365_client_secret"], !raw.isEmpty else {
                return skip("office365_client_secret is empty")
            }
            let secret: String
            do {
                secret = try encryptionKey.map { try decrypt(raw, key: $0) } ?? raw
            } catch {
                return skip("office365_client_secret does not decrypt with the given UTMStack encryption key")
            }
            guard let cloud = cloud(group.settings["office365_cloud_environment"]) else {
                return skip("office365_cloud_environment \(group.settings["office365_cloud_environment"] ?? "") is not Commercial, GCC, GCCHigh or DoD")
            }
            guard seen.insert(tenantID).inserted else { return skip("another group of this file has the same office365_tenant_id") }
            let utmTenant = group.utmTenantID.flatMap { $0.isEmpty ? nil : $0 } ?? defaultUTMStackTenantID
            if let tenant = existing.first(where: { $0.microsoftTenantID == tenantID }) {
                var changes: [String: String] = [:]
                if tenant.name != group.name { changes["name"] = group.name }
                if tenant.dataSource != group.name { changes["dataSource"] = group.name }
                if tenant.utmTenantID != utmTenant { changes["utmTenantId"] = utmTenant }
                if changes.isEmpty && !replaceSecrets { return .unchanged(id: tenant.id, name: tenant.name) }
                return .update(id: tenant.id, name: group.name, changes: changes, secret: replaceSecrets ? Secret(secret) : nil)
            }
            return .create(
                name: group.name,
                body: ImportedTenant(
                    name: group.name, microsoftTenantID: tenantText.lowercased(), clientID: clientText.lowercased(),
                    secret: Secret(secret), cloud: cloud, utmTenantID: utmTenant))
        }
    }
}
