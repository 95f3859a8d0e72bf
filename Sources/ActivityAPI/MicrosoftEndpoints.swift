import Foundation
import GatewayCore

/// The Microsoft hosts of one cloud: sign-in, the Office 365 Management Activity API, and Graph.
public struct MicrosoftEndpoints: Sendable, Equatable {
    public var login: URL
    public var manage: URL
    public var graph: URL
    /// The token `resource` (v1) and the base of the v2 `scope`: always the cloud's real manage host, also when
    /// `manage` is overridden to point at a proxy or the simulator.
    public var resource: String
    /// Whether Microsoft documents this cloud for the Activity API (21Vianet is not).
    public var isExperimental: Bool

    public static func forCloud(_ cloud: Cloud, overrides: Overrides = .init()) -> MicrosoftEndpoints {
        let (login, manage, graph, experimental): (String, String, String, Bool) =
            switch cloud {
            case .commercial: ("https://login.microsoftonline.com", "https://manage.office.com", "https://graph.microsoft.com", false)
            case .gcc: ("https://login.microsoftonline.com", "https://manage-gcc.office.com", "https://graph.microsoft.com", false)
            case .gcchigh: ("https://login.microsoftonline.us", "https://manage.office365.us", "https://graph.microsoft.us", false)
            case .dod: ("https://login.microsoftonline.us", "https://manage.protection.apps.mil", "https://dod-graph.microsoft.us", false)
            case .china: ("https://login.partner.microsoftonline.cn", "https://manage.office.cn", "https://microsoftgraph.chinacloudapi.cn", true)
            }
        return MicrosoftEndpoints(
            login: overrides.login ?? URL(string: login)!, manage: overrides.manage ?? URL(string: manage)!,
            graph: overrides.graph ?? URL(string: graph)!, resource: manage, isExperimental: experimental)
    }

    /// `O365GW_LOGIN_URL`, `O365GW_MANAGE_URL`, `O365GW_GRAPH_URL`: replace the hosts of every cloud.
    public struct Overrides: Sendable, Equatable {
        public var login: URL?
        public var manage: URL?
        public var graph: URL?

        public init(login: URL? = nil, manage: URL? = nil, graph: URL? = nil) {
            self.login = login
            self.manage = manage
            self.graph = graph
        }

        /// An override host: an http(s) URL with a host (a trailing slash is dropped), else nil. `http://` is
        /// accepted only here (a proxy, the simulator, tests).
        public static func host(parsing text: String) -> URL? {
            guard let url = URL(string: text.hasSuffix("/") ? String(text.dropLast()) : text),
                url.scheme == "https" || url.scheme == "http", url.host != nil
            else { return nil }
            return url
        }
    }

    public func tokenURL(tenant: UUID) -> URL {
        login.appendingPathComponent("\(tenant.uuidString.lowercased())/oauth2/v2.0/token")
    }

    /// `{manage}/api/v1.0/{tenant}/activity/feed`
    public func feedRoot(tenant: UUID) -> String {
        manage.absoluteString + "/api/v1.0/\(tenant.uuidString.lowercased())/activity/feed"
    }

    public var scope: String { resource + "/.default" }
    public var graphScope: String {
        switch resource {
        case "https://manage.office365.us": "https://graph.microsoft.us/.default"
        case "https://manage.protection.apps.mil": "https://dod-graph.microsoft.us/.default"
        case "https://manage.office.cn": "https://microsoftgraph.chinacloudapi.cn/.default"
        default: "https://graph.microsoft.com/.default"
        }
    }
}
