import ArgumentParser
import AsyncHTTPClient
import Foundation
import GatewayApp
import GatewayCore
import NIOCore
import NIOHTTP1
import NIOSSL
import UTMStackImport

/// `o365-gateway tenants ...`: tenant administration from the shell, through a running gateway's admin API.
struct Tenants: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Onboard, list, change, rotate, validate and offboard tenants through a running gateway's admin API.",
        discussion: """
            The gateway is O365GW_ADMIN_URL (or --url; default http://127.0.0.1:8080) and the token O365GW_ADMIN_TOKEN
            (or a file given with --token-file): there is no flag for the token, never put it on a command line. Secrets are read from a file
            or standard input, never from a flag, and never echoed. Plain http:// is accepted only to this machine
            (127.0.0.0/8, ::1, localhost) unless --insecure is given; a redirect is never followed.

            Exit codes: 0 done; 1 done, but what was asked for failed (validate found a problem); 3 the API refused the
            request (its error code and message are printed); 4 the gateway could not be reached at that address (no
            answer, or a redirect elsewhere); 64 a usage error.
            """,
        subcommands: [List.self, Show.self, Add.self, Update.self, RotateSecret.self, Validate.self, Delete.self, ImportUTMStack.self])

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List every tenant.")
        @OptionGroup var api: AdminAPIOptions

        func run() async throws {
            try await api.run { client in
                let items = try await client.send(.GET, "/api/v1/tenants").object["items"] as? [[String: Any]] ?? []
                api.print(items) {
                    TextTable.render(
                        ["ID", "NAME", "MICROSOFT TENANT", "ENABLED", "CONTENT TYPES", "SECRET EXPIRES"],
                        items.map { t in
                            [
                                t.text("id"), t.text("name"), t.text("tenantId"), t.text("enabled"),
                                "\((t["contentTypes"] as? [String])?.count ?? 0)", t.text("secretExpiresAt"),
                            ]
                        })
                }
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "One tenant, with the status of each content type.")
        @OptionGroup var api: AdminAPIOptions
        @Argument(help: "The tenant's gateway id (from `tenants list`).") var id: String

        func run() async throws {
            try await api.run { client in
                let tenant = try await client.send(.GET, "/api/v1/tenants/\(try pathSegment(id))").object
                api.print(tenant) {
                    let keys = [
                        "id", "name", "tenantId", "clientId", "cloud", "enabled", "credentialType", "secretExpiresAt",
                        "secretExpirySource", "utmTenantId", "dataSource", "publisherId", "destination", "version",
                    ]
                    var text = TextTable.fields(keys.map { ($0, tenant.text($0)) })
                    let status = tenant["status"] as? [[String: Any]] ?? []
                    if !status.isEmpty {
                        text += "\n" + TextTable.render(
                            ["CONTENT TYPE", "STATE", "CHECKPOINT", "RECORDS", "LAST ERROR"],
                            status.map { s in
                                [
                                    s.text("contentType"), s.text("state"), s.text("checkpoint"), s.text("recordsForwarded"),
                                    (s["lastError"] as? [String: Any])?.text("code") ?? "-",
                                ]
                            })
                    }
                    return text
                }
            }
        }
    }

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Onboard a customer tenant with a client secret (from a file or standard input) or a certificate.",
            discussion: """
                printf '%s' "$SECRET" | o365-gateway tenants add --name Contoso --tenant-id GUID --client-id GUID \\
                  --secret-file - --secret-expires-at 2027-06-30T00:00:00Z
                """)
        @OptionGroup var api: AdminAPIOptions
        @Option(help: "Display name of the customer.") var name: String
        @Option(name: .customLong("tenant-id"), help: "The customer's Microsoft Entra tenant GUID.") var tenantID: String
        @Option(name: .customLong("client-id"), help: "The app registration's application (client) id.") var clientID: String
        @OptionGroup var credential: CredentialOptions
        @Option(name: .customLong("content-types"), help: "Comma-separated content types (default: all five).") var contentTypes: String?
        @Option(help: "commercial, gcc, gcchigh, dod or china (default commercial).") var cloud: String?
        @Option(name: .customLong("publisher-id"), help: "PublisherIdentifier GUID for this tenant.") var publisherID: String?
        @Option(name: .customLong("utm-tenant-id"), help: "The UTMStack tenant the events belong to.") var utmTenantID: String?
        @Option(name: .customLong("data-source"), help: "The data source name shown in UTMStack (default: the name).") var dataSource: String?
        @Option(help: "The UTMStack destination its records go to (default: default).") var destination: String?

        func run() async throws {
            var body: [String: Any] = ["name": name, "tenantId": tenantID, "clientId": clientID]
            try credential.add(to: &body)
            body["contentTypes"] = contentTypes.map(commaList)
            body["cloud"] = cloud
            body["publisherId"] = publisherID
            body["utmTenantId"] = utmTenantID
            body["dataSource"] = dataSource
            body["destination"] = destination
            try await api.run { client in
                let tenant = try await client.send(.POST, "/api/v1/tenants", body: body).object
                api.print(tenant) { "onboarded \(tenant.text("name")) as \(tenant.text("id"))\n" }
            }
        }
    }

    struct Update: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Change a tenant's settings; what is not given stays.")
        @OptionGroup var api: AdminAPIOptions
        @Argument(help: "The tenant's gateway id.") var id: String
        @Option(help: "New display name.") var name: String?
        @Flag(inversion: .prefixedEnableDisable, help: "Resume or pause collection (the checkpoint is kept).") var collection: Bool?
        @Option(name: .customLong("content-types"), help: "Comma-separated content types.") var contentTypes: String?
        @Option(name: .customLong("publisher-id")) var publisherID: String?
        @Option(name: .customLong("utm-tenant-id")) var utmTenantID: String?
        @Option(name: .customLong("data-source")) var dataSource: String?
        @Option(help: "Another UTMStack destination for its records from the next poll on.") var destination: String?
        @Option(name: .customLong("if-match"), help: "Only if the tenant's ETag still is this (e.g. '\"3\"').") var ifMatch: String?

        func run() async throws {
            var body: [String: Any] = [:]
            body["name"] = name
            body["enabled"] = collection
            body["contentTypes"] = contentTypes.map(commaList)
            body["publisherId"] = publisherID
            body["utmTenantId"] = utmTenantID
            body["dataSource"] = dataSource
            body["destination"] = destination
            guard !body.isEmpty else { throw ValidationError("Give at least one setting to change.") }
            try await api.run { client in
                let tenant = try await client.send(
                    .PATCH, "/api/v1/tenants/\(try pathSegment(id))", body: body, ifMatch: ifMatch).object
                api.print(tenant) { "updated \(tenant.text("name")) (version \(tenant.text("version")))\n" }
            }
        }
    }

    struct RotateSecret: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rotate-secret",
            abstract: "Replace the tenant's client secret (from a file or standard input) or certificate.")
        @OptionGroup var api: AdminAPIOptions
        @Argument(help: "The tenant's gateway id.") var id: String
        @OptionGroup var credential: CredentialOptions
        @Option(name: .customLong("if-match")) var ifMatch: String?

        func run() async throws {
            var body: [String: Any] = [:]
            try credential.add(to: &body)
            try await api.run { client in
                let tenant = try await client.send(
                    .PUT, "/api/v1/tenants/\(try pathSegment(id))/secret", body: body, ifMatch: ifMatch).object
                api.print(tenant) { "rotated the credential of \(tenant.text("name")); it expires \(tenant.text("secretExpiresAt"))\n" }
            }
        }
    }

    struct Validate: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Ask Microsoft now whether the tenant's credentials work; exits 1 when a check fails.")
        @OptionGroup var api: AdminAPIOptions
        @Argument(help: "The tenant's gateway id.") var id: String

        func run() async throws {
            var ok = true
            try await api.run { client in
                let report = try await client.send(.POST, "/api/v1/tenants/\(try pathSegment(id))/validate").object
                ok = report["ok"] as? Bool ?? false
                let checks = report["checks"] as? [[String: Any]] ?? []
                api.print(report) {
                    TextTable.render(
                        ["CHECK", "OK", "CODE", "ADVICE"],
                        checks.map { [$0.text("name"), $0.text("ok"), $0.text("code"), $0.text("advice")] })
                }
            }
            if !ok { throw ExitCode(1) }
        }
    }

    struct Delete: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Offboard a tenant: collection stops and its credentials are destroyed.")
        @OptionGroup var api: AdminAPIOptions
        @Argument(help: "The tenant's gateway id.") var id: String
        @Option(name: .customLong("if-match")) var ifMatch: String?

        func run() async throws {
            try await api.run { client in
                _ = try await client.send(.DELETE, "/api/v1/tenants/\(try pathSegment(id))", ifMatch: ifMatch)
                api.print(["deleted": id]) { "deleted \(id)\n" }
            }
        }
    }
}

