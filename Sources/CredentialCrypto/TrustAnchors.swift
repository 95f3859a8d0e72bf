import GatewayCore
import SwiftASN1
import X509

/// The CA a network destination's certificate is verified against (`caPem`), checked when it is written: one or
/// more PEM certificates and nothing else, each one a certificate X.509 can parse. Errors never quote the text.
public enum TrustAnchors {
    public static let maxBytes = 65536

    /// Throws `invalid_ca_pem` (400) when `pem` is not what the forwarder can trust.
    public static func check(_ pem: String, field: String = "caPem") throws {
        func invalid(_ why: String) -> GatewayError {
            GatewayError(
                .invalidInput, code: "invalid_ca_pem",
                "\(field): \(why); give the PEM certificate(s) of the CA that signed UTMStack's certificate "
                    + "(-----BEGIN CERTIFICATE----- blocks, at most \(maxBytes) bytes), or leave it out to trust the system's CAs.")
        }
        guard pem.utf8.count <= maxBytes, !pem.contains("\0") else { throw invalid("is too long or holds a NUL") }
        let documents: [PEMDocument]
        do {
            documents = try PEMDocument.parseMultiple(pemString: pem)
        } catch {
            throw invalid("is not PEM text")
        }
        guard !documents.isEmpty else { throw invalid("holds no PEM certificate") }
        for (index, document) in documents.enumerated() {
            guard document.discriminator == "CERTIFICATE" else {
                throw invalid("block \(index + 1) is no certificate (only CERTIFICATE blocks belong here; never a private key)")
            }
            do {
                _ = try Certificate(derEncoded: document.derBytes)
            } catch {
                throw invalid("block \(index + 1) is not an X.509 certificate")
            }
        }
    }
}
