import Foundation
import Testing

@testable import GatewayCore

@Suite struct ValidationTests {
    @Test func guidsInTheirCanonicalShapeAreAccepted() throws {
        let id = try Validation.guid("4A81A7C3-26fc-4aed-89c6-2e6039ab833b", field: "tenantId")
        #expect(id.uuidString.lowercased() == "4a81a7c3-26fc-4aed-89c6-2e6039ab833b")
    }

    @Test(arguments: [
        "", "not-a-guid", "4a81a7c326fc4aed89c62e6039ab833b", "{4a81a7c3-26fc-4aed-89c6-2e6039ab833b}",
        "4a81a7c3-26fc-4aed-89c6-2e6039ab833", "4a81a7c3-26fc-4aed-89c6-2e6039ab833g", " 4a81a7c3-26fc-4aed-89c6-2e6039ab833b",
        "contoso.onmicrosoft.com",
    ])
    func malformedGuidsAreRejectedNamingTheField(_ value: String) {
        #expect { try Validation.guid(value, field: "tenantId") } throws: {
            let error = $0 as? GatewayError
            return error?.code == "invalid_field" && error?.message.hasPrefix("tenantId:") == true
        }
    }

    @Test func namesAreTrimmedAndBounded() throws {
        #expect(try Validation.text("  Contoso  ", field: "name") == "Contoso")
        #expect(try Validation.text(String(repeating: "é", count: 200), field: "name").count == 200)
        for bad in ["", "   ", String(repeating: "x", count: 201), "Con\ntoso", "tab\there"] {
            #expect(throws: GatewayError.self) { try Validation.text(bad, field: "name") }
        }
    }

    /// PostgreSQL's char_length counts code points: "é" written as e and a combining accent is one character to
    /// Swift and two to the table's CHECK, so 200 of them would pass a grapheme count and fail the insert (a 500).
    @Test func namesAreCountedInCodePointsAsTheDatabaseCountsThem() throws {
        let decomposed = String(repeating: "e\u{301}", count: 150)
        #expect(decomposed.count == 150 && decomposed.unicodeScalars.count == 300)
        #expect { try Validation.text(decomposed, field: "name") } throws: {
            ($0 as? GatewayError)?.message.hasPrefix("name: must be at most 200 characters") == true
        }
        #expect(try Validation.text(String(repeating: "e\u{301}", count: 100), field: "name").unicodeScalars.count == 200)
    }

    @Test func secretsThatLookLikeASecretIDAreRejected() {
        #expect { try Validation.clientSecret("4a81a7c3-26fc-4aed-89c6-2e6039ab833b") } throws: {
            ($0 as? GatewayError)?.message.contains("secret's ID") == true
        }
    }

    @Test func secretsAreCheckedButNeverQuoted() throws {
        #expect(try Validation.clientSecret("abc~DEF.123_x").unredacted == "abc~DEF.123_x")
        for bad in ["", " leading", "trailing ", "line\nbreak", String(repeating: "s", count: 1025)] {
            do {
                _ = try Validation.clientSecret(bad)
                Issue.record("accepted an invalid secret")
            } catch let error as GatewayError {
                #expect(error.code == "invalid_field")
                #expect(bad.isEmpty || !error.message.contains(bad.trimmingCharacters(in: .whitespacesAndNewlines)))
            } catch {
                Issue.record("unexpected error type")
            }
        }
    }

    @Test func contentTypesAreCaseExactFoldedAndOrdered() throws {
        #expect(try Validation.contentTypes(["DLP.All", "Audit.Exchange", "DLP.All"]) == [.exchange, .dlpAll])
        #expect { try Validation.contentTypes(["audit.exchange"]) } throws: {
            ($0 as? GatewayError)?.message.hasPrefix("contentTypes[0]:") == true
        }
        #expect(throws: GatewayError.self) { try Validation.contentTypes([]) }
    }

    @Test func cloudsAreTheFourPlansAnd21Vianet() throws {
        #expect(try Validation.cloud("gcchigh") == .gcchigh)
        #expect(try Validation.cloud("china") == .china)
        #expect(throws: GatewayError.self) { try Validation.cloud("azure-germany") }
    }
}