func commaList(_ text: String) -> [String] {
    text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
}

/// A tenant id as one path segment: anything else is a usage error, never a different URL.
func pathSegment(_ id: String) throws -> String {
    guard !id.isEmpty, id.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
        throw ValidationError("\(id.prefix(60)) is not a tenant id; ids are the GUIDs `tenants list` shows.")
    }
    return id
}

/// A client secret from a file or standard input (`-`), or a certificate and key from files.
struct CredentialOptions: ParsableArguments {
    @Option(name: .customLong("secret-file"), help: "Read the client secret VALUE from this file, or `-` for standard input.")
    var secretFile: String?
    @Option(name: .customLong("certificate-file"), help: "PEM certificate registered on the app, instead of a secret.")
    var certificateFile: String?
    @Option(name: .customLong("private-key-file"), help: "The certificate's unencrypted PEM RSA private key.")
    var privateKeyFile: String?
    @Option(name: .customLong("secret-expires-at"), help: "When the secret expires (RFC 3339), for expiry alerts.")
    var secretExpiresAt: String?

    func add(to body: inout [String: Any]) throws {
        switch (secretFile, certificateFile, privateKeyFile) {
        case (.some(let file), nil, nil):
            body["clientSecret"] = try Self.read(file).trimmingCharacters(in: .newlines)
        case (nil, .some(let certificate), .some(let key)):
            body["clientCertificate"] = ["certificatePem": try Self.read(certificate), "privateKeyPem": try Self.read(key)]
        default:
            throw ValidationError("Give --secret-file, or both --certificate-file and --private-key-file.")
        }
        body["secretExpiresAt"] = secretExpiresAt
    }

