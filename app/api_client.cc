#include "app/api_client.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <exception>
#include <utility>
#include <vector>

#ifndef NIGHTSHIFT_VERSION
#define NIGHTSHIFT_VERSION "dev"
#endif

namespace nightshift {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
constexpr auto kNoThrow = net::as_tuple(net::use_awaitable);

bool AllDigits(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

std::string Seconds(std::chrono::milliseconds d) {
  char text[32];
  if (d.count() % 1000 == 0) {
    std::snprintf(text, sizeof(text), "%llds", static_cast<long long>(d.count() / 1000));
  } else {
    std::snprintf(text, sizeof(text), "%.1fs", static_cast<double>(d.count()) / 1000.0);
  }
  return text;
}

bool IsTimeout(const boost::system::error_code& ec) {
  return ec == beast::error::timeout || ec == net::error::timed_out || ec == net::error::operation_aborted;
}

// The error as a user reads it: short, lower case, no "system:" category noise.
std::string Describe(const boost::system::error_code& ec) {
  if (ec == net::error::connection_refused) return "connection refused";
  if (ec == net::error::connection_reset) return "connection reset";
  if (ec == net::error::host_not_found || ec == net::error::host_not_found_try_again) return "unknown host";
  if (ec == net::error::network_unreachable || ec == net::error::host_unreachable) return "unreachable";
  if (ec == net::error::eof || ec == http::error::end_of_stream || ec == http::error::partial_message) {
    return "the connection closed before a whole response arrived";
  }
  std::string text = ec.message();
  if (!text.empty()) text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
  return text;
}

// Splits "HOST:PORT" / "[V6]:PORT" as the daemon's listener does.
std::pair<std::string, std::string> SplitHostPort(const std::string& address) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos) return {address, ""};
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return {host, address.substr(colon + 1)};
}

struct Exchange {
  const ServerUrl& server;
  const ApiClientOptions& options;
  http::request<http::string_body> request;
  Result<ApiResponse>* out;

  std::string Url() const { return server.ToString(); }

  net::awaitable<void> Run() {
    auto executor = co_await net::this_coro::executor;
    beast::tcp_stream stream(executor);

    // Resolve; a literal address skips the resolver (and its thread) entirely.
    std::vector<tcp::endpoint> endpoints;
    boost::system::error_code ec;
    uint16_t port = static_cast<uint16_t>(std::stoi(server.port));
    net::ip::address address = net::ip::make_address(server.host, ec);
    if (!ec) {
      endpoints.emplace_back(address, port);
    } else {
      tcp::resolver resolver(executor);
      // The resolver has no deadline of its own; a timer cancels it.
      net::steady_timer deadline(executor, options.connect_timeout);
      deadline.async_wait([&resolver](boost::system::error_code wait_ec) {
        if (!wait_ec) resolver.cancel();
      });
      auto [resolve_ec, results] = co_await resolver.async_resolve(server.host, server.port, kNoThrow);
      deadline.cancel();
      if (resolve_ec) {
        *out = Status::IOError("cannot reach the daemon at " + Url() + " (" +
                               (IsTimeout(resolve_ec) ? "resolving " + server.host + " timed out"
                                                      : "cannot resolve host " + server.host) +
                               ")");
        co_return;
      }
      for (const auto& entry : results) endpoints.push_back(entry.endpoint());
    }

    stream.expires_after(options.connect_timeout);
    auto [connect_ec, connected] = co_await stream.async_connect(endpoints, kNoThrow);
    (void)connected;
    if (connect_ec) {
      std::string reason = IsTimeout(connect_ec) ? "no answer within " + Seconds(options.connect_timeout)
                                                 : Describe(connect_ec);
      *out = Status::IOError("cannot reach the daemon at " + Url() + " (" + reason +
                             "); is \"nightshift serve\" running?");
      co_return;
    }

    stream.expires_after(options.request_timeout);
    auto [write_ec, written] = co_await http::async_write(stream, request, kNoThrow);
    (void)written;
    http::response_parser<http::string_body> parser;
    parser.body_limit(boost::none);  // logs can be large; the caller asked for them
    beast::flat_buffer buffer;
    boost::system::error_code read_ec = write_ec;
    if (!write_ec) {
      auto [ec2, read] = co_await http::async_read(stream, buffer, parser, kNoThrow);
      (void)read;
      read_ec = ec2;
    }
    if (read_ec) {
      if (IsTimeout(read_ec)) {
        *out = Status::IOError("the daemon at " + Url() + " did not answer within " +
                               Seconds(options.request_timeout));
      } else {
        *out = Status::IOError("lost the connection to the daemon at " + Url() + " (" + Describe(read_ec) + ")");
      }
      co_return;
    }
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);

