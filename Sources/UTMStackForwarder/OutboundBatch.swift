import GatewayCore
import NIOCore

/// Logs for UTMStack, encoded for the wire as they are added (``GRPCWire``), by the submitter's task: the
/// forwarder then moves bytes, never fields, and writes runs of consecutive logs as one slice of this buffer.
public struct OutboundBatch: Sendable {
    /// Every log as a length-prefixed `plugins.Log` message, back to back.
    private(set) var buffer: ByteBuffer
    /// The id of each log, in order.
    private(set) var ids: [String] = []
    /// Where each log's message ends in `buffer` (it starts where the previous one ends).
    private(set) var ends: [Int] = []
    /// Where the logs come from, for a log UTMStack refuses and the gateway sets aside.
    public var origin: LogOrigin?

    /// Room for `count` logs whose `raw` records take `rawBytes` together (the other fields and the framing take
    /// about 160 bytes a log), so the buffer is allocated once.
    public init(rawBytes: Int, count: Int) {
        buffer = ByteBufferAllocator().buffer(capacity: rawBytes + count * 160)
    }

    public init(_ logs: [OutboundLog]) {
        self.init(rawBytes: logs.reduce(0) { $0 + $1.raw.utf8.count }, count: logs.count)
        for log in logs { append(log) }
    }

    /// One log already encoded (a dead letter sent again): its length-prefixed `plugins.Log` message and its id.
    public init(encodedMessage: [UInt8], id: String, origin: LogOrigin?) {
        buffer = ByteBufferAllocator().buffer(capacity: encodedMessage.count)
        buffer.writeBytes(encodedMessage)
        ids = [id]
        ends = [buffer.writerIndex]
        self.origin = origin
    }

    public mutating func append(_ log: OutboundLog) {
        GRPCWire.appendLog(log, to: &buffer)
        ids.append(log.id)
        ends.append(buffer.writerIndex)
    }

    public var count: Int { ids.count }
    public var isEmpty: Bool { ids.isEmpty }

    /// What the batch costs in memory while it waits for delivery (the in-flight byte budget counts this): its
    /// buffer's whole allocation and an entry per log.
    var byteCost: Int { buffer.capacity + ids.count * DeliveryWindow.entryOverhead }
}

/// The tenant, content type and blob a batch's logs come from.
public struct LogOrigin: Sendable, Hashable {
    public var tenant: TenantID
    public var contentType: ContentType?
    public var contentID: String?

    public init(tenant: TenantID, contentType: ContentType?, contentID: String?) {
        self.tenant = tenant
        self.contentType = contentType
        self.contentID = contentID
    }
}