    static func read(_ path: String) throws -> String {
        let data = path == "-" ? FileHandle.standardInput.readDataToEndOfFile() : FileManager.default.contents(atPath: path)
        guard let data, let text = String(data: data, encoding: .utf8), !text.isEmpty else {
            throw ValidationError("\(path == "-" ? "standard input" : path) is empty or cannot be read.")
        }
        return text
    }
}

/// Where the admin API is, how to authenticate, and how to print.
struct AdminAPIOptions: ParsableArguments {
    enum Output: String, ExpressibleByArgument, CaseIterable { case table, json }

    @Option(help: "The gateway's admin API (env O365GW_ADMIN_URL; default http://127.0.0.1:8080).")
    var url: String?
    @Option(name: .customLong("token-file"), help: "Read the admin token from this file (default: env O365GW_ADMIN_TOKEN).")
    var tokenFile: String?
    @Option(name: .customLong("ca-file"), help: "PEM CA that signed the gateway's certificate (HTTPS with a private CA).")
    var caFile: String?
    @Option(help: "table or json (default table).")
    var output: Output = .table
    @Flag(help: "Allow plain http:// to a gateway beyond this machine: the token and secrets then cross the network readable.")
    var insecure = false

    /// Runs `body` with a client; maps what went wrong to the documented exit codes.
    func run(_ body: (AdminClient) async throws -> Void) async throws {
        let base: String
        let token: Secret
        do {
            var explicit: [Setting: String] = [:]
            explicit[.adminURL] = url
            if let tokenFile {
                explicit[.adminToken] = try CredentialOptions.read(tokenFile).trimmingCharacters(in: .whitespacesAndNewlines)
            }
            let settings = try await Settings.load(.tenants, explicit: explicit)
            base = try settings.adminEndpoint(insecure: insecure).absoluteString.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
            token = try settings.requiredSecret(.adminToken)
        } catch let error as GatewayError {
            throw ValidationError(error.message)
        }
        if insecure, base.hasPrefix("http://") {
            FileHandle.standardError.write(Data("warning: --insecure: the admin token and any secret go over plain HTTP\n".utf8))
        }
        var tls = TLSConfiguration.makeClientConfiguration()
        if let caFile { tls.trustRoots = .file(caFile) }
        // No redirects: a 307 or 308 would replay the body (a customer's secret) to wherever it points, an https://
        // to http:// one would send the token in the clear. A 3xx is an error naming where it pointed.
        let http = HTTPClient(
            eventLoopGroupProvider: .singleton,
            configuration: .init(tlsConfiguration: tls, redirectConfiguration: .disallow))
        let client = AdminClient(http: http, base: base, token: token)
        do {
            try await body(client)
            try await http.shutdown()
        } catch let refusal as AdminClient.Refused {
            try? await http.shutdown()
            FileHandle.standardError.write(Data("error: HTTP \(refusal.status) \(refusal.code): \(refusal.message)\n".utf8))
            throw ExitCode(3)
        } catch let unreachable as AdminClient.Unreachable {
            try? await http.shutdown()
            FileHandle.standardError.write(Data("error: \(unreachable.description)\n".utf8))
            throw ExitCode(4)
        } catch {
            try? await http.shutdown()
            throw error
        }
    }