    const auto& message = parser.get();
    ApiResponse response;
    response.status = static_cast<int>(message.result_int());
    for (const auto& field : message) {
      std::string name(field.name_string());
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      response.headers[name] = std::string(field.value());
    }
    response.body = message.body();
    *out = std::move(response);
  }
};

}  // namespace

std::string ServerUrl::ToString() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return "http://" + h + ":" + port + base_path;
}

Result<ServerUrl> ParseServerUrl(std::string_view url) {
  const std::string original(url);
  auto bad = [&](const std::string& why) {
    return Status::InvalidArgument("bad server URL \"" + original + "\": " + why);
  };
  if (size_t scheme_end = url.find("://"); scheme_end != std::string_view::npos) {
    std::string scheme(url.substr(0, scheme_end));
    for (char& c : scheme) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (scheme == "https") return bad("https is not supported; use http:// (or a local TLS-terminating proxy)");
    if (scheme != "http") return bad("expected http://HOST:PORT");
    url.remove_prefix(scheme_end + 3);
  }
  if (url.find_first_of("?#@") != std::string_view::npos) return bad("expected http://HOST:PORT[/PATH]");
  size_t slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  std::string path(slash == std::string_view::npos ? std::string_view() : url.substr(slash));
  while (!path.empty() && path.back() == '/') path.pop_back();

  ServerUrl server;
  server.base_path = path;
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return bad("missing ']' after the IPv6 address");
    server.host = std::string(authority.substr(1, close - 1));
    std::string_view rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return bad("expected ':PORT' after ']'");
      port_text = rest.substr(1);
      if (port_text.empty()) return bad("empty port");
    }
  } else {
    size_t colon = authority.find(':');
    if (colon != std::string_view::npos && authority.find(':', colon + 1) != std::string_view::npos) {
      return bad("an IPv6 address needs brackets, e.g. http://[::1]:8080");
    }
    server.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      if (port_text.empty()) return bad("empty port");
    }
  }
  if (server.host.empty()) return bad("no host");
  if (!port_text.empty()) {
    if (!AllDigits(port_text) || port_text.size() > 5 || std::stoi(std::string(port_text)) == 0 ||
        std::stoi(std::string(port_text)) > 65535) {
      return bad("the port must be a number from 1 to 65535");
    }
    server.port = std::to_string(std::stoi(std::string(port_text)));
  }
  return server;
}

std::string ServerUrlFromListen(const std::string& listen) {
  auto [host, port] = SplitHostPort(listen);
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::") host = "::1";
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return "http://" + host + (port.empty() ? "" : ":" + port);
}

std::string UrlEncode(std::string_view text) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

std::string ApiResponse::Header(const std::string& lower_name) const {
  auto it = headers.find(lower_name);
  return it == headers.end() ? std::string() : it->second;
}

ApiClient::ApiClient(ServerUrl server, ApiClientOptions options)
    : server_(std::move(server)), options_(options) {}

Result<ApiResponse> ApiClient::Send(std::string_view method, const std::string& target, const std::string& body,
                                    const std::string& bearer_token) const {
  http::verb verb = http::string_to_verb(method);
  if (verb == http::verb::unknown) return Status::InvalidArgument("unknown HTTP method " + std::string(method));
  if (target.empty() || target.front() != '/') return Status::InvalidArgument("request target must start with /");
  if (!AllDigits(server_.port)) return Status::InvalidArgument("bad port " + server_.port);

  Result<ApiResponse> result = Status::IOError("no response from the daemon at " + server_.ToString());
  try {
    http::request<http::string_body> request{verb, server_.base_path + target, 11};
    std::string host = server_.host.find(':') != std::string::npos ? "[" + server_.host + "]" : server_.host;
    request.set(http::field::host, host + ":" + server_.port);
    request.set(http::field::user_agent, std::string("nightshift-cli/") + NIGHTSHIFT_VERSION);
    if (!bearer_token.empty()) request.set(http::field::authorization, "Bearer " + bearer_token);
    if (!body.empty()) {
      request.set(http::field::content_type, "application/json");
      request.body() = body;
    }
    request.keep_alive(false);
    request.prepare_payload();

    net::io_context io;
    Exchange exchange{server_, options_, std::move(request), &result};
    std::exception_ptr failure;
    net::co_spawn(io, exchange.Run(), [&failure](std::exception_ptr e) { failure = e; });
    io.run();
    if (failure) std::rethrow_exception(failure);
  } catch (const std::exception& e) {
    // Boost reports some failures (e.g. out of descriptors) only as exceptions; the CLI wants
    // one line either way.
    return Status::IOError("request to the daemon at " + server_.ToString() + " failed: " + e.what());
  }
  return result;
}

}  // namespace nightshift
