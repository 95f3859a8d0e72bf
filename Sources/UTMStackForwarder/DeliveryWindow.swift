import DequeModule
import NIOCore

/// The bookkeeping of delivery to UTMStack, without I/O: what waits to be sent, what is in flight on the current
/// stream, which batches are fully acknowledged, and how many bytes are held (the memory budget).
///
/// Rules:
/// - Logs are sent in the order they were enqueued.
/// - An acknowledgement of id X on a stream delivers X and everything sent before it on that stream.
/// - When a stream is lost, what was in flight goes back to the front of the queue, in order, to be sent again.
/// - A batch is delivered when all its logs are; batches complete in order.
/// - Held bytes (queued plus in flight) stay within the budget, except that one batch larger than the budget is
///   admitted when nothing else is held (else it could never be sent).
///
/// Logs arrive encoded (``OutboundBatch``); the window tracks each by id and position and hands the writer slices
/// of the batches' buffers, one per run of consecutive logs.
struct DeliveryWindow {
    typealias BatchID = UInt64

    /// What a log costs beyond its encoded bytes while held (its entry and id).
    static let entryOverhead = 64

    struct Entry {
        var id: String
        var batch: BatchID
        /// The log's message in its batch's buffer.
        var start: Int
        var end: Int
        var bytes: Int { end - start + DeliveryWindow.entryOverhead }
    }

    /// What to write now: `count` logs as consecutive slices of their batches' buffers.
    struct Outgoing {
        var count = 0
        var chunks: [ByteBuffer] = []
    }

    let byteBudget: Int
    let maxInFlight: Int
    private(set) var queued = Deque<Entry>()
    private(set) var inFlight = Deque<Entry>()
    private(set) var heldBytes = 0
    private(set) var highWaterBytes = 0
    /// Each undelivered batch: its buffer, its logs not yet acknowledged, and the bytes its buffer holds beyond its
    /// logs (allocations are rounded up to a power of two), freed with the batch.
    private var batches: [BatchID: (buffer: ByteBuffer, remaining: Int, slack: Int)] = [:]
    private var nextBatch: BatchID = 1

    init(byteBudget: Int, maxInFlight: Int) {
        precondition(byteBudget > 0 && maxInFlight > 0)
        self.byteBudget = byteBudget
        self.maxInFlight = maxInFlight
    }

    /// Whether a batch of `bytes` may be enqueued now.
    func canAdmit(bytes: Int) -> Bool { heldBytes == 0 || heldBytes + bytes <= byteBudget }

    var isIdle: Bool { queued.isEmpty && inFlight.isEmpty }

    /// Whether the writer should be woken after an acknowledgement: logs wait and at least a quarter of the window
    /// is free. Waking it for every freed slot would write one message per flush when the window is saturated.
    var worthSending: Bool { !queued.isEmpty && inFlight.count <= maxInFlight - max(1, maxInFlight / 4) }

    /// Enqueues a batch (the caller checked ``canAdmit(bytes:)``). An empty batch is delivered at once.
    mutating func enqueue(_ batch: OutboundBatch) -> (batch: BatchID, deliveredNow: Bool) {
        let id = nextBatch
        nextBatch += 1
        guard !batch.isEmpty else { return (id, true) }
        var start = 0
        for (logID, end) in zip(batch.ids, batch.ends) {
            queued.append(Entry(id: logID, batch: id, start: start, end: end))
            start = end
        }
        batches[id] = (batch.buffer, batch.count, batch.buffer.capacity - batch.buffer.readableBytes)
        heldBytes += batch.byteCost
        highWaterBytes = max(highWaterBytes, heldBytes)
        return (id, false)
    }

    /// Moves up to the window's free room from the queue to in flight and returns their bytes to send.
    mutating func takeForSending() -> Outgoing {
        var outgoing = Outgoing()
        let room = maxInFlight - inFlight.count
        guard room > 0, !queued.isEmpty else { return outgoing }
        var run: (batch: BatchID, start: Int, end: Int)?
        func flush(_ run: (batch: BatchID, start: Int, end: Int)?) {
            guard let run, let buffer = batches[run.batch]?.buffer else { return }
            outgoing.chunks.append(buffer.getSlice(at: buffer.readerIndex + run.start, length: run.end - run.start)!)
        }
        while outgoing.count < room, let entry = queued.popFirst() {
            inFlight.append(entry)
            outgoing.count += 1
            if let current = run, current.batch == entry.batch, current.end == entry.start {
                run = (current.batch, current.start, entry.end)
            } else {
                flush(run)
                run = (entry.batch, entry.start, entry.end)
            }
        }
        flush(run)
        return outgoing
    }

    struct Acknowledgement: Equatable {
        var delivered: Int
        var freedBytes: Int
        var completedBatches: [BatchID]
    }

    /// Applies `Ack.lastId`: delivers everything in flight up to and including the first log with that id.
    /// An id not in flight (a late or repeated acknowledgement) delivers nothing.
    mutating func acknowledge(_ lastID: String) -> Acknowledgement {
        guard let index = inFlight.firstIndex(where: { $0.id == lastID }) else {
            return Acknowledgement(delivered: 0, freedBytes: 0, completedBatches: [])
        }
        var completed: [BatchID] = []
        var freed = 0
        for _ in 0...index {
            let entry = inFlight.removeFirst()
            freed += entry.bytes
            let left = (batches[entry.batch]?.remaining ?? 1) - 1
            if left == 0 {
                freed += batches.removeValue(forKey: entry.batch)?.slack ?? 0
                completed.append(entry.batch)
            } else {
                batches[entry.batch]?.remaining = left
            }
        }
        heldBytes -= freed
        return Acknowledgement(delivered: index + 1, freedBytes: freed, completedBatches: completed)
    }

    /// The stream broke: what was in flight is queued again, first, in its original order. Returns how many.
    @discardableResult
    mutating func streamLost() -> Int {
        let count = inFlight.count
        while let entry = inFlight.popLast() { queued.prepend(entry) }
        return count
    }
}
