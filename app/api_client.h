// A small synchronous HTTP/1.1 client for the CLI commands that talk to a running daemon over
// its REST API (contract section 5). One request per connection: the CLI sends a handful of
// requests per command, so keep-alive would buy nothing but stale-connection retries.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <string_view>

#include "core/status.h"

namespace nightshift {

// Where the daemon listens, as given by --server or derived from the config's `listen`.
struct ServerUrl {
  std::string host;       // a name or an address; IPv6 without brackets
  std::string port = "80";
  std::string base_path;  // "" or e.g. "/nightshift" behind a reverse proxy; no trailing slash

  // "http://127.0.0.1:8080", "http://[::1]:8080/base": how messages name the server.
  std::string ToString() const;
};

// Parses "http://HOST[:PORT][/BASE]"; the scheme may be left out. https is refused with a
// message saying so, since the client speaks plain HTTP only.
Result<ServerUrl> ParseServerUrl(std::string_view url);

// The URL a client on this machine uses for a daemon listening on `listen` ("HOST:PORT"):
// wildcard hosts (0.0.0.0, ::, empty) are not addresses one can connect to, so they mean
// the loopback address of the same family.
std::string ServerUrlFromListen(const std::string& listen);

// Percent-encodes everything but RFC 3986 unreserved characters, so a run id such as
// "manual__2026-01-01T00:00:00+00:00" survives as one path segment (the server decodes '+'
// as a space) and a query value cannot add parameters.
std::string UrlEncode(std::string_view text);

struct ApiResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;

  // The header's value, or "" when absent. `lower_name` must be lower case.
  std::string Header(const std::string& lower_name) const;
};

struct ApiClientOptions {
  std::chrono::milliseconds connect_timeout{5000};
  // Resolving, sending and reading the whole response.
  std::chrono::milliseconds request_timeout{30000};
};

class ApiClient {
 public:
  explicit ApiClient(ServerUrl server, ApiClientOptions options = {});

  // Sends one request and reads the whole response. `target` is the path below the server's
  // base path plus the query, e.g. "/api/v1/dags?limit=10". A non-empty `body` is sent as
  // JSON; a non-empty `bearer_token` as "Authorization: Bearer". Any HTTP status is a
  // successful Result; failing to connect, send or read is an IOError whose message is one
  // line fit to show a user. Never throws.
  Result<ApiResponse> Send(std::string_view method, const std::string& target, const std::string& body = "",
                           const std::string& bearer_token = "") const;

  const ServerUrl& server() const { return server_; }

 private:
  ServerUrl server_;
  ApiClientOptions options_;
};

}  // namespace nightshift
