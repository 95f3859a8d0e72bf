import DequeModule

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
struct DeliveryWindow {
    typealias BatchID = UInt64

    struct Entry {
        var log: OutboundLog
        var bytes: Int
        var batch: BatchID
    }

    let byteBudget: Int
    let maxInFlight: Int
    private(set) var queued = Deque<Entry>()
    private(set) var inFlight = Deque<Entry>()
    private(set) var heldBytes = 0
    private(set) var highWaterBytes = 0
    private var remaining: [BatchID: Int] = [:]
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
    var undeliveredBatches: Int { remaining.count }

    /// Enqueues a batch (the caller checked ``canAdmit(bytes:)``). An empty batch is delivered at once.
    mutating func enqueue(_ logs: [OutboundLog]) -> (batch: BatchID, deliveredNow: Bool) {
        let batch = nextBatch
        nextBatch += 1
        guard !logs.isEmpty else { return (batch, true) }
        for log in logs {
            let bytes = log.byteCost
            queued.append(Entry(log: log, bytes: bytes, batch: batch))
            heldBytes += bytes
        }
        remaining[batch] = logs.count
        highWaterBytes = max(highWaterBytes, heldBytes)
        return (batch, false)
    }

    /// Moves up to the window's free room from the queue to in flight and returns them to send.
    mutating func takeForSending() -> [OutboundLog] {
        let room = maxInFlight - inFlight.count
        guard room > 0, !queued.isEmpty else { return [] }
        var out: [OutboundLog] = []
        out.reserveCapacity(min(room, queued.count))
        while out.count < room, let entry = queued.popFirst() {
            inFlight.append(entry)
            out.append(entry.log)
        }
        return out
    }

    struct Acknowledgement: Equatable {
        var delivered: Int
        var freedBytes: Int
        var completedBatches: [BatchID]
    }

    /// Applies `Ack.lastId`: delivers everything in flight up to and including the first log with that id.
    /// An id not in flight (a late or repeated acknowledgement) delivers nothing.
    mutating func acknowledge(_ lastID: String) -> Acknowledgement {
        guard let index = inFlight.firstIndex(where: { $0.log.id == lastID }) else {
            return Acknowledgement(delivered: 0, freedBytes: 0, completedBatches: [])
        }
        var completed: [BatchID] = []
        var freed = 0
        for _ in 0...index {
            let entry = inFlight.removeFirst()
            freed += entry.bytes
            let left = remaining[entry.batch, default: 1] - 1
            if left == 0 {
                remaining[entry.batch] = nil
                completed.append(entry.batch)
            } else {
                remaining[entry.batch] = left
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
