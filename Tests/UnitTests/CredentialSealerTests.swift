import Crypto
import Foundation
import Testing

@testable import CredentialCrypto
@testable import GatewayCore

@Suite struct CredentialSealerTests {
    let secret = Credential.clientSecret(Secret("s3cr3t~value.with.dots"))

    @Test func roundTripRestoresTheCredential() throws {
        let sealer = CredentialSealer(keyRing: .random())
        let tenant = TenantID()
        let sealed = try sealer.seal(secret, for: tenant)
        #expect(sealed.keyID == "k1")
        #expect(try sealer.open(sealed, for: tenant) == secret)
    }

    @Test func everySealUsesAFreshNonce() throws {
        let sealer = CredentialSealer(keyRing: .random())
        let tenant = TenantID()
        let a = try sealer.seal(secret, for: tenant)
        let b = try sealer.seal(secret, for: tenant)
        #expect(a.box.prefix(12) != b.box.prefix(12))
        #expect(a.box != b.box)
    }

    @Test func theBoxDoesNotContainThePlaintext() throws {
        let sealed = try CredentialSealer(keyRing: .random()).seal(secret, for: TenantID())
        #expect(sealed.box.range(of: Data("s3cr3t".utf8)) == nil)
    }

    @Test func aWrongKeyDoesNotOpen() throws {
        let tenant = TenantID()
        let sealed = try CredentialSealer(keyRing: .random(keyID: "k1")).seal(secret, for: tenant)
        let other = CredentialSealer(keyRing: .random(keyID: "k1"))
        #expect { try other.open(sealed, for: tenant) } throws: { ($0 as? GatewayError)?.code == "credential_unreadable" }
    }

    @Test func anotherTenantsAdditionalDataDoesNotOpen() throws {
        let sealer = CredentialSealer(keyRing: .random())
        let sealed = try sealer.seal(secret, for: TenantID())
        #expect { try sealer.open(sealed, for: TenantID()) } throws: {
            ($0 as? GatewayError)?.code == "credential_unreadable"
        }
    }

    @Test func aTamperedBoxDoesNotOpen() throws {
        let sealer = CredentialSealer(keyRing: .random())
        let tenant = TenantID()
        var sealed = try sealer.seal(secret, for: tenant)
        sealed.box[sealed.box.count - 1] ^= 0x01
        #expect(throws: GatewayError.self) { try sealer.open(sealed, for: tenant) }
    }

    @Test func rotationOpensUnderTheOldKeyAndSealsUnderTheNew() throws {
        let old = KeyRing.random(keyID: "old")
        let tenant = TenantID()
        let sealedOld = try CredentialSealer(keyRing: old).seal(secret, for: tenant)
        let newKey = SymmetricKey(size: .bits256)
        let oldKey = old.key("old")!
        let rotated = CredentialSealer(keyRing: KeyRing(activeKeyID: "new", keys: ["new": newKey, "old": oldKey]))
        #expect(rotated.needsResealing(sealedOld))
        let credential = try rotated.open(sealedOld, for: tenant)
        let resealed = try rotated.seal(credential, for: tenant)
        #expect(resealed.keyID == "new")
        #expect(!rotated.needsResealing(resealed))
        let newOnly = CredentialSealer(keyRing: KeyRing(activeKeyID: "new", keys: ["new": newKey]))
        #expect(try newOnly.open(resealed, for: tenant) == secret)
        #expect { try newOnly.open(sealedOld, for: tenant) } throws: {
            ($0 as? GatewayError)?.code == "encryption_key_missing"
        }
    }
}

@Suite struct KeyRingTests {
    static let keyA = Data(repeating: 7, count: 32).base64EncodedString()
    static let keyB = Data(repeating: 9, count: 32).base64EncodedString()

    @Test func theFirstKeyIsActiveAndAllOpen() throws {
        let ring = try KeyRing(parsing: Secret("b:\(Self.keyB), a:\(Self.keyA)"))
        #expect(ring.activeKeyID == "b")
        #expect(ring.keyIDs == ["a", "b"])
        #expect(try KeyRing(parsing: ring.specification).activeKeyID == "b")
    }

    @Test(arguments: [
        "", "nokey", "a:short", "a:\(keyA),a:\(keyB)", "bad id!:\(keyA)", ":\(keyA)",
        "a:\(Data(repeating: 1, count: 16).base64EncodedString())",
    ])
    func invalidSpecificationsAreRejectedWithoutEchoingKeys(_ spec: String) {
        do {
            _ = try KeyRing(parsing: Secret(spec))
            Issue.record("accepted \(spec.count) characters of invalid keys")
        } catch let error as GatewayError {
            #expect(error.code == "invalid_encryption_keys")
            #expect(!error.message.contains(Self.keyA) && !error.message.contains(Self.keyB))
        } catch {
            Issue.record("unexpected error type")
        }
    }

    @Test func descriptionsAreRedacted() throws {
        let ring = try KeyRing(parsing: Secret("a:\(Self.keyA)"))
        #expect(!"\(ring)".contains(Self.keyA))
        #expect(!String(reflecting: ring).contains(Self.keyA))
    }
}

@Suite struct SecretTests {
    @Test func everyRenderingIsRedacted() {
        let secret = Secret("hunter2-very-secret")
        var dumped = ""
        dump(secret, to: &dumped)
        for text in ["\(secret)", String(describing: secret), String(reflecting: secret), dumped,
                     "\(Credential.clientSecret(secret))", String(reflecting: Credential.clientSecret(secret))] {
            #expect(!text.contains("hunter2"), "leaked in: \(text.count) characters")
        }
    }

    @Test func constantTimeComparison() {
        let secret = Secret("abcdef")
        #expect(secret.constantTimeEquals("abcdef"))
        #expect(!secret.constantTimeEquals("abcdeg"))
        #expect(!secret.constantTimeEquals("abcde"))
        #expect(!secret.constantTimeEquals("abcdefg"))
        #expect(!secret.constantTimeEquals(""))
    }
}
