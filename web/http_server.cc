#include "web/http_server.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <array>
#include <atomic>
#include <set>
#include <spdlog/spdlog.h>

#include "web/router.h"

namespace nightshift {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
constexpr auto kNoThrow = net::as_tuple(net::use_awaitable);
// Request line and headers together; more gets 431.
constexpr uint32_t kHeaderLimit = 16 * 1024;

// A request Beast could not parse (as opposed to a connection that closed or timed out).
bool IsMalformedRequest(const beast::error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_target).category() &&
         ec != http::error::end_of_stream && ec != http::error::partial_message &&
         ec != http::error::need_more && ec != http::error::need_buffer;
}

}  // namespace

struct HttpServer::State : std::enable_shared_from_this<HttpServer::State> {
  State(net::io_context& io, Handler h, HttpServerOptions o)
      : io(io), handler(std::move(h)), options(o), acceptor(io) {}

  net::io_context& io;
  Handler handler;
  HttpServerOptions options;
  tcp::acceptor acceptor;
  std::set<std::shared_ptr<beast::tcp_stream>> sessions;
  bool stopped = false;

  net::awaitable<void> Accept();
  net::awaitable<void> Serve(std::shared_ptr<beast::tcp_stream> stream);
  // The handler's answer, awaited without blocking this thread.
  net::awaitable<HttpResponse> Answer(HttpRequest request);
};

namespace {

http::response<http::string_body> ToBeast(const HttpResponse& r, unsigned version, bool keep_alive,
                                          bool head) {
  http::response<http::string_body> res{static_cast<http::status>(r.status), version};
  res.set(http::field::server, "nightshift");
  res.set(http::field::content_type, r.content_type);
  for (const auto& [name, value] : r.headers) res.set(name, value);
  res.keep_alive(keep_alive);
  if (head) {
    res.content_length(r.body.size());
  } else {
    res.body() = r.body;
    res.prepare_payload();
  }
  return res;
}

// After an early error answer the client may still be sending its body; closing at once would
// reset the connection and the client might never read the answer. Stop sending, then read
// and drop what still comes for a moment (as web servers' "lingering close" does).
net::awaitable<void> LingeringClose(beast::tcp_stream& stream) {
  beast::error_code ec;
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  stream.expires_after(std::chrono::seconds(2));
  std::array<char, 16384> sink;
  size_t drained = 0;
  while (drained < (16u << 20)) {
    auto [read_ec, n] = co_await stream.async_read_some(net::buffer(sink), kNoThrow);
    if (read_ec) break;
    drained += n;
  }
}

HttpRequest FromBeast(const http::request<http::string_body>& req) {
  HttpRequest request;
  request.method = std::string(req.method_string());
  request.target = std::string(req.target());
  for (const auto& field : req) {
    std::string name(field.name_string());
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    request.headers[name] = std::string(field.value());
  }
  request.body = req.body();
  return request;
}

// The one completion of one request's wait. Respond may be called on any thread: the answer is
// posted to the server's thread, where the waiting connection resumes. A handler that loses
// the request (e.g. the thread it was handed to stopped) still gets the connection an answer.
template <typename Completion>
class PendingAnswer {
 public:
  PendingAnswer(Completion completion, net::io_context::executor_type executor)
      : completion_(std::move(completion)), executor_(executor) {}
  PendingAnswer(const PendingAnswer&) = delete;
  PendingAnswer& operator=(const PendingAnswer&) = delete;
  ~PendingAnswer() {
    if (!delivered_) Deliver(JsonError(503, "the request was dropped while shutting down"));
  }

  void Deliver(HttpResponse response) {
    if (delivered_.exchange(true)) return;
    net::post(executor_, [completion = std::move(completion_), response = std::move(response)]() mutable {
      std::move(completion)(std::move(response));
    });
  }

 private:
  Completion completion_;
  net::io_context::executor_type executor_;
  std::atomic<bool> delivered_{false};
};

}  // namespace

HttpServer::Handler HttpServer::Immediate(std::function<HttpResponse(const HttpRequest&)> handler) {
  return [handler = std::move(handler)](HttpRequest request, Respond respond) { respond(handler(request)); };
}

// Not a coroutine itself: with GCC 12, this lambda's moved-in capture inside a coroutine's
// co_await expression was freed twice (a crash in http_server_test), so the wait is built here
// in a plain function and awaited by Serve.
net::awaitable<HttpResponse> HttpServer::State::Answer(HttpRequest request) {
  auto self = shared_from_this();
  return net::async_initiate<decltype(net::use_awaitable), void(HttpResponse)>(
      [self, request = std::move(request)](auto completion) mutable {
        auto pending =
            std::make_shared<PendingAnswer<decltype(completion)>>(std::move(completion), self->io.get_executor());
        Respond respond = [pending](HttpResponse response) { pending->Deliver(std::move(response)); };
        const std::string what = request.method + " " + request.target;
        try {
          self->handler(std::move(request), respond);
        } catch (const std::exception& e) {
          // Handlers are not supposed to throw; if one does, the client gets a 500, not a crash.
          spdlog::error("request {} failed: {}", what, e.what());
          respond(JsonError(500, "internal error"));
        }
      },
      net::use_awaitable);
}

