import Foundation
import GatewayCore
import Testing
import UTMStackImport

/// Fixtures shaped as UTMStack's Office 365 plugin reads its configuration (plugins/o365/config.go of UTMStack 11:
/// plugins.o365.tenants[].{id, groups[].{name, description, config}}) and as earlier releases' module details hold it
/// (moduleGroups[].{groupName, moduleGroupConfigurations[].{confKey, confValue}}).
@Suite struct UTMStackImportTests {
    static let key = "utmstack-test-encryption-key"
    /// "Abc~secret.value_0123456789xyz" under UTMStack's cipher with `key`, computed with Python's hashlib and
    /// cryptography (PBKDF2-HMAC-SHA1, AES-128-CBC, PKCS#7), not with the code under test.
    static let encrypted = "RmQSApSavwmAObGnu3rTLKllK5FGxihXUdRn6SS07Ac="

    static let yaml = """
        plugins:
          o365:
            tenants:
              - id: 7d3c0c52-0000-4000-8000-00000000000a
                groups:
                  - name: Contoso
                    description: main office
                    config:
                      office365_tenant_id: 4a81a7c3-26fc-4aed-89c6-2e6039ab833b
                      office365_client_id: 0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9
                      office365_client_secret: \(encrypted)
                      office365_cloud_environment: GCCHigh
                  - name: Broken
                    config:
                      office365_tenant_id: contoso.onmicrosoft.com
                      office365_client_id: 0b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9
                      office365_client_secret: x
              - id: 7d3c0c52-0000-4000-8000-00000000000b
                groups:
                  - name: Fabrikam
                    config:
                      office365_tenant_id: 5b81a7c3-26fc-4aed-89c6-2e6039ab833c
                      office365_client_id: 1b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9
                      office365_client_secret: plain~secret.value_0123456789
                      office365_cloud_environment: Azure Germany
          azure:
            tenants: []
        """

    static let moduleDetails = """
        {"id": 12, "moduleName": "O365", "moduleActive": true, "moduleGroups": [
          {"id": 3, "groupName": "Northwind", "groupDescription": "", "moduleGroupConfigurations": [
            {"confKey": "office365_tenant_id", "confValue": "6c81a7c3-26fc-4aed-89c6-2e6039ab833d", "confDataType": "text"},
            {"confKey": "office365_client_id", "confValue": "2b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9", "confDataType": "text"},
            {"confKey": "office365_client_secret", "confValue": "north~secret.value_0123456789", "confDataType": "password"}]},
          {"id": 4, "groupName": "Empty", "moduleGroupConfigurations": [
            {"confKey": "office365_tenant_id", "confValue": "7c81a7c3-26fc-4aed-89c6-2e6039ab833e"},
            {"confKey": "office365_client_id", "confValue": "3b1c2d3e-4f50-4617-8293-a4b5c6d7e8f9"},
            {"confKey": "office365_client_secret", "confValue": ""}]}]}
        """

    @Test func utmstackSecretsDecryptAsUTMStackEncryptsThem() throws {
        #expect(try UTMStackIntegration.decrypt(Self.encrypted, key: Self.key) == "Abc~secret.value_0123456789xyz")
        #expect(try UTMStackIntegration.decrypt("plain~secret", key: Self.key) == "plain~secret", "stored in the clear")
    }

    @Test func theYAMLOfUTMStack11BecomesOneTenantPerGroup() throws {
        let groups = try UTMStackIntegration.groups(from: Data(Self.yaml.utf8))
        #expect(groups.map(\.name) == ["Contoso", "Broken", "Fabrikam"])
        let plan = UTMStackIntegration.plan(groups, existing: [], encryptionKey: Self.key, replaceSecrets: false)
        guard case .create(let name, let contoso) = plan[0] else { Issue.record("\(plan[0])"); return }
        #expect(name == "Contoso" && contoso.cloud == .gcchigh && contoso.secret.unredacted == "Abc~secret.value_0123456789xyz")
        #expect(contoso.utmTenantID == "7d3c0c52-0000-4000-8000-00000000000a" && contoso.microsoftTenantID == "4a81a7c3-26fc-4aed-89c6-2e6039ab833b")
        #expect(plan[1] == .skip(group: "Broken", reason: "office365_tenant_id is missing or not a GUID"))
        guard case .skip(_, let reason) = plan[2] else { Issue.record("\(plan[2])"); return }
        #expect(reason.contains("Azure Germany"))
    }

    @Test func theModuleDetailsOfEarlierReleasesImportToo() throws {
        let groups = try UTMStackIntegration.groups(from: Data(Self.moduleDetails.utf8))
        let plan = UTMStackIntegration.plan(groups, existing: [], encryptionKey: nil, replaceSecrets: false)
        guard case .create(_, let northwind) = plan[0] else { Issue.record("\(plan[0])"); return }
        #expect(northwind.utmTenantID == defaultUTMStackTenantID && northwind.cloud == .commercial)
        #expect(plan[1] == .skip(group: "Empty", reason: "office365_client_secret is empty"))
    }

    /// A second import matches tenants by their Microsoft tenant id: it updates what differs and never duplicates.
    @Test func aSecondImportUpdatesAndNeverDuplicates() throws {
        let groups = try UTMStackIntegration.groups(from: Data(Self.yaml.utf8))
        let existing = [
            ExistingTenant(
                id: "a", microsoftTenantID: UUID(uuidString: "4a81a7c3-26fc-4aed-89c6-2e6039ab833b")!, name: "Contoso (old)",
                dataSource: "Contoso", utmTenantID: "7d3c0c52-0000-4000-8000-00000000000a")
        ]
        let plan = UTMStackIntegration.plan(groups, existing: existing, encryptionKey: Self.key, replaceSecrets: false)
        #expect(plan[0] == .update(id: "a", name: "Contoso", changes: ["name": "Contoso"], secret: nil))
        let same = [ExistingTenant(
            id: "a", microsoftTenantID: UUID(uuidString: "4a81a7c3-26fc-4aed-89c6-2e6039ab833b")!, name: "Contoso",
            dataSource: "Contoso", utmTenantID: "7d3c0c52-0000-4000-8000-00000000000a")]
        #expect(UTMStackIntegration.plan(groups, existing: same, encryptionKey: Self.key, replaceSecrets: false)[0] == .unchanged(id: "a", name: "Contoso"))
        guard case .update(_, _, let changes, let secret) = UTMStackIntegration.plan(groups, existing: same, encryptionKey: Self.key, replaceSecrets: true)[0] else {
            Issue.record("expected an update"); return
        }
        #expect(changes.isEmpty && secret?.unredacted == "Abc~secret.value_0123456789xyz")
    }

    @Test func otherFilesAreRefusedWithAReason() {
        #expect(throws: GatewayError.self) { try UTMStackIntegration.groups(from: Data("plugins:\n  azure: {}\n".utf8)) }
        #expect(throws: GatewayError.self) { try UTMStackIntegration.groups(from: Data("just: text".utf8)) }
    }
}
