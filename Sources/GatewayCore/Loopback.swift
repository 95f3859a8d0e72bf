#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// This machine's own addresses: 127.0.0.0/8, ::1 and `localhost`. What reaches one of them never crosses a network,
/// so plain HTTP to it exposes nothing; everywhere else a secret needs TLS.
public enum Loopback {
    /// Whether `host` (a name or an address, IPv6 with or without its brackets) is a loopback address. A name is
    /// loopback only when it is `localhost`: `127.example.com` is not.
    public static func contains(host: String) -> Bool {
        var host = host.lowercased()
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        // Not `localhost.`: a fully qualified name skips the hosts file and is asked of DNS, which an attacker may answer.
        if host == "localhost" { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            return UInt32(bigEndian: v4.s_addr) >> 24 == 127
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) } == Array(repeating: 0, count: 15) + [1]
        }
        return false
    }
}
