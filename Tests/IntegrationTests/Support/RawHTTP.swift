import Foundation
import GatewayCore
import NIOCore
import NIOPosix

/// HTTP/1.1 written byte for byte over a TCP connection: the request target is sent exactly as given (no client
/// library normalises `//`, `/./`, `..` or percent-encoding away), as `curl --path-as-is` would.
enum RawHTTP {
    struct Answer: Sendable {
        var status: Int
        var text: String
    }

    /// Sends one request with `Connection: close` and reads the answer until the server closes.
    static func send(
        port: Int, method: String, target: String, headers: [(String, String)] = [], body: String? = nil,
        timeout: Duration = .seconds(10)
    ) async throws -> Answer {
        var request = "\(method) \(target) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nConnection: close\r\n"
        for (name, value) in headers { request += "\(name): \(value)\r\n" }
        if let body { request += "Content-Length: \(body.utf8.count)\r\n\r\n\(body)" } else { request += "\r\n" }
        let bytes = try await exchange(port: port, writes: [request], timeout: timeout)
        let text = String(decoding: bytes, as: UTF8.self)
        let statusLine = text.split(separator: "\r\n", maxSplits: 1).first ?? ""
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else {
            throw RawHTTPError(description: "no HTTP status in \(text.prefix(200).debugDescription)")
        }
        return Answer(status: status, text: text)
    }

    /// Writes `writes` (each after `pause`), then reads until the server closes the connection; what it answered.
    static func exchange(
        port: Int, writes: [String], pause: Duration = .zero, timeout: Duration
    ) async throws -> [UInt8] {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        return try await withTimeout(timeout) {
            try await channel.executeThenClose { inbound, outbound in
                for (index, write) in writes.enumerated() {
                    if index > 0 && pause > .zero { try await Task.sleep(for: pause) }
                    do { try await outbound.write(ByteBuffer(string: write)) } catch { break }
                }
                var received: [UInt8] = []
                do {
                    for try await buffer in inbound { received += Array(buffer.readableBytesView) }
                } catch {}
                return received
            }
        }
    }
}

struct RawHTTPError: Error, CustomStringConvertible {
    var description: String
}
