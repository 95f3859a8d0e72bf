import NIOCore
import NIOEmbedded
import Synchronization
import Testing

@testable import AdminAPI

/// The admin listener's places: a new connection takes the longest idle one's place; requests in progress keep theirs.
@Suite struct ConnectionRegistryTests {
    final class Key {}

    @Test func aNewConnectionTakesTheLongestIdlePlace() throws {
        let registry = ConnectionRegistry(limit: 2)
        let keys = [Key(), Key(), Key()]
        let channels = [EmbeddedChannel(), EmbeddedChannel(), EmbeddedChannel()]
        let closed = Mutex([false, false, false])
        for index in 0..<3 {
            channels[index].closeFuture.whenComplete { _ in closed.withLock { $0[index] = true } }
        }
        #expect(registry.admit(ObjectIdentifier(keys[0]), channel: channels[0]))
        #expect(registry.admit(ObjectIdentifier(keys[1]), channel: channels[1]))
        registry.mark(ObjectIdentifier(keys[1]), busy: false)  // active more recently than the first
        #expect(registry.admit(ObjectIdentifier(keys[2]), channel: channels[2]))
        for channel in channels { channel.embeddedEventLoop.run() }
        #expect(closed.withLock { $0 } == [true, false, false], "the longest idle was closed, no other")
        #expect(registry.count == 2)
        for channel in channels.dropFirst() { _ = try? channel.finish() }
    }

    @Test func requestsInProgressKeepTheirPlaces() throws {
        let registry = ConnectionRegistry(limit: 2)
        let keys = [Key(), Key(), Key()]
        let channels = [EmbeddedChannel(), EmbeddedChannel(), EmbeddedChannel()]
        for index in 0..<2 {
            #expect(registry.admit(ObjectIdentifier(keys[index]), channel: channels[index]))
            registry.mark(ObjectIdentifier(keys[index]), busy: true)
        }
        #expect(!registry.admit(ObjectIdentifier(keys[2]), channel: channels[2]), "every place serves a request")
        #expect(registry.count == 2)
        registry.mark(ObjectIdentifier(keys[1]), busy: false)
        #expect(registry.admit(ObjectIdentifier(keys[2]), channel: channels[2]), "the request ended: its place is free")
        registry.remove(ObjectIdentifier(keys[0]))
        #expect(registry.count == 1)
        for channel in channels { _ = try? channel.finish() }
    }
}
