import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

/// One HTTP request to Microsoft. Headers in `headers` may hold secrets (Authorization): never log a request.
public struct MicrosoftRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: [(String, String)]
    public var body: [UInt8]?

    public init(method: String, url: String, headers: [(String, String)] = [], body: [UInt8]? = nil) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
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
        headers.first { $0.0.caseInsensitiveCompare(name) == .orderedSame }?.1
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

/// The production exchange over AsyncHTTPClient.
public struct AsyncHTTPExchange: HTTPExchange {
    let client: HTTPClient
    let timeout: TimeAmount
    let maxBodyBytes: Int

    public init(client: HTTPClient = .shared, timeoutSeconds: Int64 = 60, maxBodyBytes: Int = 256 << 20) {
        self.client = client
        self.timeout = .seconds(timeoutSeconds)
        self.maxBodyBytes = maxBodyBytes
    }

    public func send(_ request: MicrosoftRequest) async throws -> MicrosoftResponse {
        var outgoing = HTTPClientRequest(url: request.url)
        outgoing.method = HTTPMethod(rawValue: request.method)
        for (name, value) in request.headers { outgoing.headers.add(name: name, value: value) }
        if let body = request.body { outgoing.body = .bytes(ByteBuffer(bytes: body)) }
        do {
            let response = try await client.execute(outgoing, timeout: timeout)
            var buffer = try await response.body.collect(upTo: maxBodyBytes)
            return MicrosoftResponse(
                status: Int(response.status.code), headers: response.headers.map { ($0.name, $0.value) },
                body: buffer.readBytes(length: buffer.readableBytes) ?? [])
        } catch let error as HTTPClientError {
            throw TransportFailure(description: "\(error)")
        } catch let error as CancellationError {
            throw error
        } catch {
            throw TransportFailure(description: String(describing: type(of: error)))
        }
    }
}