    /// The table, or `value` as JSON with `--output json`.
    func print(_ value: Any, table: () -> String) {
        let text: String
        switch output {
        case .table: text = table()
        case .json:
            let data = (try? JSONSerialization.data(withJSONObject: value, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])) ?? Data()
            text = String(decoding: data, as: UTF8.self) + "\n"
        }
        FileHandle.standardOutput.write(Data(text.utf8))
    }
}

/// The admin API over HTTP: JSON in and out, the bearer token on every call.
struct AdminClient {
    struct Refused: Error { var status: Int; var code: String; var message: String }
    struct Unreachable: Error, CustomStringConvertible { var description: String }
    struct Answer { var status: Int; var object: [String: Any] }

    let http: HTTPClient
    let base: String
    let token: Secret

    func send(_ method: HTTPMethod, _ path: String, body: [String: Any]? = nil, ifMatch: String? = nil) async throws -> Answer {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(token.unredacted)")
        request.headers.add(name: "Accept", value: "application/json")
        if let ifMatch { request.headers.add(name: "If-Match", value: ifMatch) }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body, options: [.sortedKeys])))
        }
        let response: HTTPClientResponse
        let bytes: ByteBuffer
        do {
            response = try await http.execute(request, timeout: .seconds(90))
            bytes = try await response.body.collect(upTo: 16 << 20)
        } catch {
            throw Unreachable(description: "the gateway at \(base) could not be reached (\(type(of: error))); is it running, and is --url right?")
        }
        let object = (try? JSONSerialization.jsonObject(with: Data(bytes.readableBytesView))) as? [String: Any] ?? [:]
        let status = Int(response.status.code)
        if (300..<400).contains(status) {
            let location = response.headers.first(name: "Location").map { Self.origin(of: $0, relativeTo: base + path) } ?? "nowhere (no Location)"
            throw Unreachable(
                description: "the gateway at \(base) answered HTTP \(status), redirecting to \(location); the CLI follows no redirect (the token and secrets would go along): give the gateway's own address with --url")
        }
        guard (200..<300).contains(status) else {
            let error = object["error"] as? [String: Any]
            throw Refused(
                status: status, code: error?["code"] as? String ?? "http_\(status)",
                message: error?["message"] as? String ?? response.status.reasonPhrase)
        }
        return Answer(status: status, object: object)
    }
}

extension AdminClient {
    /// The scheme, host and port `location` points to, resolved against `request`; never its user name or
    /// password, path or query (any of which may hold a secret).
    static func origin(of location: String, relativeTo request: String) -> String {
        guard let url = URL(string: location, relativeTo: URL(string: request))?.absoluteURL,
            let components = URLComponents(url: url, resolvingAgainstBaseURL: true),
            let scheme = components.scheme, let host = components.host, !host.isEmpty
        else { return "an address that is not a URL" }
        let shownHost = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
        return "\(scheme)://\(shownHost)" + (components.port.map { ":\($0)" } ?? "")
    }
}

extension Dictionary where Key == String, Value == Any {
    /// A field as text for a table cell; `-` when absent.
    func text(_ key: String) -> String {
        switch self[key] {
        case nil, is NSNull: "-"
        case let value as String: value
        case let value as Bool: value ? "yes" : "no"
        case let value as NSNumber: value.stringValue
        case let value as [Any]: value.map { "\($0)" }.joined(separator: ",")
        case let value?: "\(value)"
        }
    }
}

