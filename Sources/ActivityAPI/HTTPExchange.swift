import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// One HTTP request to Microsoft. Headers in `headers` may hold secrets (Authorization): never log a request.
public struct MicrosoftRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: [(String, String)]
    public var body: [UInt8]?
    /// Where the response body's bytes are counted (blob fetches); nil for small answers.
    public var memory: MemoryClaim?

    public init(method: String, url: String, headers: [(String, String)] = [], body: [UInt8]? = nil, memory: MemoryClaim? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.memory = memory
    }
}

public struct MicrosoftResponse: Sendable {
    public var status: Int
    public var headers: [(String, String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    /// A header by name, any case (Go clients send `Nextpageuri`, Microsoft `NextPageUri`).
    public func header(_ name: String) -> String? {
        // Header names are ASCII (RFC 9110 §5.1): compared byte by byte, without Foundation's locale-aware compare.
        func lower(_ byte: UInt8) -> UInt8 { byte >= 65 && byte <= 90 ? byte | 0x20 : byte }
        return headers.first { header in
            header.0.utf8.count == name.utf8.count && zip(header.0.utf8, name.utf8).allSatisfy { lower($0) == lower($1) }
        }?.1
    }
}

/// A failure below HTTP (connection refused, reset, timeout): always worth a retry.
public struct TransportFailure: Error, Sendable, CustomStringConvertible {
    public var description: String
}

/// The seam between the Microsoft client and the network; unit tests replace it with canned responses.
public protocol HTTPExchange: Sendable {
    func send(_ request: MicrosoftRequest) async throws -> MicrosoftResponse
}

/// A response body over the per-response ceiling (`O365GW_MAX_BLOB_BYTES`): not skipped, the poll fails with a reason.
public struct ResponseTooLarge: Error, Sendable, CustomStringConvertible {
    public var limit: Int
    public var description: String { "a response of Microsoft exceeded \(limit) bytes" }
}

/// The production exchange over AsyncHTTPClient: a deadline on every request (headers and body), bodies read as
/// they arrive, each chunk counted against the request's memory claim and the per-response ceiling.
public struct AsyncHTTPExchange: HTTPExchange {
    let client: HTTPClient
    let timeout: TimeAmount
    let maxBodyBytes: Int

    public static let defaultMaxBodyBytes = 128 << 20

    /// The client for Microsoft's hosts (login, Activity API, Graph), unlike `HTTPClient.shared` (a browser's
    /// settings): it follows no redirect, since a 307 or 308 resends the request's body, a token request's client
    /// secret, to whatever host it names; it decompresses up to the body ceiling rather than up to a ratio (audit
    /// JSON can compress better than the shared client's 25×, and such a blob would fail on every try); it makes no
    /// tracing spans; it runs on an event loop of its own (``microsoftEventLoop``). The caller shuts it down.
    public static func makeClient(maxBodyBytes: Int = defaultMaxBodyBytes) -> HTTPClient {
        var configuration = HTTPClient.Configuration(
            redirectConfiguration: .disallow, decompression: .enabled(limit: .size(maxBodyBytes)))
        configuration.tracing.tracer = nil
        return HTTPClient(eventLoopGroupProvider: .shared(microsoftEventLoop), configuration: configuration)
    }

    /// One event loop thread for Microsoft's connections, kept for the process's life like NIO's singletons. With
    /// the connections spread over every core's loop, an idle poll woke a loop thread and then a task thread per
    /// request; on one loop the wake-ups batch: 10–20 % less CPU per idle poll at 10,000 tenants
    /// (docs/benchmarks.md). Decompressing and decrypting a backfill's blobs takes a fraction of that one thread.
    static let microsoftEventLoop = MultiThreadedEventLoopGroup(numberOfThreads: 1)

    public init(client: HTTPClient = .shared, timeoutSeconds: Int64 = 60, maxBodyBytes: Int = defaultMaxBodyBytes) {
        self.client = client
        self.timeout = .seconds(timeoutSeconds)
        self.maxBodyBytes = maxBodyBytes
    }

    public func send(_ request: MicrosoftRequest) async throws -> MicrosoftResponse {
        var outgoing = HTTPClientRequest(url: request.url)
        outgoing.method = HTTPMethod(rawValue: request.method)
        for (name, value) in request.headers { outgoing.headers.add(name: name, value: value) }
        if let body = request.body { outgoing.body = .bytes(ByteBuffer(bytes: body)) }
        request.memory?.restart()
        do {
            let response = try await client.execute(outgoing, timeout: timeout)
            var body: [UInt8] = []
            if let length = response.headers.first(name: "content-length").flatMap(Int.init), length <= maxBodyBytes {
                body.reserveCapacity(length)
            }
            for try await chunk in response.body {
                guard body.count + chunk.readableBytes <= maxBodyBytes else { throw ResponseTooLarge(limit: maxBodyBytes) }
                try await request.memory?.acquire(chunk.readableBytes)
                body.append(contentsOf: chunk.readableBytesView)
            }
            request.memory?.finishReceiving()
            return MicrosoftResponse(
                status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) }, body: body)
        } catch let error as HTTPClientError {
            throw TransportFailure(description: "\(error)")
        } catch let error as CancellationError {
            throw error
        } catch let error as ResponseTooLarge {
            throw error
        } catch {
            throw TransportFailure(description: String(describing: type(of: error)))
        }
    }
}
