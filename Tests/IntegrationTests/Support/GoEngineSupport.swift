import Foundation
import GatewayCore
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The grpc-go engine (Tests/GoEngine/utmstack-engine, built by scripts/test.sh; `O365GW_GO_ENGINE` names it): an
/// independent HTTP/2 and gRPC implementation, the one UTMStack's engine is built on, as a child process that a test
/// can freeze (SIGSTOP), thaw, replace and kill.
final class GoEngine: Sendable {
    let process: Process
    let socket: String
    let record: URL
    let output: URL

    /// Starts an engine on `socket` (replacing a stale socket file, as an orchestrator's new container does).
    /// `arguments`: `-refuse TEXT`, `-ack-delay 5ms`, `-max-connection-age 1s`, `-max-connection-age-grace 30s`,
    /// `-fail-for 10s -fail-status 13 -fail-message TEXT` (every call ends with that status for that long).
    static func start(socket: String, _ arguments: [String] = []) async throws -> GoEngine {
        let path = try #require(
            ProcessInfo.processInfo.environment["O365GW_GO_ENGINE"],
            "O365GW_GO_ENGINE is not set; run the tests with scripts/test.sh, which builds the grpc-go engine")
        let directory = (socket as NSString).deletingLastPathComponent
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let name = UUID().uuidString.prefix(8)
        let record = URL(fileURLWithPath: directory).appendingPathComponent("engine-\(name).tsv")
        let output = URL(fileURLWithPath: directory).appendingPathComponent("engine-\(name).log")
        FileManager.default.createFile(atPath: record.path, contents: nil)
        FileManager.default.createFile(atPath: output.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = ["-socket", socket, "-record", record.path] + arguments
        let handle = try FileHandle(forWritingTo: output)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        let engine = GoEngine(process: process, socket: socket, record: record, output: output)
        // Serving once its output says so (the socket file may still be the stale one of a frozen engine).
        let deadline = ContinuousClock.now + .seconds(10)
        while !engine.outputText.contains("serving") {
            guard ContinuousClock.now < deadline, process.isRunning else {
                throw GatewayError(.unavailable, code: "engine_failed", "the Go engine did not start: \(engine.outputText)")
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        return engine
    }

    private init(process: Process, socket: String, record: URL, output: URL) {
        self.process = process
        self.socket = socket
        self.record = record
        self.output = output
    }

    var outputText: String { (try? String(contentsOf: output, encoding: .utf8)) ?? "" }

    /// Every line the engine recorded: kind ("call", "log", "message"), log id, record Id.
    var lines: [(kind: String, logID: String, recordID: String)] {
        let text = (try? String(contentsOf: record, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").map {
            let fields = $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            return (fields[0], fields.count > 1 ? fields[1] : "", fields.count > 2 ? fields[2] : "")
        }
    }

    /// The ids of the logs it acknowledged, in order.
    var logIDs: [String] { lines.filter { $0.kind == "log" }.map(\.logID) }
    /// How many `Input` calls it served.
    var calls: Int { lines.filter { $0.kind == "call" }.count }

    /// SIGSTOP: its connections stay open and nothing is read or answered (a hung engine).
    func freeze() { kill(process.processIdentifier, SIGSTOP) }
    func thaw() { kill(process.processIdentifier, SIGCONT) }

    /// Stops it for good (SIGKILL, after SIGCONT so a frozen one dies too).
    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        kill(process.processIdentifier, SIGCONT)
        process.waitUntilExit()
    }

    deinit { stop() }
}