net::awaitable<void> HttpServer::State::Accept() {
  auto self = shared_from_this();
  while (!stopped) {
    auto [ec, socket] = co_await acceptor.async_accept(kNoThrow);
    if (ec) {
      if (stopped || ec == net::error::operation_aborted) co_return;
      spdlog::warn("accept failed: {}", ec.message());
      continue;
    }
    auto stream = std::make_shared<beast::tcp_stream>(std::move(socket));
    if (sessions.size() >= options.max_connections) {
      // Over the cap: answer 503 and close, rather than let the backlog grow silently.
      HttpResponse busy = JsonError(503, "too many connections");
      auto res = std::make_shared<http::response<http::string_body>>(ToBeast(busy, 11, false, false));
      stream->expires_after(std::chrono::seconds(5));
      http::async_write(*stream, *res, [stream, res](beast::error_code, size_t) {
        beast::error_code ignored;
        stream->socket().shutdown(tcp::socket::shutdown_both, ignored);
      });
      continue;
    }
    sessions.insert(stream);
    net::co_spawn(io, Serve(stream), net::detached);
  }
}

net::awaitable<void> HttpServer::State::Serve(std::shared_ptr<beast::tcp_stream> stream) {
  auto self = shared_from_this();
  beast::flat_buffer buffer;
  bool first = true;
  while (!stopped) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(options.body_limit);
    parser.header_limit(kHeaderLimit);
    stream->expires_after(first ? options.read_timeout : options.keep_alive_timeout);
    auto [ec, bytes] = co_await http::async_read_header(*stream, buffer, parser, kNoThrow);
    (void)bytes;
    if (!ec) {
      stream->expires_after(options.read_timeout);
      std::tie(ec, bytes) = co_await http::async_read(*stream, buffer, parser, kNoThrow);
    }
    first = false;
    if (ec == http::error::body_limit || ec == http::error::header_limit || IsMalformedRequest(ec)) {
      // Answer why, then close: after a parse error the rest of the stream cannot be trusted.
      HttpResponse refusal =
          ec == http::error::body_limit
              ? JsonError(413, "request body exceeds " + std::to_string(options.body_limit) + " bytes")
          : ec == http::error::header_limit
              ? JsonError(431, "request headers exceed " + std::to_string(kHeaderLimit) + " bytes")
              : JsonError(400, "malformed request: " + ec.message());
      auto res = ToBeast(refusal, 11, false, false);
      co_await http::async_write(*stream, res, kNoThrow);
      co_await LingeringClose(*stream);
      break;
    }
    if (ec) break;  // closed, timed out, or garbage: drop the connection
    auto& req = parser.get();
    net::awaitable<HttpResponse> answer = Answer(FromBeast(req));
    HttpResponse response = co_await std::move(answer);
    auto res = ToBeast(response, req.version(), req.keep_alive(), req.method() == http::verb::head);
    stream->expires_after(options.read_timeout);
    auto [write_ec, written] = co_await http::async_write(*stream, res, kNoThrow);
    (void)written;
    if (write_ec || !res.keep_alive()) break;
  }
  beast::error_code ignored;
  stream->socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream->close();
  sessions.erase(stream);
}

HttpServer::HttpServer(net::io_context& io, Handler handler, HttpServerOptions options)
    : state_(std::make_shared<State>(io, std::move(handler), options)) {}

HttpServer::~HttpServer() { Stop(); }

Status HttpServer::Listen(const std::string& address) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos) return Status::InvalidArgument("listen address must be HOST:PORT: " + address);
  std::string host = address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  int port = 0;
  try {
    port = std::stoi(address.substr(colon + 1));
  } catch (const std::exception&) {
    return Status::InvalidArgument("bad port in listen address " + address);
  }
  beast::error_code ec;
  auto ip = net::ip::make_address(host.empty() ? "0.0.0.0" : host, ec);
  if (ec) {
    // A host name such as "localhost": resolve it once.
    tcp::resolver resolver(state_->io);
    auto results = resolver.resolve(host, std::to_string(port), ec);
    if (ec || results.empty()) return Status::InvalidArgument("cannot resolve listen host " + host);
    ip = results.begin()->endpoint().address();
  }
  tcp::endpoint endpoint(ip, static_cast<uint16_t>(port));
  auto& acceptor = state_->acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) return Status::IOError("cannot listen on " + address + ": " + ec.message());
  net::co_spawn(state_->io, state_->Accept(), net::detached);
  return Status::OK();
}

void HttpServer::Stop() {
  if (!state_ || state_->stopped) return;
  state_->stopped = true;
  beast::error_code ignored;
  state_->acceptor.close(ignored);
  for (const auto& stream : state_->sessions) stream->socket().close(ignored);
}

uint16_t HttpServer::port() const {
  beast::error_code ec;
  auto endpoint = state_->acceptor.local_endpoint(ec);
  return ec ? 0 : endpoint.port();
}

}  // namespace nightshift
