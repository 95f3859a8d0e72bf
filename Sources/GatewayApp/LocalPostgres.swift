import Foundation
import GatewayCore
import Logging
import PostgresStorage

/// A private PostgreSQL cluster in a temporary folder, for `demo`: initdb, start on a free port, stop and remove.
/// As root (CI, containers) the server runs as the `postgres` user, since initdb refuses root.
public final class LocalPostgres: Sendable {
    public let directory: URL
    public let port: Int
    let binDirectory: String
    let runAsPostgres: Bool
    let logger: Logger

    public var databaseURL: DatabaseURL {
        get throws { try DatabaseURL(Secret("postgres://postgres@127.0.0.1:\(port)/postgres?sslmode=disable")) }
    }

    /// Creates and starts the cluster.
    /// - Parameter tls: a PEM certificate and key to serve TLS with (`ssl = on`); nil for plain TCP only.
    public init(logger: Logger, tls: (certificatePEM: String, keyPEM: String)? = nil) throws {
        guard let bin = Self.findBinaries() else {
            throw GatewayError(
                .unavailable, code: "postgres_missing",
                "PostgreSQL server binaries were not found under /usr/lib/postgresql; install them with "
                    + "apt-get install -y postgresql-15 (scripts/demo.sh does this for you).")
        }
        self.binDirectory = bin
        self.logger = logger
        self.runAsPostgres = geteuid() == 0
        self.directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("o365gw-demo-\(UUID().uuidString.prefix(8))")
        self.port = Self.freePort()
        try FileManager.default.createDirectory(
            at: directory.appendingPathComponent("sock"), withIntermediateDirectories: true)
        var options = "-p \(port) -k \(directory.appendingPathComponent("sock").path) -c listen_addresses=127.0.0.1 -c fsync=off"
        if let tls {
            let certificate = directory.appendingPathComponent("server.crt").path, key = directory.appendingPathComponent("server.key").path
            try tls.certificatePEM.write(toFile: certificate, atomically: true, encoding: .utf8)
            try tls.keyPEM.write(toFile: key, atomically: true, encoding: .utf8)
            // PostgreSQL refuses a key that others may read.
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: key)
            options += " -c ssl=on -c ssl_cert_file=\(certificate) -c ssl_key_file=\(key)"
        }
        if runAsPostgres { try run("/bin/chown", ["-R", "postgres", directory.path], asPostgres: false) }
        let data = directory.appendingPathComponent("data").path
        try run(
            "\(bin)/initdb", ["-D", data, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-locale"],
            asPostgres: runAsPostgres)
        try run(
            "\(bin)/pg_ctl",
            [
                "-D", data, "-l", directory.appendingPathComponent("server.log").path, "-w", "-t", "30", "-o", options,
                "start",
            ], asPostgres: runAsPostgres)
        logger.info("private PostgreSQL started", metadata: ["port": "\(port)", "dir": "\(directory.path)"])
    }

    /// Stops the server and deletes the folder.
    public func stop() {
        try? run(
            "\(binDirectory)/pg_ctl", ["-D", directory.appendingPathComponent("data").path, "-m", "fast", "-w", "stop"],
            asPostgres: runAsPostgres)
        try? FileManager.default.removeItem(at: directory)
        logger.info("private PostgreSQL stopped")
    }

    /// Restarts the server (fast shutdown: open sessions are ended), as an upgrade or a failover does.
    public func restart() throws {
        try run(
            "\(binDirectory)/pg_ctl",
            ["-D", directory.appendingPathComponent("data").path, "-m", "fast", "-w", "-t", "30", "restart"],
            asPostgres: runAsPostgres)
    }

    /// SIGSTOP to the server and all its processes: connections stay open and nothing answers (a hung database).
    public func freeze() { signalAll(SIGSTOP) }

    /// SIGCONT after ``freeze()``.
    public func thaw() { signalAll(SIGCONT) }

    /// The postmaster (first line of postmaster.pid) and its children.
    /// Signals the postmaster first, then its children: the postmaster stopped forks no more, so no backend
    /// started meanwhile escapes the signal (one that did kept answering through a "freeze").
    private func signalAll(_ signal: Int32) {
        guard let text = try? String(contentsOf: directory.appendingPathComponent("data/postmaster.pid"), encoding: .utf8),
            let line = text.split(separator: "\n").first, let postmaster = Int32(line)
        else { return }
        kill(postmaster, signal)
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry),
                let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { continue }
            // pid (comm) state ppid ...
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, Int32(fields[1]) == postmaster { kill(pid, signal) }
        }
    }

    static func findBinaries() -> String? {
        let root = "/usr/lib/postgresql"
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return versions.compactMap(Int.init).sorted(by: >).map { "\(root)/\($0)/bin" }
            .first { FileManager.default.isExecutableFile(atPath: "\($0)/initdb") }
    }

    /// A port the kernel just handed out and released; good enough for a private server on loopback.
    public static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// Runs a command to completion with its output appended to `commands.log` in the cluster folder.
    /// posix_spawn and waitpid, not Foundation's Process: its waitUntilExit hangs on Linux once pg_ctl has
    /// daemonized the server.
    private func run(_ executable: String, _ arguments: [String], asPostgres: Bool) throws {
        let argv = asPostgres ? ["/usr/sbin/runuser", "-u", "postgres", "--", executable] + arguments : [executable] + arguments
        let logPath = directory.appendingPathComponent("commands.log").path
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var cArguments = argv.map { strdup($0) } + [nil]
        defer { cArguments.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, argv[0], &actions, nil, &cArguments, environ)
        var status: Int32 = 0
        if spawned == 0 {
            while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        }
        let exitCode = spawned == 0 ? (status >> 8) & 0xff : -1
        guard spawned == 0, status & 0x7f == 0, exitCode == 0 else {
            let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            throw GatewayError(
                .unavailable, code: "postgres_failed",
                "\((executable as NSString).lastPathComponent) failed (exit \(exitCode)): \(text.suffix(500))")
        }
    }
}
