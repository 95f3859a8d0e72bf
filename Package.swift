// swift-tools-version:6.1
// Swift 6 language mode (the default for tools 6.x): complete strict concurrency checking in every target.
import PackageDescription

let package = Package(
    name: "o365-gateway",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "o365-gateway", targets: ["O365Gateway"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-asn1", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-certificates", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-configuration", from: "1.4.0", traits: ["JSON", "YAML", "CommandLineArguments"]),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-nio-http2", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-openapi-runtime", from: "1.13.4"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/swift-openapi-hummingbird", from: "2.1.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        // Domain types, validation, error codes and the ports (protocols) other targets implement.
        .target(
            name: "GatewayCore",
            dependencies: [.product(name: "Logging", package: "swift-log")]
        ),
        // Sealing of tenant credentials: AES-256-GCM under a key ring with key ids.
        .target(
            name: "CredentialCrypto",
            dependencies: [
                "GatewayCore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
            ]
        ),
        // PostgreSQL: migrations and the tenant registry.
        .target(
            name: "PostgresStorage",
            dependencies: [
                "GatewayCore",
                "CredentialCrypto",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // The admin REST API: the OpenAPI document, its generated server code, handlers and middleware.
        .target(
            name: "AdminAPI",
            dependencies: [
                "GatewayCore",
                "CredentialCrypto",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "OpenAPIHummingbird", package: "swift-openapi-hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
            ],
            exclude: ["openapi.yaml", "openapi-generator-config.yaml"]
        ),
        // The Office 365 Management Activity API client: tokens, subscriptions, content, blobs, throttling.
        .target(
            name: "ActivityAPI",
            dependencies: [
                "GatewayCore",
                "CredentialCrypto",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        // A seeded simulator of the Activity API, its token endpoints and Graph, for tests and the demo.
        .target(
            name: "MicrosoftSimulator",
            dependencies: [
                "CredentialCrypto",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // Scheduling of collection work: leases with fencing, fair rebalancing, collection plans (pure).
        .target(
            name: "Scheduling",
            dependencies: ["GatewayCore"]
        ),
        // Collection: the scheduler holding leases and the collectors moving data from Microsoft to UTMStack.
        .target(
            name: "Collection",
            dependencies: [
                "GatewayCore", "Scheduling", "ActivityAPI", "PostgresStorage", "UTMStackForwarder",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // The UTMStack wire contract (package plugins): the .proto and its generated Swift code.
        .target(
            name: "UTMStackProtocol",
            dependencies: [
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
            ],
            exclude: ["plugins.proto"]
        ),
        // Delivery to UTMStack: event shaping, the acknowledged delivery window, the gRPC call (HTTP/2 framed by
        // hand on SwiftNIO, docs/utmstack-stream.md), the forwarder, notifications.
        .target(
            name: "UTMStackForwarder",
            dependencies: [
                "GatewayCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // A UTMStack-compatible engine for local use (demo, tests, benchmarks).
        .target(
            name: "UTMStackReceiver",
            dependencies: [
                "UTMStackProtocol",
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // glibc's malloc tuning, which Swift's Glibc module does not export (HeapTuning).
        .target(name: "CHeap"),
        // Configuration and the one place where everything is wired into services.
        .target(
            name: "GatewayApp",
            dependencies: [
                "CHeap",
                "GatewayCore",
                "CredentialCrypto",
                "PostgresStorage",
                "AdminAPI",
                "ActivityAPI",
                "Collection",
                "UTMStackForwarder",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // What runs the product on this machine without Microsoft or UTMStack: onboarding simulated tenants, the demo's
        // status table, the benchmarks. Production wiring (GatewayApp) links none of it.
        .target(
            name: "DevTools",
            dependencies: [
                "GatewayApp", "GatewayCore", "CredentialCrypto", "PostgresStorage", "Collection", "UTMStackForwarder",
                "MicrosoftSimulator", "UTMStackReceiver", "ActivityAPI",
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Reading UTMStack's own Office 365 integration (its plugin YAML, or the module-details JSON of earlier
        // releases) to onboard its tenants (`tenants import-utmstack`); pure but for UTMStack's cipher.
        .target(
            name: "UTMStackImport",
            dependencies: [
                "GatewayCore",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ]
        ),
        .executableTarget(
            name: "O365Gateway",
            dependencies: [
                "AdminAPI",
                "DevTools",
                "UTMStackImport",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                "GatewayApp",
                "GatewayCore",
                "ActivityAPI",
                "Collection",
                "MicrosoftSimulator",
                "UTMStackForwarder",
                "UTMStackReceiver",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "UnitTests",
            dependencies: [
                "GatewayCore", "CredentialCrypto", "PostgresStorage", "AdminAPI", "GatewayApp", "UTMStackForwarder",
                "UTMStackProtocol", "ActivityAPI", "MicrosoftSimulator", "Scheduling", "Collection", "UTMStackImport",
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHPACK", package: "swift-nio-http2"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "GatewayCore", "CredentialCrypto", "PostgresStorage", "AdminAPI", "GatewayApp", "DevTools",
                "UTMStackForwarder", "UTMStackReceiver", "UTMStackProtocol", "ActivityAPI", "MicrosoftSimulator",
                "Collection",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "GRPCCore", package: "grpc-swift-2"),
                .product(name: "GRPCNIOTransportHTTP2", package: "grpc-swift-nio-transport"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ]
        ),
    ]
)
