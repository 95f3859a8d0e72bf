#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Where stored destinations may point (docs/destinations.md): a socket only in the directories the operator
/// allows (`O365GW_DESTINATION_SOCKET_DIRECTORIES`), a network destination only at the hosts and ports the operator
/// allows (`O365GW_DESTINATION_ALLOWED_HOSTS`; any when unset). The admin API can then not make the gateway
/// connect to an arbitrary local socket or internal service. Checked when a destination is written (a 400) and
/// again when its forwarder is built (a destination stored before the policy changed fails alone).
public struct DestinationPolicy: Sendable, Equatable {
    /// Absolute directories; a socket must be directly in one of them, and not a symbolic link.
    public var socketDirectories: [String]
    /// Nil: any host and port.
    public var allowedHosts: [HostPattern]?

    public init(socketDirectories: [String], allowedHosts: [HostPattern]? = nil) {
        self.socketDirectories = socketDirectories.map(Self.normalized)
        self.allowedHosts = allowedHosts
    }

    /// Sockets in the directory of `defaultSocket` (the configured engine's), any host.
    public static func defaultFor(socket defaultSocket: String) -> DestinationPolicy {
        DestinationPolicy(socketDirectories: [directory(of: defaultSocket)])
    }

    public static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), slash != path.startIndex else { return "/" }
        return String(path[..<slash])
    }

    /// Throws `socket_path_not_allowed` or `host_not_allowed` (400) when the endpoint is outside the policy.
    public func check(_ endpoint: Destination.Endpoint) throws {
        switch endpoint {
        case .socket(let path):
            guard allows(socketPath: path) else {
                throw GatewayError(
                    .invalidInput, code: "socket_path_not_allowed",
                    "socketPath: must be a path inside \(socketDirectories.joined(separator: " or ")) without . or .. "
                        + "components (O365GW_DESTINATION_SOCKET_DIRECTORIES).")
            }
        case .network(let host, let port, _, _):
            guard allows(host: host, port: port) else {
                throw GatewayError(
                    .invalidInput, code: "host_not_allowed",
                    "host: this gateway may not send to that host and port (O365GW_DESTINATION_ALLOWED_HOSTS lists those it may).")
            }
        }
    }

    /// A socket directly in one of the directories (not below: other services keep their sockets in subfolders),
    /// and not a symbolic link (which would lead out of them when connected).
    func allows(socketPath path: String) -> Bool {
        let components = path.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        guard path.hasPrefix("/"), components.allSatisfy({ !$0.isEmpty && $0 != "." && $0 != ".." }) else { return false }
        let parent = components.count == 1 ? "/" : "/" + components.dropLast().joined(separator: "/")
        return socketDirectories.contains(parent) && !Self.isSymbolicLink(path)
    }

    static func isSymbolicLink(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFLNK
    }

    func allows(host: String, port: Int) -> Bool {
        guard let allowedHosts else { return true }
        return allowedHosts.contains { $0.matches(host: host, port: port) }
    }

    static func normalized(_ directory: String) -> String {
        var directory = directory
        while directory.count > 1 && directory.hasSuffix("/") { directory.removeLast() }
        return directory
    }
}

/// One entry of `O365GW_DESTINATION_ALLOWED_HOSTS`: `host`, `host:port`, `*.domain` (any name below it),
/// `*` (any host), each with `:port` or `:*` (any port, the same as none); an IPv6 address in brackets.
public struct HostPattern: Sendable, Equatable, CustomStringConvertible {
    /// Lower case; `*` or `*.suffix` for a wildcard.
    public var host: String
    /// Nil: any port.
    public var port: Int?

    public init(host: String, port: Int? = nil) {
        self.host = host.lowercased()
        self.port = port
    }

    /// Nil when the text is no pattern.
    public init?(parsing text: String) {
        var rest = Substring(text.trimmingCharacters(in: .whitespaces))
        var port: Int?
        if rest.hasPrefix("[") {
            guard let close = rest.firstIndex(of: "]") else { return nil }
            let after = rest[rest.index(after: close)...]
            if after.hasPrefix(":") {
                guard let parsed = Self.port(after.dropFirst()) else { return nil }
                port = parsed
            } else if !after.isEmpty {
                return nil
            }
            rest = rest[rest.index(after: rest.startIndex)..<close]
        } else if let colon = rest.lastIndex(of: ":") {
            guard rest.firstIndex(of: ":") == colon, let parsed = Self.port(rest[rest.index(after: colon)...]) else { return nil }
            port = parsed
            rest = rest[..<colon]
        }
        let host = String(rest)
        let refused = { (c: Character) in c.isWhitespace || c == "/" || c == "[" || c == "]" }
        guard !host.isEmpty, host.utf8.count <= 253, !host.contains(where: refused) else { return nil }
        if host.contains("*") {
            guard host == "*" || (host.hasPrefix("*.") && host.count > 2 && !host.dropFirst(2).contains("*")) else { return nil }
        }
        self.init(host: host, port: port)
    }

    /// Some(nil) for `*`, the port for a number in range, nil for anything else.
    private static func port(_ text: Substring) -> Int?? {
        if text == "*" { return .some(nil) }
        guard let number = Int(text), (1...65535).contains(number) else { return nil }
        return .some(number)
    }

    public func matches(host candidate: String, port candidatePort: Int) -> Bool {
        if let port, port != candidatePort { return false }
        var name = candidate.lowercased()
        if name.hasSuffix(".") { name.removeLast() }
        if host == "*" { return true }
        if host.hasPrefix("*.") { return name.hasSuffix(host.dropFirst(1)) && name.count > host.count - 1 }
        return name == host
    }

    public var description: String {
        let shown = host.contains(":") ? "[\(host)]" : host
        return port.map { "\(shown):\($0)" } ?? shown
    }
}