extension Tenants {
    struct ImportUTMStack: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "import-utmstack",
            abstract: "Onboard the tenants of UTMStack's own Office 365 integration from its configuration.",
            discussion: """
                FILE is UTMStack 11's plugin file (system_plugins_o365.yaml in its pipeline folder) or, for earlier
                releases, the O365 module-details JSON. Each group becomes a tenant: its name the tenant's name and
                dataSource, its UTMStack tenant its utmTenantId. A second import updates, never duplicates (tenants
                are matched by their Microsoft tenant id); secrets of tenants already onboarded are kept unless
                --replace-secrets is given. UTMStack 11 encrypts the secrets with its encryptionKey: give it in a file
                with --utmstack-encryption-key-file. A report says what was created, updated, kept and skipped.
                """)
        @OptionGroup var api: AdminAPIOptions
        @Argument(help: "UTMStack's Office 365 configuration (YAML or JSON).") var file: String
        @Flag(name: .customLong("dry-run"), help: "Show what would change, change nothing.") var dryRun = false
        @Flag(name: .customLong("replace-secrets"), help: "Also replace the secrets of tenants already onboarded.") var replaceSecrets = false
        @Option(name: .customLong("utmstack-encryption-key-file"), help: "File holding UTMStack's encryptionKey, to decrypt its secrets.")
        var encryptionKeyFile: String?

        func run() async throws {
            guard let data = FileManager.default.contents(atPath: file) else { throw ValidationError("\(file) cannot be read.") }
            let groups: [UTMStackGroup]
            do {
                groups = try UTMStackIntegration.groups(from: data)
            } catch let error as GatewayError {
                throw ValidationError("\(file): \(error.message)")
            }
            let key = try encryptionKeyFile.map { try CredentialOptions.read($0).trimmingCharacters(in: .whitespacesAndNewlines) }
            var failed = false
            try await api.run { client in
                let items = try await client.send(.GET, "/api/v1/tenants").object["items"] as? [[String: Any]] ?? []
                let existing = items.compactMap { item -> ExistingTenant? in
                    guard let id = item["id"] as? String, let tenant = (item["tenantId"] as? String).flatMap({ UUID(uuidString: $0) }) else { return nil }
                    return ExistingTenant(
                        id: id, microsoftTenantID: tenant, name: item.text("name"), dataSource: item.text("dataSource"),
                        utmTenantID: item.text("utmTenantId"))
                }
                let plan = UTMStackIntegration.plan(groups, existing: existing, encryptionKey: key, replaceSecrets: replaceSecrets)
                var rows: [[String]] = []
                for action in plan {
                    switch action {
                    case .create(let name, let tenant):
                        guard !dryRun else { rows.append(["create", name, "would be onboarded"]); continue }
                        do {
                            let created = try await client.send(.POST, "/api/v1/tenants", body: [
                                "name": tenant.name, "tenantId": tenant.microsoftTenantID, "clientId": tenant.clientID,
                                "clientSecret": tenant.secret.unredacted, "cloud": tenant.cloud.rawValue,
                                "utmTenantId": tenant.utmTenantID, "dataSource": tenant.name,
                            ]).object
                            rows.append(["created", name, created.text("id")])
                        } catch let refusal as AdminClient.Refused {
                            failed = true
                            rows.append(["refused", name, "\(refusal.code): \(refusal.message)"])
                        }
                    case .update(let id, let name, let changes, let secret):
                        let what = (changes.keys.sorted() + (secret != nil ? ["secret"] : [])).joined(separator: ", ")
                        guard !dryRun else { rows.append(["update", name, "would change \(what)"]); continue }
                        do {
                            if !changes.isEmpty { _ = try await client.send(.PATCH, "/api/v1/tenants/\(id)", body: changes) }
                            if let secret {
                                _ = try await client.send(.PUT, "/api/v1/tenants/\(id)/secret", body: ["clientSecret": secret.unredacted])
                            }
                            rows.append(["updated", name, what])
                        } catch let refusal as AdminClient.Refused {
                            failed = true
                            rows.append(["refused", name, "\(refusal.code): \(refusal.message)"])
                        }
                    case .unchanged(_, let name):
                        rows.append(["unchanged", name, "already onboarded as imported (its secret kept)"])
                    case .skip(let group, let reason):
                        rows.append(["skipped", group, reason])
                    }
                }
                api.print(["dryRun": dryRun, "results": rows.map { ["outcome": $0[0], "group": $0[1], "detail": $0[2]] }]) {
                    TextTable.render(["OUTCOME", "GROUP", "DETAIL"], rows)
                }
            }
            if failed { throw ExitCode(3) }
        }
    }
}
